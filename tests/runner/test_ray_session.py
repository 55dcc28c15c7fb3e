"""One `EvalSession` over Ray (what `evalkit watch --ray` does): two checkpoints of a camera-reading policy (tiny
pi0.5) evaluated one after the other; the env actors (and their simulators) are the same for both, only the policy
replicas change, and no episode needs a retry: every simulator call of an actor runs on one thread, so a scene built
for one episode renders in the next (its GL context is current on that thread)."""

from __future__ import annotations

import pytest

from evalkit.core.policy import PolicyOptions
from evalkit.models.pi05.cli import make_tiny_checkpoint
from evalkit.runner import EvalConfig
from evalkit.runner.evaluate import EvalSession
from tests.helpers import read_rows
from tests.system import import_or_skip

pytestmark = pytest.mark.slow
ray = import_or_skip("ray", "make setup installs the [ray] extra")


def test_actors_outlive_a_checkpoint_and_render_every_episode(tmp_path, capfd):
    checkpoints = [make_tiny_checkpoint(tmp_path / f"step_{i}", "droid", seed=i) for i in (1, 2)]
    config = EvalConfig(
        suite="droid_demo",
        policy="pi05",
        tasks=(0,),
        episodes_per_task=3,
        max_steps=10,
        workers=1,
        ray="local",
    )
    actors, replicas = [], []
    with EvalSession(config) as session:
        for checkpoint in checkpoints:
            options = PolicyOptions(name="pi05", checkpoint=str(checkpoint))
            outcome = session.evaluate(options, out=tmp_path / f"run_{checkpoint.name}", progress=True)
            assert outcome.exit_code == 0
            slots = session.backend.runner.slots
            actors.append([ray.get(slot.actor.ready.remote()) for slot in slots])
            replicas.append([r._actor_id for r in session.backend.replicas.actors])
    assert actors[0] == actors[1]  # the same env actor processes served both checkpoints
    assert replicas[0] != replicas[1]  # each checkpoint its own replicas
    err = capfd.readouterr().err
    assert "retrying" not in err and "EGLError" not in err, err[-3000:]
    for checkpoint in checkpoints:
        rows = read_rows(tmp_path / f"run_{checkpoint.name}")
        assert sorted(r["init_state"] for r in rows) == [0, 1, 2]
        assert all(r["termination"] != "error" for r in rows)
