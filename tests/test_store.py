import pytest

from evalkit.episode import EpisodeResult, EpisodeSpec
from evalkit.errors import EvalkitError
from evalkit.store import EpisodeStore


def result(init_state, termination="max_steps", success=False, **kw):
    spec = EpisodeSpec("libero_spatial", 3, init_state, 7)
    return EpisodeResult(
        spec,
        "put the bowl on the plate",
        success,
        12,
        termination,
        1.5,
        policy_calls=3,
        latency_ms=[10.0, 20.0, 30.0],
        **kw,
    )


def test_rows_resume_and_error_retry(tmp_path):
    store = EpisodeStore(tmp_path, "run1")
    store.add(result(0, "success", True, progress={"reached": True}))
    store.add(result(1, "error", error="env worker died"))
    assert store.finished() == {EpisodeSpec("libero_spatial", 3, 0, 7)}  # the error row is retried on resume
    store.add(result(1))  # the retry replaces the error row; no duplicate
    rows = store.rows()
    assert [(r["init_state"], r["termination"]) for r in rows] == [(0, "success"), (1, "max_steps")]
    assert rows[0]["latency_p50_ms"] == 20.0 and rows[0]["latency_max_ms"] == 30.0
    assert rows[0]["progress"] == '{"reached": true}' and rows[0]["run_id"] == "run1"
    store.close()
    reopened = EpisodeStore(tmp_path, readonly=True)
    assert len(reopened.rows()) == 2


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(EvalkitError, match="no episode store"):
        EpisodeStore(tmp_path / "nowhere", readonly=True)


def test_full_disk_keeps_earlier_rows(tmp_path):
    store = EpisodeStore(tmp_path, "run1")
    store.add(result(0))
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now reports SQLITE_FULL, as on a full disk
    with pytest.raises(EvalkitError, match="cannot write episode"):
        for i in range(1, 500):
            store.add(result(i, error="x" * 2000))
    store.close()
    rows = EpisodeStore(tmp_path, readonly=True).rows()
    assert rows[0]["init_state"] == 0 and all(r["termination"] for r in rows)
