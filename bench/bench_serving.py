"""Serving benchmark: openpi-protocol throughput/latency vs concurrent clients, and the dynamic-batching gain.

    .venv/bin/python bench/bench_serving.py [--seconds 3] [--clients 1 4 16 64] [--batches 1 4 8 16]

Part 1: `evalkit serve --policy zero` in a subprocess on loopback; N concurrent connections (each one request at a
time, as openpi clients do) send LIBERO-sized observations (2 x 224x224x3 uint8 + state + prompt) for a fixed
time; requests/s and p50/p99 latency per N. Also the `ws://` adapter (`RemotePolicy.infer` of a batch of N).
Part 2: a small pi0.5 (`evalkit.models.pi05.Pi05Model`, random weights): B requests in one `infer` call vs B
separate calls, in process and through the server (`--max-batch B` vs `--max-batch 1`, B concurrent clients).

`--flood` instead: the server's peak memory while N clients each send one huge frame at once (raw sockets sharing
one payload): zeros (`garbage`, refused once parsed) or a valid observation with a large extra array
(`observation`, decoded and held until answered). `--slowloris N` instead: N connections that send half an HTTP
request and stall (from 127.0.0.1, the good clients' own address, and from 127.0.0.2), then three good clients.
`--server-src DIR` runs the server from another checkout (e.g. the code before a change); `--compare DIR ...` also
starts a server from each checkout given and measures the zero-policy clients table side by side (servers in turn
within each row, best of `--rounds`, ratios to the first); `--serve-args ...` (last) passes flags to `evalkit serve`:

    .venv/bin/python bench/bench_serving.py --flood --flood-mb 120 60 30
    .venv/bin/python bench/bench_serving.py --flood --flood-mb 7 3 --serve-args --max-size 8388608 --max-buffered 33554432
    .venv/bin/python bench/bench_serving.py --slowloris 300 --server-src ../old-checkout
    .venv/bin/python bench/bench_serving.py --skip-pi05 --max-wait-ms 5 --server-src ../old-checkout --compare .
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evalkit.core.embodiment import EMBODIMENTS
from evalkit.core.policy import PolicyMeta, PolicyRequest
from evalkit.wire import SEED_FIELD
from evalkit.wire.msgpack_numpy import packb, unpackb

REPO = Path(__file__).resolve().parents[1]


def libero_obs(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8).astype(np.float32),
        "prompt": "put the black bowl on the plate",
    }


def start_server(*args: str, src: Path = REPO) -> tuple[subprocess.Popen, str, object]:
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by the caller)
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalkit.serving.cli", "--port", "0", *args],
        cwd=src,  # `-m` imports evalkit from the working directory first
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"listening on (ws://\S+)", line)
    if not match:
        proc.kill()
        log.seek(0)
        raise SystemExit(f"server did not start: {line!r} {log.read()[-2000:]}")
    return proc, match.group(1), log


async def _client_loop(
    url: str, payloads: list[bytes], stop_at: float, warm_until: float, lat: list[float]
) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=None) as ws:
        await ws.recv()  # metadata
        k = 0
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await ws.send(payloads[k % len(payloads)])
            reply = await ws.recv()
            t1 = time.perf_counter()
            assert isinstance(reply, bytes), reply
            if t0 >= warm_until:
                lat.append(t1 - t0)
            k += 1


def measure_clients(url: str, n: int, seconds: float, warmup: float = 0.5) -> tuple[float, float, float]:
    """n concurrent connections for `seconds` (after `warmup`): requests/s, p50 ms, p99 ms."""
    payloads = [packb({**libero_obs(i), SEED_FIELD: i}) for i in range(8)]
    lat: list[float] = []

    async def main() -> None:
        now = time.perf_counter()
        warm, stop = now + warmup, now + warmup + seconds
        await asyncio.gather(*(_client_loop(url, payloads, stop, warm, lat) for _ in range(n)))

    asyncio.run(main())
    ms = np.array(lat) * 1000
    return len(lat) / seconds, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def measure_adapter(url: str, n: int, seconds: float) -> tuple[float, float]:
    """RemotePolicy.infer of a batch of n (what the runner does): observations/s, p50 ms per call."""
    from evalkit.policies.remote import RemotePolicy

    obs = [libero_obs(i) for i in range(n)]

    def requests(call: int) -> list[PolicyRequest]:
        # Each call of an episode has a new seed, as in a run (a server may answer a repeated call from its cache).
        return [PolicyRequest(obs[i], f"bench/{i}", call * n + i, 7) for i in range(n)]

    with RemotePolicy(url, embodiment="libero", action_dim=7, max_connections=max(8, n)) as policy:
        policy.infer(requests(0))  # warm-up: opens the pool
        calls = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            batch = requests(len(calls) + 1)
            t0 = time.perf_counter()
            policy.infer(batch)
            calls.append(time.perf_counter() - t0)
    return len(calls) * n / sum(calls), float(np.median(calls) * 1000)


# ------------------------------------------------------------------------------------------------ small pi0.5


class SmallPi05Policy:
    """π₀.₅ architecture at a small size with random weights (same code path as the real model)."""

    def __init__(self, seed: int = 0):
        import torch

        from evalkit.models.pi05.cli import random_tiny_weights
        from evalkit.models.pi05.config import GemmaConfig, Pi05Config, SiglipConfig
        from evalkit.models.pi05.model import Pi05Model

        vocab = 1024
        self.config = Pi05Config(
            paligemma=GemmaConfig(
                width=256, depth=4, mlp_dim=1024, num_heads=4, num_kv_heads=1, head_dim=64, vocab_size=vocab
            ),
            action_expert=GemmaConfig(
                width=128, depth=4, mlp_dim=512, num_heads=4, num_kv_heads=1, head_dim=64, vocab_size=vocab
            ),
            siglip=SiglipConfig(width=192, depth=4, mlp_dim=768, num_heads=3, out_dim=256),
            action_horizon=10,
            max_token_len=32,
            num_steps=10,
        )
        self.model = Pi05Model.empty(self.config)
        self.model.load_state_dict(random_tiny_weights(self.config, seed), strict=True)
        self.model.eval()
        self.torch = torch
        self.meta = PolicyMeta(
            "pi05-small-random", "none", EMBODIMENTS["libero"].policy_cameras, (224, 224), 7
        )

    def describe(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        c = self.config
        return (
            f"pi05 small random: {n / 1e6:.1f}M params, VLM {c.paligemma.width}x{c.paligemma.depth}, expert "
            f"{c.action_expert.width}x{c.action_expert.depth}, SigLIP {c.siglip.width}x{c.siglip.depth}, "
            f"3 image slots, {c.max_token_len} tokens, H={c.action_horizon}, {c.num_steps} flow steps"
        )

    def infer(self, batch: Sequence[PolicyRequest]) -> list[np.ndarray]:
        torch = self.torch
        cfg = self.config

        def images(key: str):
            arr = np.stack([np.asarray(r.obs[key]) for r in batch])
            return torch.from_numpy(arr).float() / 127.5 - 1.0

        base, wrist = images("observation/image"), images("observation/wrist_image")
        b = len(batch)
        imgs = {
            "base_0_rgb": base,
            "left_wrist_0_rgb": wrist,
            "right_wrist_0_rgb": torch.full_like(base, -1.0),
        }
        masks = {
            "base_0_rgb": torch.ones(b, dtype=torch.bool),
            "left_wrist_0_rgb": torch.ones(b, dtype=torch.bool),
            "right_wrist_0_rgb": torch.zeros(b, dtype=torch.bool),
        }
        tokens = torch.zeros(b, cfg.max_token_len, dtype=torch.long)
        token_mask = torch.zeros(b, cfg.max_token_len, dtype=torch.bool)
        for i, r in enumerate(batch):
            ids = np.frombuffer(r.obs["prompt"].encode()[: cfg.max_token_len], np.uint8).astype(np.int64)
            tokens[i, : len(ids)] = torch.from_numpy(ids % cfg.paligemma.vocab_size)
            token_mask[i, : len(ids)] = True
        noise = torch.stack(
            [
                torch.randn(
                    cfg.action_horizon, cfg.action_dim, generator=torch.Generator().manual_seed(r.seed)
                )
                for r in batch
            ]
        )
        with torch.inference_mode():
            out = self.model.sample_actions(imgs, masks, tokens, token_mask, noise)
        return [out[i, :, : r.action_dim].numpy().copy() for i, r in enumerate(batch)]

    def close(self) -> None:
        pass


def batching_gain(batches: list[int], repeats: int) -> None:
    from evalkit.policies.remote import RemotePolicy
    from evalkit.serving.config import ServeConfig
    from evalkit.serving.server import PolicyServer, ServerThread

    policy = SmallPi05Policy()
    print(f"\n## Batching gain: {policy.describe()}")
    print(f"torch threads: {policy.torch.get_num_threads()}")
    reqs = [PolicyRequest(libero_obs(i), f"bench/{i}", 1000 + i, 7) for i in range(max(batches))]
    policy.infer(reqs[:1])  # warm-up
    # Batched and unbatched calls give the same actions (per-request noise), up to float summation order.
    one_by_one = [policy.infer([r])[0] for r in reqs[:4]]
    together = policy.infer(reqs[:4])
    diff = max(float(np.abs(a - b).max()) for a, b in zip(one_by_one, together, strict=True))
    print(f"max |batched - unbatched| action difference: {diff:.2e}")

    print(
        "\nTimes are the minimum over repeats (the two variants alternate); wall = elapsed, cpu = this process's"
        " CPU time (robust to other load on a shared machine)."
    )
    print("\n### In process: one infer(B) call vs B infer(1) calls")
    print("| B | B separate calls: wall / cpu ms | one batched call: wall / cpu ms | speed-up wall / cpu |")
    print("|---|---|---|---|")
    for b in batches:
        sep, bat = [], []
        for _ in range(repeats):
            sep.append(_timed(lambda b=b: [policy.infer([r]) for r in reqs[:b]]))
            bat.append(_timed(lambda b=b: policy.infer(reqs[:b])))
        _row(b, sep, bat)

    print(
        "\n### Through `PolicyServer`: B concurrent requests via the ws:// adapter, --max-batch 1 vs --max-batch B"
    )
    print(
        "| B | max-batch 1: wall / cpu ms | max-batch B: wall / cpu ms | speed-up wall / cpu | policy calls (1 / B) |"
    )
    print("|---|---|---|---|---|")
    for b in batches:
        one, many = (PolicyServer(policy, ServeConfig(port=0, max_batch=m, max_wait_ms=5)) for m in (1, b))
        with (
            ServerThread(one) as srv_one,
            ServerThread(many) as srv_many,
            RemotePolicy(srv_one.url, embodiment="libero", action_dim=7, max_connections=b) as c_one,
            RemotePolicy(srv_many.url, embodiment="libero", action_dim=7, max_connections=b) as c_many,
        ):
            c_one.infer(reqs[:b])  # warm-up, opens b connections each
            c_many.infer(reqs[:b])
            before = (one.stats().batches, many.stats().batches)
            t_one, t_many = [], []
            for _ in range(repeats):
                t_one.append(_timed(lambda b=b: c_one.infer(reqs[:b])))
                t_many.append(_timed(lambda b=b: c_many.infer(reqs[:b])))
            calls = (
                (one.stats().batches - before[0]) / repeats,
                (many.stats().batches - before[1]) / repeats,
            )
        _row(b, t_one, t_many, f" {calls[0]:.0f} / {calls[1]:.1f} |")


def _timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000


def _row(b: int, base: list[tuple[float, float]], new: list[tuple[float, float]], extra: str = "") -> None:
    bw, bc = min(t[0] for t in base), min(t[1] for t in base)
    nw, nc = min(t[0] for t in new), min(t[1] for t in new)
    print(
        f"| {b} | {bw:.0f} / {bc:.0f} | {nw:.0f} / {nc:.0f} | {bw / nw:.2f}x / {bc / nc:.2f}x |{extra}",
        flush=True,
    )


def zero_policy_tables(args: argparse.Namespace, max_wait: float) -> None:
    serve_args = ["--policy", "zero", "--max-batch", str(max(args.clients)), "--max-wait-ms", str(max_wait)]
    if args.compare:
        compare_servers(args, serve_args)
        return
    proc, url, log = start_server(*serve_args, src=args.server_src.resolve())
    try:
        print(f"\n## Zero policy, `evalkit serve {' '.join(serve_args)}` (subprocess, loopback)")
        size = len(packb({**libero_obs(0), SEED_FIELD: 0}))
        reply = len(packb({"actions": np.zeros((10, 7), np.float32)}))
        print(
            f"LIBERO-sized requests (2 x 224x224x3 uint8 + state + prompt): {size} bytes; reply {reply} bytes; "
            f"{args.seconds:.0f} s per row"
        )
        print("\n| concurrent clients | requests/s | p50 ms | p99 ms |")
        print("|---|---|---|---|")
        for n in args.clients:
            rps, p50, p99 = measure_clients(url, n, args.seconds)
            print(f"| {n} | {rps:.0f} | {p50:.2f} | {p99:.2f} |", flush=True)
        print(
            "\n`ws://` adapter (RemotePolicy.infer of a batch, one connection per item up to the pool size):"
        )
        print("\n| batch | observations/s | p50 ms per call |")
        print("|---|---|---|")
        for n in args.clients:
            ops, p50 = measure_adapter(url, n, args.seconds)
            print(f"| {n} | {ops:.0f} | {p50:.2f} |", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def compare_servers(args: argparse.Namespace, serve_args: list[str]) -> None:
    """The clients table for `--server-src` and each `--compare` checkout side by side: servers up at once,
    measured in turn within each row, `--rounds` times; the best requests/s of each, its ratio to the first, and the
    least CPU time the server process spent per request (all its threads: a steadier figure on a shared machine)."""
    sources = [args.server_src.resolve(), *(src.resolve() for src in args.compare)]
    servers = [start_server(*serve_args, src=src) for src in sources]
    try:
        print(
            f"\n## Zero policy, `evalkit serve {' '.join(serve_args)}`, side by side ({args.rounds} rounds)"
        )
        names = [src.name for src in sources]
        ratios = "".join(f" {name} ÷ {names[0]} |" for name in names[1:])
        cpu = "".join(f" {name} server CPU µs/req |" for name in names)
        print(f"\n| concurrent clients |{''.join(f' {name} req/s |' for name in names)}{ratios}{cpu}")
        print("|---:|" + "---:|" * (3 * len(names) - 1))
        for n in args.clients:
            best, cpu = [0.0] * len(servers), [float("inf")] * len(servers)
            for _ in range(args.rounds):
                for i, (proc, url, _) in enumerate(servers):
                    before = _cpu_s(proc.pid)
                    rps = measure_clients(url, n, args.seconds)[0]
                    best[i] = max(best[i], rps)
                    # (the measurement's warm-up requests are served too: CPU per request is a slight overestimate)
                    cpu[i] = min(cpu[i], (_cpu_s(proc.pid) - before) * 1e6 / (rps * args.seconds))
            cells = "".join(f" {b:.0f} |" for b in best) + "".join(f" {b / best[0]:.2f} |" for b in best[1:])
            cells += "".join(f" {c:.0f} |" for c in cpu)
            print(f"| {n} |{cells}", flush=True)
    finally:
        for proc, _, log in servers:
            proc.terminate()
            proc.wait(10)
            log.close()


# ------------------------------------------------------------------------------------------------ flood


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of a process, in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


class _RawClient:
    """A websocket client by hand (RFC 6455), so that nothing but the socket holds what it sends."""

    def __init__(self, port: int, source: str = "127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.pending = self._read_until(b"\r\n\r\n")
        status = self.pending.split(b"\r\n", 1)[0].decode(errors="replace")
        self.pending = self.pending.split(b"\r\n\r\n", 1)[1]
        if " 101 " not in status:
            self.sock.close()
            raise ConnectionError(f"refused ({status or 'closed'})")

    def _read_until(self, marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _read_exact(self, n: int) -> bytes:
        while len(self.pending) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.pending += chunk
        data, self.pending = self.pending[:n], self.pending[n:]
        return data

    def read_frame(self) -> int:
        """The next frame's opcode (its payload is skipped)."""
        head = self._read_exact(2)
        n = head[1] & 0x7F
        if n >= 126:
            n = int.from_bytes(self._read_exact(2 if n == 126 else 8), "big")
        self._read_exact(n)
        return head[0] & 0x0F

    def send_frame(self, payload: bytes) -> int:
        """One binary frame, 1 MiB at a time; how many payload bytes went out before an error, if one occurs."""
        # FIN + binary opcode; mask bit + 64-bit length; a zero masking key leaves the payload as it is.
        self.sock.sendall(bytes([0x82, 0x80 | 127]) + len(payload).to_bytes(8, "big") + b"\0\0\0\0")
        view, self.sent = memoryview(payload), 0
        while self.sent < len(payload):
            self.sock.sendall(view[self.sent : self.sent + (1 << 20)])
            self.sent = min(len(payload), self.sent + (1 << 20))
        return self.sent


def _flood_client(port: int, payload: bytes, outcomes: list[str], start: threading.Barrier) -> None:
    """One client that sends `payload` as a single frame; what became of it."""
    client = None
    try:
        client = _RawClient(port)
        with client.sock:
            client.read_frame()  # the metadata
            start.wait(30)
            client.send_frame(payload)
            client.sock.settimeout(30)
            opcode = client.read_frame()
            outcomes.append({2: "answered", 1: "error frame", 8: "closed"}.get(opcode, f"opcode {opcode}"))
    except OSError as exc:
        sent = getattr(client, "sent", None)
        outcomes.append(f"refused ({exc})" if sent is None else f"cut after {sent >> 20} MiB")


def flood_payload(kind: str, nbytes: int) -> bytes:
    """`garbage`: zeros (refused once parsed); `observation`: a valid LIBERO observation with an extra array, which
    the server decodes and holds until it is answered."""
    if kind == "garbage":
        return bytes(nbytes)
    small = len(packb(libero_obs(0)))
    return packb({**libero_obs(0), "extra": np.zeros(max(0, nbytes - small - 64), np.uint8)})


def flood_once(args: argparse.Namespace, payload: bytes) -> tuple[float, list[str], bool]:
    """One flood against a fresh server: its memory growth (peak RSS - RSS before) in MiB, the clients' outcomes,
    and whether it survived."""
    proc, url, log = start_server("--policy", "zero", *args.serve_args, src=args.server_src.resolve())
    try:
        port = int(url.rsplit(":", 1)[1])
        time.sleep(0.5)
        base = _rss_mb(proc.pid, "VmRSS")
        outcomes: list[str] = []
        barrier = threading.Barrier(args.flood_clients)
        threads = [
            threading.Thread(target=_flood_client, args=(port, payload, outcomes, barrier))
            for _ in range(args.flood_clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return _rss_mb(proc.pid, "VmHWM") - base, outcomes, proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def buffered_cap_mib(serve_args: list[str]) -> float:
    """The server's --max-buffered as its flags set it (default: 256 MiB, or 4 x --max-size if larger)."""
    flags = dict(zip(serve_args[::2], serve_args[1::2], strict=False))
    max_size = int(flags.get("--max-size", 64 << 20))
    return int(flags.get("--max-buffered", max(256 << 20, 4 * max_size))) / 2**20


def flood(args: argparse.Namespace, frame_mb: float, kind: str) -> None:
    payload = flood_payload(kind, int(frame_mb * 2**20))
    runs = [flood_once(args, payload) for _ in range(args.flood_runs)]
    growth = [g for g, _, _ in runs]
    outcomes = [o for _, run, _ in runs for o in run]
    cap = buffered_cap_mib(args.serve_args)
    summary = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes)))
    print(
        f"| {args.server_src.name} | {args.flood_clients} x {frame_mb:g} MiB {kind} | {cap:.0f} | "
        f"{np.median(growth):.0f} | {max(growth):.0f} | {max(growth) / cap:.2f} | "
        f"{sum(alive for _, _, alive in runs)}/{len(runs)} | {summary} |",
        flush=True,
    )


# ------------------------------------------------------------------------------------------------ slow-loris


def _good_client(url: str) -> str:
    """One openpi-style client: connect, read the metadata, send one request; its outcome and how long it took."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    t0 = time.perf_counter()
    try:
        with connect(url, compression=None, max_size=None, open_timeout=30) as ws:
            ws.recv(timeout=30)
            ws.send(packb({**libero_obs(0), SEED_FIELD: 0}))
            ws.recv(timeout=30)
    except InvalidStatus as exc:
        return f"HTTP {exc.response.status_code} after {time.perf_counter() - t0:.2f} s"
    except (OSError, TimeoutError) as exc:
        return f"{type(exc).__name__} after {time.perf_counter() - t0:.2f} s"
    return f"answered in {time.perf_counter() - t0:.2f} s"


def slowloris(args: argparse.Namespace, source: str) -> None:
    """N connections from `source` that send half an HTTP request and stall, then good clients from 127.0.0.1."""
    proc, url, log = start_server("--policy", "zero", *args.serve_args, src=args.server_src.resolve())
    sockets = []
    try:
        port = int(url.rsplit(":", 1)[1])
        for _ in range(args.slowloris):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
            sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
            sockets.append(sock)
        time.sleep(0.5)  # the server has taken them all in
        good = [_good_client(url) for _ in range(3)]
        print(f"| {args.server_src.name} | {args.slowloris} from {source} | {'; '.join(good)} |", flush=True)
    finally:
        for sock in sockets:
            sock.close()
        proc.terminate()
        proc.wait(10)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument(
        "--max-wait-ms", type=float, nargs="+", default=[5.0, 0.0], help="server settings to compare"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the pi0.5 part")
    parser.add_argument("--skip-pi05", action="store_true")
    parser.add_argument(
        "--flood", action="store_true", help="only measure memory under a flood of huge frames"
    )
    parser.add_argument("--flood-clients", type=int, default=16)
    parser.add_argument(
        "--flood-runs", type=int, default=3, help="floods per row, each against a fresh server"
    )
    parser.add_argument("--flood-mb", type=float, nargs="+", default=[120], help="frame size(s) in MiB")
    parser.add_argument(
        "--flood-kind", nargs="+", choices=("garbage", "observation"), default=["garbage", "observation"]
    )
    parser.add_argument(
        "--slowloris", type=int, default=0, help="only: N stalled half-open connections, then good clients"
    )
    parser.add_argument(
        "--slowloris-from", nargs="+", default=["127.0.0.1", "127.0.0.2"], help="their source address(es)"
    )
    parser.add_argument(
        "--server-src",
        type=Path,
        default=REPO,
        help="checkout whose evalkit serves (every part but the pi0.5 one)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        default=[],
        help="checkouts whose servers are measured beside --server-src's (zero-policy clients table)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="measurements per server and row (--compare)")
    parser.add_argument(
        "--serve-args", nargs=argparse.REMAINDER, default=[], help="(last) flags for `evalkit serve`"
    )
    args = parser.parse_args()

    serve = " ".join(["evalkit serve --policy zero", *args.serve_args])
    if args.slowloris:
        print(
            f"\n## Slow-loris: `{serve}`, N stalled half-open connections, then 3 good clients from 127.0.0.1"
        )
        print("| server source | half-open connections | good clients |")
        print("|---|---|---|")
        for source in args.slowloris_from:
            slowloris(args, source)
        return
    if args.flood:
        print(f"\n## Flood: `{serve}`, N raw clients each sending one frame at once")
        print(
            f"Memory growth = peak RSS - RSS before, in MiB, over {args.flood_runs} runs (a fresh server each);"
            " clients' outcomes summed over the runs."
        )
        print(
            "| server source | frames | cap MiB | growth median | growth max | max / cap | alive | clients |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for mb in args.flood_mb:
            for kind in args.flood_kind:
                flood(args, mb, kind)
        return

    for max_wait in args.max_wait_ms:
        zero_policy_tables(args, max_wait)
    # Sanity: replies decode with our own decoder.
    assert unpackb(packb({"a": np.zeros(2)}))["a"].shape == (2,)
    if not args.skip_pi05:
        import torch

        torch.set_num_threads(args.threads)
        batching_gain(args.batches, args.repeats)


if __name__ == "__main__":
    main()
