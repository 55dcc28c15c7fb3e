"""The batcher alone: requests/s through `evalkit.batching.DynamicBatcher` with a policy that costs nothing, so what
is measured is the batcher's own overhead (locks, wake-ups, futures), for one or more versions side by side.

    .venv/bin/python bench/bench_batching.py [--src . ../old-checkout] [--clients 1 4 16 64] [--seconds 1]

N closed-loop callers (each submits one request and waits for its answer, as a server connection or an env worker
does) for `--seconds`, in two shapes: `threads` (N threads blocking on `Future.result`, like the local runner's
workers) and `asyncio` (N tasks on one event loop awaiting `asyncio.wrap_future`, like a Ray policy replica).
`expected()` says how many callers are not waiting, as the server's and the local runner's hints do, and
`--max-wait-ms` is the server's default. A third shape, `trickle`, is one caller sending each batch's N requests one
by one with a pause between them (as requests trickle in from N connections; the wait ends with the last one, by
the hint): what a batcher does while it gathers a batch. `--src` loads `evalkit/batching.py` from each checkout given (its other
imports come from this one); versions alternate within each row, `--repeats` times, and each row reports the best
rate per version, its ratio to the first version, and the least CPU time per request (all threads of this process:
callers and batcher; steadier than the rate on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from evalkit.core.policy import PolicyMeta, PolicyRequest

REPO = Path(__file__).resolve().parents[1]
ACTION_DIM = 7


class FreePolicy:
    """Zeros at once: the batcher's cost is all there is."""

    meta = PolicyMeta(name="free", fingerprint="none", action_dim=ACTION_DIM)
    chunk = np.zeros((10, ACTION_DIM))

    def infer(self, batch):
        return [self.chunk] * len(batch)

    def close(self) -> None:
        pass


def load(src: Path, index: int) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"batching_{index}", src / "evalkit" / "batching.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Callers:
    """The hint shared by the callers: how many are not waiting on an answer."""

    def __init__(self, n: int):
        self.n, self.waiting, self.lock = n, 0, threading.Lock()
        self.requests = [PolicyRequest({}, f"ep{i}", i, ACTION_DIM) for i in range(n)]

    def expected(self) -> int:
        return self.n - self.waiting

    def change(self, delta: int) -> None:
        with self.lock:
            self.waiting += delta


def run_threads(module: ModuleType, n: int, seconds: float, max_wait_s: float) -> tuple[float, float]:
    callers = Callers(n)
    batcher = module.DynamicBatcher(FreePolicy(), n, max_wait_s, expected=callers.expected)
    stop_at = time.perf_counter() + seconds
    done = [0] * n

    def caller(i: int) -> None:
        request = callers.requests[i]
        while time.perf_counter() < stop_at:
            callers.change(1)
            batcher.submit(request).result()
            callers.change(-1)
            done[i] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    batcher.close()
    return sum(done) / elapsed, cpu * 1e6 / sum(done)


def run_asyncio(module: ModuleType, n: int, seconds: float, max_wait_s: float) -> tuple[float, float]:
    callers = Callers(n)
    batcher = module.DynamicBatcher(FreePolicy(), n, max_wait_s, expected=callers.expected)
    done = [0]

    async def caller(i: int, stop_at: float) -> None:
        request = callers.requests[i]
        while time.perf_counter() < stop_at:
            callers.waiting += 1
            await asyncio.wrap_future(batcher.submit(request))
            callers.waiting -= 1
            done[0] += 1

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(caller(i, start + seconds) for i in range(n)))
        return time.perf_counter() - start

    cpu = time.process_time()
    elapsed = asyncio.run(main())
    cpu = time.process_time() - cpu
    batcher.close()
    return done[0] / elapsed, cpu * 1e6 / done[0]


def run_trickle(module: ModuleType, n: int, seconds: float, max_wait_s: float) -> tuple[float, float]:
    """One caller sends batches of n requests one by one, pausing (GIL released) between them, as requests trickle
    in from n connections: the batcher gathers each batch while `expected()` says more are coming."""
    callers = Callers(n)
    batcher = module.DynamicBatcher(FreePolicy(), n, 1.0, expected=callers.expected)
    done, stop_at = 0, time.perf_counter() + seconds
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() < stop_at:
        futures = []
        for request in callers.requests:
            callers.waiting += 1
            futures.append(batcher.submit(request))
            time.sleep(TRICKLE_PAUSE_S)
        for future in futures:
            future.result()
        callers.waiting, done = 0, done + n
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    batcher.close()
    return done / elapsed, cpu * 1e6 / done


TRICKLE_PAUSE_S = 50e-6
SHAPES = {"threads": run_threads, "asyncio": run_asyncio, "trickle": run_trickle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, nargs="+", default=[REPO], help="checkouts to compare")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per version and row")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    modules = [load(src.resolve(), i) for i, src in enumerate(args.src)]
    names = [str(src) for src in args.src]
    ratios = "".join(f" {name} ÷ {names[0]} |" for name in names[1:])
    cpu = "".join(f" {name} CPU µs/req |" for name in names)
    print(f"\n| shape | callers |{''.join(f' {name} req/s |' for name in names)}{ratios}{cpu}")
    print("|---|---:|" + "---:|" * (3 * len(names) - 1))
    for shape in args.shapes:
        for n in args.clients:
            best, least = [0.0] * len(modules), [float("inf")] * len(modules)
            for _ in range(args.repeats):
                for i, module in enumerate(modules):
                    rate, cpu_us = SHAPES[shape](module, n, args.seconds, args.max_wait_ms / 1000)
                    best[i], least[i] = max(best[i], rate), min(least[i], cpu_us)
            cells = "".join(f" {b:.0f} |" for b in best) + "".join(f" {b / best[0]:.2f} |" for b in best[1:])
            cells += "".join(f" {c:.1f} |" for c in least)
            print(f"| {shape} | {n} |{cells}", flush=True)


if __name__ == "__main__":
    main()
