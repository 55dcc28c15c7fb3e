"""`Pi05Sampler`: batched sampling in a few static shapes, as the policy and `bench/device_check.py` run it.

A batch of n observations is padded to a bucket (`batch_bucket`: 1, 2, 4, ... 64, capped at the largest batch the
caller will send) by repeating its first observation with zero noise; the padding rows are dropped from the result.
The prefix is trimmed on the CPU before anything reaches the device (`model.trim_prefix`: image slots masked for the
whole batch are not encoded, the prompt is cut to a multiple of 32 positions), so a compiled sampler meets a handful
of shapes: (batch bucket, prompt length, slots). `compile=True` captures the whole sampler (prefix pass and every
denoising step) as one CUDA graph per shape on CUDA (`CudaGraphs`: a capture costs one run, no compiler), and
`torch.compile`s it on a CPU.

Every row's computation is independent of the other rows' values, and at a fixed shape of its own (a row of a
matmul does not depend on which row it is). It can depend on the shape: matmul kernels pick their blocking from the
matrix sizes (and the thread count on a CPU), so the same observation in a batch of another bucket or prompt length
may differ in the last bits (~1e-6 of a normalized action). `deterministic=True` removes every such dependence: one
shape for the whole run (the bucket of `max_batch`, the full prompt length), torch's deterministic algorithms and
cuBLAS workspace setting on CUDA, and on a CPU a thread count fixed to the cores this process may use (Ray sets
`OMP_NUM_THREADS=1` in its actors, the local runner uses every core).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from evalkit.core.cores import usable_cores
from evalkit.core.errors import EvalkitError
from evalkit.models.pi05.model import Images, Pi05Model, kept_prompt_length

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# cuBLAS needs a fixed workspace for deterministic results (CUDA docs, "Results reproducibility").
CUBLAS_WORKSPACE = ":4096:8"
# torch.compile recompiles once per shape; allow every (batch bucket, prompt length) pair it can meet.
RECOMPILE_LIMIT = 64


def batch_bucket(n: int, max_batch: int | None = None) -> int:
    """The padded size of a batch of n: the smallest of 1, 2, 4, ... 64 that holds it, the bucket list ending at
    `max_batch` (a batch never exceeds it); past 64 without a cap, the next multiple of 64."""
    if n < 1:
        raise EvalkitError(f"a batch needs at least one observation, got {n}")
    cap = max_batch if max_batch is not None else max(n, BATCH_BUCKETS[-1])
    if n > cap:
        raise EvalkitError(f"a batch of {n} observations exceeds the sampler's max batch {cap}")
    buckets = [b for b in BATCH_BUCKETS if b < cap] + [cap]
    if n > BATCH_BUCKETS[-1] and max_batch is None:
        return -(-n // BATCH_BUCKETS[-1]) * BATCH_BUCKETS[-1]
    return next(b for b in buckets if b >= n)


def make_deterministic(device: torch.device) -> None:
    """Process-wide: deterministic algorithms (an op without one raises), cuBLAS's fixed workspace on CUDA, and on
    a CPU a thread count fixed to `usable_cores()`."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.set_num_threads(usable_cores())
    torch.use_deterministic_algorithms(True)


@dataclass(frozen=True)
class SamplerOptions:
    trim: bool = True  # drop masked image slots and prompt padding (False: openpi's exact computation)
    compile: bool = False  # torch.compile the sampler; CUDA graphs on CUDA
    deterministic: bool = False  # one shape per run, deterministic kernels, pinned CPU threads
    max_batch: int | None = None  # the largest batch the caller sends (None: any; buckets up to 64)


class Pi05Sampler:
    """Pads, trims and runs `Pi05Model.sample_actions` on its device; inputs are CPU tensors."""

    def __init__(self, model: Pi05Model, options: SamplerOptions = SamplerOptions()):
        self.model = model
        self.options = options
        self.device = model.device
        if options.deterministic:
            make_deterministic(self.device)
        self.shapes: set[tuple[int, int, int]] = set()  # (batch, prompt length, image slots) met so far
        self._compiled = self._run
        if options.compile and self.device.type == "cuda":
            self._compiled = CudaGraphs(self._run)
        elif options.compile:
            import torch._dynamo.config

            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
            self._compiled = torch.compile(self._run, dynamic=False)

    def __call__(
        self, images: Images, image_masks: Images, tokens: Tensor, token_mask: Tensor, noise: Tensor
    ) -> Tensor:
        """images: uint8 (n, H, W, 3) per slot (None: masked for all), masks (n,) bool, tokens / token_mask
        (n, L), noise (n, horizon, action_dim) → normalized actions (n, horizon, action_dim) float32 on the CPU."""
        n = tokens.shape[0]
        size = self.batch_size(n)
        images, image_masks = dict(images), dict(image_masks)
        if self.options.trim:
            for key, mask in image_masks.items():
                if mask is not None and not bool(mask.any()):
                    images[key] = image_masks[key] = None
            if not self.options.deterministic:
                length = kept_prompt_length(token_mask, token_mask.shape[1])
                tokens, token_mask = tokens[:, :length], token_mask[:, :length]
        slots = sum(v is not None for v in images.values())
        self.shapes.add((size, tokens.shape[1], slots))
        pad = _padder(n, size, self.device)
        with torch.inference_mode():
            out = self._compiled(
                {k: None if v is None else pad(v) for k, v in images.items()},
                {k: None if v is None else pad(v) for k, v in image_masks.items()},
                pad(tokens),
                pad(token_mask),
                pad(noise, zeros=True),
            )
            return out[:n].float().cpu()

    def batch_size(self, n: int) -> int:
        """The shape a batch of n runs in: its bucket, or in deterministic mode the bucket of `max_batch`."""
        if self.options.deterministic:
            return batch_bucket(self.options.max_batch or BATCH_BUCKETS[-1], self.options.max_batch)
        return batch_bucket(n, self.options.max_batch)

    def _run(
        self, images: Images, image_masks: Images, tokens: Tensor, token_mask: Tensor, noise: Tensor
    ) -> Tensor:
        pixels = {k: None if v is None else v.float() / 255.0 * 2.0 - 1.0 for k, v in images.items()}
        return self.model.sample_actions(pixels, image_masks, tokens, token_mask, noise, trim=False)


def _padder(n: int, size: int, device: torch.device):
    """Moves a CPU tensor of n rows to `device` with `size` rows: the first row repeated (or zeros)."""

    def pad(x: Tensor, zeros: bool = False) -> Tensor:
        if size > n:
            filler = torch.zeros_like(x[:1]) if zeros else x[:1]
            x = torch.cat([x, filler.expand(size - n, *x.shape[1:])])
        return x.to(device, non_blocking=True)

    return pad


class CudaGraphs:
    """`fn` captured as one CUDA graph per input shape, replayed with the new inputs copied into the captured ones.

    All graphs share one memory pool; that is safe because replays never overlap and each result is copied out
    before the next replay. `fn`'s constants must already live on the device (the first, uncaptured warm-up run
    creates them), since a capture cannot copy from the host."""

    def __init__(self, fn):
        self.fn = fn
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[Tensor], Tensor]] = {}
        self.pool = None

    def __call__(self, *args) -> Tensor:
        flat = _tensors(args)
        key = tuple(None if x is None else (tuple(x.shape), x.dtype) for x in flat)
        if key not in self.graphs:
            self.graphs[key] = self._capture(args)
        graph, inputs, out = self.graphs[key]
        for target, value in zip(inputs, [x for x in flat if x is not None], strict=True):
            target.copy_(value)
        graph.replay()
        return out.clone()

    def _capture(self, args) -> tuple[torch.cuda.CUDAGraph, list[Tensor], Tensor]:
        static = _map_tensors(args, lambda x: x.clone())
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.fn(*static)  # warm-up: cuBLAS workspaces, kernel choices, device constants
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.fn(*static)
        self.pool = graph.pool()
        return graph, [x for x in _tensors(static) if x is not None], out


def _tensors(args) -> list[Tensor | None]:
    """The tensors of (dicts of) tensors, None slots included, in a fixed order."""
    out: list[Tensor | None] = []
    for arg in args:
        out.extend(arg[k] for k in sorted(arg)) if isinstance(arg, dict) else out.append(arg)
    return out


def _map_tensors(args, fn):
    def one(x):
        return None if x is None else fn(x)

    return [{k: one(v) for k, v in a.items()} if isinstance(a, dict) else one(a) for a in args]
