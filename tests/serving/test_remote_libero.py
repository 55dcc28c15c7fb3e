"""A LIBERO run through `ws://` (openpi's protocol, `evalkit serve`) equals the same policy run in process."""

import numpy as np
import pytest

from evalkit.runner import EvalConfig, evaluate
from tests.helpers import OUTCOME_COLUMNS as COMPARED
from tests.helpers import read_manifest, read_rows
from tests.serving.wire_helpers import ServerProcess

# slow: LIBERO scenes, evalkit serve in a subprocess
pytestmark = pytest.mark.slow

SUITE = "libero_spatial"


def _run(tmp_path, name: str, policy: str):
    config = EvalConfig(
        suite=SUITE,
        policy=policy,
        out=tmp_path / name,
        tasks=(0,),
        episodes_per_task=2,
        max_steps=12,
        workers=1,
        save_actions=True,
    )
    return evaluate(config, progress=False)


def test_remote_run_equals_in_process_run(tmp_path):
    local = _run(tmp_path, "local", "random")
    with ServerProcess("--policy", "random", "--embodiment", "libero") as server:
        remote = _run(tmp_path, "remote", server.url)
    local_rows, remote_rows = read_rows(local), read_rows(remote)
    assert len(local_rows) == len(remote_rows) == 2
    for a, b in zip(local_rows, remote_rows, strict=True):
        assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}
        assert b["termination"] == "max_steps" and b["steps"] == 12 and b["policy_calls"] == 3
        name = f"{SUITE}_{a['task_id']}_{a['init_state']}_{a['seed']}.npz"
        with np.load(local / "actions" / name) as x, np.load(remote / "actions" / name) as y:
            assert x["actions"].shape == (12, 7)
            # The server samples with the request's seed (sent as __evalkit_seed__), so every executed action is
            # the one the in-process policy chose.
            np.testing.assert_array_equal(x["actions"], y["actions"])
    policy = read_manifest(remote)["policy"]
    # The served policy's identity; `random` reads no images, so the remote run rendered none either.
    assert policy["name"] == "remote:random" and policy["fingerprint"] == "none" and policy["cameras"] == []
