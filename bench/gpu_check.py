"""Is evalkit ready for this GPU? `make gpu-check` (python bench/gpu_check.py), on a machine with the full venv:

1. bench/device_check.py, the check that also runs on a bare GPU machine (parity on the golden fixture, full-size
   latency and observations/s, MFU, peak memory, determinism; see there), in a subprocess;
2. what needs the full venv (MuJoCo, LIBERO, Ray): a short LIBERO run through `evalkit eval --ray local` with
   full-size random weights, in observations/s.

Without CUDA (or with --tiny) both run at tiny size on the CPU, and the test suite runs it that way
(tests/bench/test_gpu_check.py) so that it keeps working before a GPU is there. With $OUT set, device_check's JSON
goes there. Exit status 1 if device_check fails (e.g. parity) or the LIBERO run stored an error.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_pi05_model import random_init_  # noqa: E402

from evalkit.models.pi05.checkpoint import NAMED_CONFIGS, write_evalkit_checkpoint  # noqa: E402
from evalkit.models.pi05.cli import make_tiny_checkpoint, tiny_norm_stats, tiny_training_sentences  # noqa: E402
from evalkit.models.pi05.config import Pi05Config  # noqa: E402
from evalkit.models.pi05.model import Pi05Model  # noqa: E402


def device_check(tiny: bool) -> bool:
    """bench/device_check.py in a subprocess, from the repository root with it on PYTHONPATH (as on a bare
    machine); its output goes straight to ours."""
    root = BENCH.parent
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, str(BENCH / "device_check.py"), *(["--tiny"] if tiny else [])]
    return subprocess.run(cmd, cwd=root, env={**os.environ, "PYTHONPATH": path}).returncode == 0


def full_size_checkpoint(out: Path) -> Path:
    """pi05_libero's training config and the full model size, random weights, the tiny tokenizer (fewer pieces than the
    model's vocabulary, so any of its tokens is valid)."""
    from evalkit.models.pi05.normalize import FeatureNorm, NormSpec
    from evalkit.models.pi05.tokenizer import TOKENIZER_FILENAME, train_tiny_sentencepiece

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_sentencepiece(out / TOKENIZER_FILENAME, tiny_training_sentences())
    training_config = NAMED_CONFIGS["pi05_libero"]
    config = Pi05Config.full(
        action_horizon=training_config.action_horizon,
        max_token_len=training_config.max_token_len,
        discrete_state_input=training_config.discrete_state_input,
    )
    weights = random_init_(Pi05Model.empty(config, dtype=torch.bfloat16)).state_dict()
    state, actions = tiny_norm_stats("libero")
    norm = NormSpec(FeatureNorm("quantile", state), FeatureNorm("quantile", actions))
    return write_evalkit_checkpoint(out, weights, config, training_config, norm, "bfloat16", tokenizer)


def libero_run(device: str, checkpoint: Path, out: Path, workers: int, max_steps: int) -> bool:
    """A short LIBERO-Spatial run through `--ray local`; True if no episode ended in error."""
    cmd = [sys.executable, "-m", "evalkit.cli", "eval", "--suite", "libero_spatial", "--policy", "pi05"]
    cmd += ["--checkpoint", str(checkpoint), "--device", device, "--ray", "local", "--tasks", "0"]
    cmd += ["--episodes-per-task", str(workers), "--workers", str(workers), "--max-steps", str(max_steps)]
    cmd += ["--dtype", "bfloat16" if device.startswith("cuda") else "float32", "--quiet", "--out", str(out)]
    start = time.perf_counter()
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - start
    if not (out / "episodes.sqlite").exists():
        print(f"LIBERO through --ray local: evalkit eval exited {code} before storing an episode", flush=True)
        return False
    db = sqlite3.connect(out / "episodes.sqlite")
    calls, errors = (
        value or 0
        for value in db.execute(
            "SELECT SUM(policy_calls), SUM(termination = 'error') FROM episodes"
        ).fetchone()
    )
    db.close()
    print(
        f"LIBERO through --ray local: {workers} episodes x {max_steps} steps, {calls} observations in {wall:.0f} s "
        f"(Ray start-up included) = {calls / wall:.2f} obs/s, {errors} errors, exit {code}",
        flush=True,
    )
    return code == 0 and errors == 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU even if CUDA is there")
    args = parser.parse_args()
    tiny = args.tiny or not torch.cuda.is_available()
    device = "cpu" if tiny else "cuda"
    start = time.time()
    ok = device_check(tiny)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        if tiny:
            checkpoint = make_tiny_checkpoint(Path(tmp) / "tiny", "libero", seed=0)
            ok &= libero_run(device, checkpoint, Path(tmp) / "run", workers=1, max_steps=10)
        else:
            checkpoint = full_size_checkpoint(Path(tmp) / "full")
            ok &= libero_run(device, checkpoint, Path(tmp) / "run", workers=8, max_steps=50)
    print(
        f"gpu-check {'passed' if ok else 'FAILED'} on {device}{' (tiny, CPU)' if tiny else ''} "
        f"in {time.time() - start:.0f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
