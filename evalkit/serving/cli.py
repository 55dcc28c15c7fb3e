"""`evalkit serve`: serve an evalkit policy over openpi's websocket protocol.

    evalkit serve --policy pi05 --checkpoint ckpt/ --port 8000 --embodiment libero

Any openpi client (`openpi_client.websocket_client_policy.WebsocketClientPolicy`) or `evalkit eval --policy
ws://host:port` can then call it. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    from evalkit.cli_args import add_dataclass_arguments
    from evalkit.core.embodiment import EMBODIMENTS
    from evalkit.core.policy import PolicyOptions
    from evalkit.serving.server import DEFAULT_MAX_BUFFERED, DEFAULT_MAX_CONNECTIONS
    from evalkit.wire import DEFAULT_MAX_SIZE

    add_dataclass_arguments(parser, PolicyOptions, skip=("api_key", "timeout_s"), title="policy")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 = all)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.add_argument("--max-batch", type=int, default=16, help="max requests per policy call (default 16)")
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a request waits for others to batch with (default 5)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("EVALKIT_API_KEY"), help="require `Authorization: Api-Key <key>`"
    )
    parser.add_argument(
        "--embodiment",
        choices=list(EMBODIMENTS),
        default="libero",
        help="the observations it takes and actions it returns (default: libero)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        help=f"max bytes per message (default {DEFAULT_MAX_SIZE})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"max open connections; more get HTTP 503 (default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--max-buffered",
        type=int,
        help="max bytes of received messages held on all connections together; a connection that would "
        f"exceed it is dropped (default {DEFAULT_MAX_BUFFERED}, or 4 x --max-size if larger)",
    )
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time one call on a blank observation before listening; clients size their timeouts from it "
        "(default on)",
    )


def serve_main(args: argparse.Namespace) -> int:
    from evalkit.cli_args import dataclass_from_arguments
    from evalkit.core.embodiment import EMBODIMENTS
    from evalkit.core.errors import EvalkitError
    from evalkit.core.policy import PolicyOptions
    from evalkit.policies.registry import make_policy
    from evalkit.serving.server import SHUTDOWN_GRACE_S, PolicyServer, is_loopback

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 0 <= args.port <= 65535:
        raise EvalkitError(f"--port must be between 0 and 65535, got {args.port}")
    action_dim = EMBODIMENTS[args.embodiment].action_dim
    policy = make_policy(
        dataclass_from_arguments(
            PolicyOptions, args, embodiment=args.embodiment, action_dim=action_dim, api_key=None
        )
    )
    server = PolicyServer(
        policy,
        args.host,
        args.port,
        embodiment=args.embodiment,
        action_dim=action_dim,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        api_key=args.api_key,
        max_size=args.max_size,
        max_connections=args.max_connections,
        max_buffered=args.max_buffered,
    )
    if not is_loopback(args.host) and not args.api_key:
        print(
            f"evalkit serve: warning: listening on {args.host} without an API key; anyone who can reach this "
            "port can use the policy (set EVALKIT_API_KEY or --api-key)",
            file=sys.stderr,
            flush=True,
        )
    import asyncio
    import signal
    import threading

    if args.warmup:
        try:
            server.warmup()
        except KeyboardInterrupt:  # Ctrl-C before listening: nothing to finish
            print("evalkit serve: stopped during the warm-up call", file=sys.stderr, flush=True)
            os._exit(128 + signal.SIGINT)
    ready = threading.Event()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: int) -> None:
            if stop.is_set():  # the second Ctrl-C: now, whatever is running
                print("evalkit serve: stopped", file=sys.stderr, flush=True)
                os._exit(128 + sig)
            print(
                f"evalkit serve: stopping (finishing the running batch for at most {SHUTDOWN_GRACE_S:.0f} s; "
                "Ctrl-C again to exit now)",
                file=sys.stderr,
                flush=True,
            )
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        task = asyncio.create_task(server.serve(ready, stop))
        while not ready.is_set() and not task.done():
            await asyncio.sleep(0.01)
        if ready.is_set():
            # One machine-readable line, so scripts that pass --port 0 can find the port.
            print(f"evalkit serve: listening on ws://{args.host}:{server.bound_port}", flush=True)
        await task

    try:
        asyncio.run(run())
    except OSError as exc:
        raise EvalkitError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    finally:
        server.close()
        if not server.busy:  # an abandoned call may still be using the policy: the process exit frees it
            policy.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m evalkit.serving.cli ...`: the same as `evalkit serve ...`."""
    from evalkit.core.errors import EvalkitError

    parser = argparse.ArgumentParser(prog="evalkit serve", description=__doc__.splitlines()[0])
    serve_arguments(parser)
    try:
        return serve_main(parser.parse_args(argv))
    except EvalkitError as exc:
        print(f"evalkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
