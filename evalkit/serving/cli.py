"""`evalkit serve`: serve an evalkit policy over openpi's websocket protocol.

    evalkit serve --policy pi05 --checkpoint ckpt/ --port 8000 --embodiment libero

Any openpi client (`openpi_client.websocket_client_policy.WebsocketClientPolicy`) or `evalkit eval --policy
ws://host:port` can then call it. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
import threading


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    from evalkit.cli_args import add_dataclass_arguments
    from evalkit.core.policy import PolicyOptions
    from evalkit.serving.config import ServeConfig

    add_dataclass_arguments(parser, PolicyOptions, skip=("api_key", "timeout_s"), title="policy")
    add_dataclass_arguments(parser, ServeConfig)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_main(args: argparse.Namespace) -> int:
    from evalkit.cli_args import dataclass_from_arguments
    from evalkit.core.embodiment import EMBODIMENTS
    from evalkit.core.errors import EvalkitError
    from evalkit.core.policy import PolicyOptions
    from evalkit.policies.registry import make_policy
    from evalkit.serving.config import ServeConfig
    from evalkit.serving.server import PolicyServer
    from evalkit.wire.auth import hint_if_key_on_command_line, key_from_environment

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.api_key is not None:
        hint_if_key_on_command_line("serve")
    config = dataclass_from_arguments(ServeConfig, args, api_key=args.api_key or key_from_environment())
    config.validate()
    action_dim = EMBODIMENTS[config.embodiment].action_dim
    # The server never hands the policy more than --max-batch observations at once.
    options = dataclass_from_arguments(
        PolicyOptions,
        args,
        embodiment=config.embodiment,
        action_dim=action_dim,
        api_key=None,
        max_batch=config.max_batch,
    )
    policy = make_policy(options)
    server = PolicyServer(policy, config)
    if not is_loopback(config.host) and not config.api_key:
        print(
            f"evalkit serve: warning: listening on {config.host} without an API key; anyone who can reach this "
            "port can use the policy (set EVALKIT_API_KEY)",
            file=sys.stderr,
            flush=True,
        )
    try:
        if config.warmup:
            _warm_up(server)
        asyncio.run(_serve_until_signalled(server))
    except OSError as exc:
        raise EvalkitError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc
    finally:
        server.close()
        if not server.busy:  # an abandoned call may still be using the policy: the process exit frees it
            policy.close()
    return 0


def _warm_up(server) -> None:
    try:
        server.warmup()
    except KeyboardInterrupt:  # Ctrl-C before listening: nothing to finish
        print("evalkit serve: stopped during the warm-up call", file=sys.stderr, flush=True)
        os._exit(128 + signal.SIGINT)


async def _serve_until_signalled(server) -> None:
    """Serve; the first SIGINT or SIGTERM stops gracefully, a second exits at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    grace = server.config.shutdown_grace_s

    def on_signal(sig: int) -> None:
        if stop.is_set():  # the second Ctrl-C: now, whatever is running
            print("evalkit serve: stopped", file=sys.stderr, flush=True)
            os._exit(128 + sig)
        print(
            f"evalkit serve: stopping (finishing the running batch for at most {grace:.0f} s; "
            "Ctrl-C again to exit now)",
            file=sys.stderr,
            flush=True,
        )
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    ready = threading.Event()
    task = asyncio.create_task(server.serve(ready, stop))
    while not ready.is_set() and not task.done():
        await asyncio.sleep(0.01)
    if ready.is_set():
        # One machine-readable line, so scripts that pass --port 0 can find the port.
        print(f"evalkit serve: listening on ws://{server.host}:{server.bound_port}", flush=True)
    await task


def main(argv: list[str] | None = None) -> int:
    """`python -m evalkit.serving.cli ...`: the same as `evalkit serve ...`."""
    from evalkit.core.errors import EvalkitError

    parser = argparse.ArgumentParser(
        prog="evalkit serve", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    serve_arguments(parser)
    try:
        return serve_main(parser.parse_args(argv))
    except EvalkitError as exc:
        print(f"evalkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
