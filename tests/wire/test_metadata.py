"""The metadata frame: what `evalkit serve` writes is what the `ws://` client reads back, and what an openpi
server (metadata `{}`) or a malformed frame says is read safely."""

import pytest

from evalkit.core.policy import PolicyMeta
from evalkit.wire.metadata import (
    describe_identity,
    latency_metadata,
    policy_metadata,
    served_identity,
    served_latency_s,
    served_policy_meta,
)

URL = "ws://127.0.0.1:8000"


def test_what_the_server_writes_the_client_reads():
    meta = PolicyMeta(
        "pi05",
        "sha256:abc",
        cameras=("observation/image",),
        image_size=(224, 224),
        action_dim=7,
        action_mode="eef_delta",
        provenance={"weights": "sha256:abc"},
    )
    frame = {**policy_metadata(meta, "libero", 7, 16), **latency_metadata(812.0, 95.0, 120.0, 3)}
    read = served_policy_meta(frame, URL, "libero", 7)
    assert (read.name, read.fingerprint, read.embodiment) == ("remote:pi05", "sha256:abc", "libero")
    assert read.cameras == ("observation/image",) and read.image_size == (224, 224)
    assert read.action_mode == "eef_delta" and read.provenance == {"weights": "sha256:abc"}
    assert frame["max_batch"] == 16 and served_latency_s(frame) == pytest.approx(0.812)
    assert served_identity(frame) == ("pi05", "sha256:abc", "libero")
    assert (
        describe_identity(served_identity(frame))
        == "policy 'pi05', fingerprint 'sha256:abc', embodiment 'libero'"
    )


def test_an_openpi_server_states_nothing():
    read = served_policy_meta({}, URL, "libero", 7)
    assert (read.name, read.fingerprint) == (f"remote:{URL}", f"remote:{URL}")
    assert read.embodiment is None and read.image_size is None and read.provenance == {}
    assert read.cameras == (
        "observation/image",
        "observation/wrist_image",
    )  # all the embodiment's policy cameras
    assert served_latency_s({}) is None


@pytest.mark.parametrize(
    "frame",
    [
        {"policy": 3, "fingerprint": "", "cameras": ["no/such/camera"], "image_size": [224, -1]},
        {"policy": None, "cameras": "observation/image", "image_size": "224x224", "provenance": {"a": 1}},
        {"latency_ms": {"warmup": "slow", "max": -1}},
    ],
)
def test_malformed_values_are_ignored(frame):
    read = served_policy_meta(frame, URL, "libero", 7)
    assert read.name == f"remote:{URL}" and read.fingerprint == f"remote:{URL}"
    assert read.cameras == ("observation/image", "observation/wrist_image")
    assert read.image_size is None and read.provenance == {} and served_latency_s(frame) is None
