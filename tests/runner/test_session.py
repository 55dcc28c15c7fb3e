"""One `EvalSession`, several policies (what `evalkit watch` does): each evaluation's settings travel with its
episodes (its run directory, the cameras its policy reads, its training step), and an evaluation that fails to start
or is interrupted leaves the session usable. Real droid_demo scenes, in-process policies."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from evalkit.core.errors import EvalkitError
from evalkit.core.policy import PolicyMeta, PolicyOptions
from evalkit.rundir.manifest import read_manifest as load_manifest
from evalkit.runner import EvalConfig
from evalkit.runner.evaluate import EvalSession
from tests.helpers import read_manifest, read_rows

pytestmark = pytest.mark.slow

CAMERA = "observation/exterior_image_1_left"


class RecordingPolicy:
    """Zero actions; remembers which image keys each observation carried."""

    def __init__(self, name: str, cameras: tuple[str, ...] = (), embodiment: str | None = None):
        self.meta = PolicyMeta(name, "none", cameras=cameras, action_dim=8, embodiment=embodiment)
        self.images: list[bool] = []
        self.on_call = None

    def infer(self, batch):
        if self.on_call is not None:
            self.on_call()
        self.images += [CAMERA in req.obs for req in batch]
        return [np.zeros((10, req.action_dim), np.float32) for req in batch]

    def close(self) -> None:
        pass


def worker_pids(session: EvalSession) -> list[int]:
    return [w.process.pid for w in session.backend.runner.workers]


def test_one_session_many_policies_failures_and_an_interrupt(tmp_path):
    config = EvalConfig(
        suite="droid_demo", policy="zero", tasks=(0,), episodes_per_task=2, max_steps=5, workers=1
    )
    with EvalSession(config) as session:
        blind = RecordingPolicy("blind")
        outcome = session.evaluate(blind, out=tmp_path / "a", progress=False, training_step=1000)
        assert outcome.exit_code == 0 and blind.images and not any(blind.images)
        assert read_manifest(tmp_path / "a")["config"]["training_step"] == 1000
        pids = worker_pids(session)

        # policies that do not load or do not fit: refused in one line, nothing left behind, workers kept
        with pytest.raises(EvalkitError, match="takes libero observations"):
            session.evaluate(
                RecordingPolicy("wrong", embodiment="libero"), out=tmp_path / "b", progress=False
            )
        assert session.backend.policy is None  # a policy that does not fit is not kept (its memory, its GPU)
        with pytest.raises(EvalkitError, match="unknown policy"):
            session.evaluate(PolicyOptions(name="nonsense"), out=tmp_path / "c", progress=False)
        assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()

        seeing = RecordingPolicy("seeing", cameras=(CAMERA,))
        assert session.evaluate(seeing, out=tmp_path / "d", progress=False).exit_code == 0
        assert seeing.images and all(seeing.images)  # rendered for this policy, by the same worker
        assert worker_pids(session) == pids
        assert read_manifest(tmp_path / "d")["config"]["training_step"] is None
        session.unload()  # between evaluations: the policy goes, the workers stay
        assert session.backend.policy is None and worker_pids(session) == pids

        # Ctrl-C in the middle of an evaluation (once its first episode is stored: one worker runs them in turn):
        # it stops; the next evaluation runs (on new workers) and resumes
        stopped = RecordingPolicy("stopped")
        stopped.on_call = lambda: os.kill(os.getpid(), signal.SIGINT) if stopped.images else None
        with pytest.raises(KeyboardInterrupt):
            session.evaluate(stopped, out=tmp_path / "e", progress=False)
        assert read_manifest(tmp_path / "e")["sessions"][-1]["status"] == "interrupted"
        # the first episode of the dispatch order (the balanced order: init states shuffled)
        first = load_manifest(tmp_path / "e").planned_episodes()[0]
        assert [r["init_state"] for r in read_rows(tmp_path / "e")] == [first.init_state]
        stopped.on_call = None
        assert session.evaluate(stopped, out=tmp_path / "e", progress=False).exit_code == 0
        assert sorted(r["init_state"] for r in read_rows(tmp_path / "e")) == [0, 1]
        assert worker_pids(session) != pids
    for name in ("a", "d", "e"):
        assert len(read_rows(tmp_path / name)) == 2
