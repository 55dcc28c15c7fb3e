"""pi05 (tiny random checkpoint) served by PolicyServer through the ws:// adapter equals pi05 in process."""

import numpy as np

from evalkit.core.policy import PolicyOptions
from evalkit.models.pi05.cli import make_tiny_checkpoint
from evalkit.policies.registry import make_policy
from evalkit.serving.server import ServerThread
from tests.serving.wire_helpers import libero_request, local_server


def test_served_pi05_equals_in_process(tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "libero", "libero", seed=3)
    requests = [libero_request(i) for i in range(3)]
    local = make_policy(
        PolicyOptions(name="pi05", embodiment="libero", action_dim=7, checkpoint=str(checkpoint))
    )
    try:
        want = [local.infer([r])[0] for r in requests]  # one at a time
        with ServerThread(local_server(local, max_wait_ms=200)) as srv:
            remote = make_policy(PolicyOptions(name=srv.url, embodiment="libero", action_dim=7, timeout_s=60))
            try:
                assert remote.meta.fingerprint == local.meta.fingerprint  # from the server's metadata
                assert remote.meta.name == f"remote:{local.meta.name}"
                assert remote.meta.image_size == local.meta.image_size
                remote.infer([libero_request(i + 3) for i in range(3)])  # opens three pooled connections
                before = srv.server.stats().batches
                got = remote.infer(requests)
            finally:
                remote.close()
            assert (
                srv.server.stats().batches == before + 1
            )  # the three concurrent requests shared one policy call
    finally:
        local.close()
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and a.shape[1] == 7
        # Per-request noise keeps batched answers equal to one-at-a-time ones, up to float summation order.
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
