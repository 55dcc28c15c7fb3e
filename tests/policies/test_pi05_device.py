"""The whole pi05 adapter path on a device other than the CPU: images, state and prompt in, noise drawn, the model
sampled, with the weights on the meta device. Meta kernels do not check devices (a CPU operand would pass), so every
operation runs under `SameDevice`, a dispatch mode that does what a CUDA kernel does: it refuses operands on two
devices. A tensor left on the CPU fails here rather than on a user's GPU. Meta tensors carry shapes and dtypes but no
data, so the test stops at the model's output."""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from evalkit.core.policy import PolicyOptions, PolicyRequest
from evalkit.models.pi05.cli import make_tiny_checkpoint
from evalkit.policies.registry import make_policy


class SameDevice(TorchDispatchMode):
    """Every op's tensor operands on one device (0-dim CPU tensors excepted, as CUDA kernels accept them)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        devices = {str(t.device) for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
        if len(devices) > 1:
            raise AssertionError(f"{func} got tensors on {sorted(devices)}")
        return func(*args, **kwargs)


class Sampled(Exception):
    """Raised with the model's output, to stop before it is copied back to the CPU (impossible from meta)."""


@pytest.mark.parametrize(
    ("embodiment", "action_dim", "dtype"), [("libero", 7, "float32"), ("droid", 8, "bfloat16")]
)
def test_pi05_runs_entirely_on_the_requested_device(tmp_path, embodiment, action_dim, dtype):
    from evalkit.core.embodiment import embodiment as body_of

    ckpt = make_tiny_checkpoint(tmp_path / embodiment, embodiment, seed=0)
    policy = make_policy(
        PolicyOptions(
            name="pi05",
            embodiment=embodiment,
            action_dim=action_dim,
            checkpoint=str(ckpt),
            device="meta",
            dtype=dtype,
        )
    )
    assert all(p.device.type == "meta" for p in policy.model.parameters())
    sample = policy.sampler._compiled

    def capture(*args, **kwargs):
        raise Sampled(sample(*args, **kwargs))

    policy.sampler._compiled = capture
    body = body_of(embodiment)
    rng = np.random.default_rng(0)
    obs = {key: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for key in body.policy_cameras}
    for key, dim in body.state:
        obs[key] = rng.normal(0, 0.1, dim).astype(np.float32)
    obs["prompt"] = "pick up the block"
    batch = [PolicyRequest(obs, f"e{i}", seed=i, action_dim=action_dim) for i in range(3)]
    with SameDevice(), pytest.raises(Sampled) as out:
        policy.infer(batch)
    (actions,) = out.value.args
    assert actions.device.type == "meta"
    # 3 observations run in the batch bucket of 4
    assert actions.shape == (4, policy.config.action_horizon, policy.config.action_dim)
    policy.close()
