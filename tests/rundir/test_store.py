import sqlite3

import pytest

from evalkit.core.episode import EpisodeResult, EpisodeSpec
from evalkit.core.errors import EvalkitError
from evalkit.rundir.store import DB_NAME, EpisodeStore, RunIdentity

IDENTITY = RunIdentity("run1", "pi05@aaaa", {"libero_spatial": "fp-openpi"})


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
    store = EpisodeStore(tmp_path, IDENTITY)
    store.add(result(0, "success", True, progress={"reached": True}))
    store.add(result(1, "error", error="env worker died"))
    assert store.finished() == {EpisodeSpec("libero_spatial", 3, 0, 7)}  # the error row is retried on resume
    store.add(result(1))  # the retry replaces the error row; no duplicate
    rows = store.rows()
    assert [(r["init_state"], r["termination"]) for r in rows] == [(0, "success"), (1, "max_steps")]
    assert rows[0]["latency_p50_ms"] == 20.0 and rows[0]["latency_max_ms"] == 30.0
    assert rows[0]["progress"] == '{"reached": true}' and rows[0]["run_id"] == "run1"
    assert {(r["protocol_fingerprint"], r["policy"]) for r in rows} == {("fp-openpi", "pi05@aaaa")}
    store.close()
    reopened = EpisodeStore(tmp_path)
    assert len(reopened.rows()) == 2
    with pytest.raises(EvalkitError, match="read-only"):
        reopened.add(result(2))


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(EvalkitError, match="no episode store"):
        EpisodeStore(tmp_path / "nowhere")


def test_rows_of_another_protocol_or_policy_are_refused_without_a_manifest(tmp_path):
    store = EpisodeStore(tmp_path, IDENTITY)
    store.add(result(0, "success", True))
    store.close()
    other_protocol = RunIdentity("run2", "pi05@aaaa", {"libero_spatial": "fp-max-steps-100"})
    with pytest.raises(EvalkitError, match="under protocol fp-openpi; this run is fp-max-steps-100"):
        EpisodeStore(tmp_path, other_protocol)
    other_policy = RunIdentity("run2", "random@none", {"libero_spatial": "fp-openpi"})
    with pytest.raises(EvalkitError, match="policy pi05@aaaa; this run is random@none"):
        EpisodeStore(tmp_path, other_policy)
    assert len(EpisodeStore(tmp_path).rows()) == 1  # nothing was touched
    # another suite under its own protocol may join the same run directory
    EpisodeStore(tmp_path, RunIdentity("run1", "pi05@aaaa", {"libero_object": "fp-2"})).close()


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path):
    foreign = tmp_path / DB_NAME
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE notes (x TEXT)")
    db.execute("INSERT INTO notes VALUES ('precious')")
    db.commit()
    db.close()
    before = foreign.read_bytes()
    with pytest.raises(EvalkitError, match="not an evalkit episode store"):
        EpisodeStore(tmp_path, IDENTITY)
    with pytest.raises(EvalkitError, match="not an evalkit episode store"):
        EpisodeStore(tmp_path)
    assert foreign.read_bytes() == before  # not switched to WAL, no table added
    assert not (tmp_path / f"{DB_NAME}-wal").exists()


def test_a_corrupt_store_is_one_clear_error(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(EvalkitError, match="cannot read episode store"):
        EpisodeStore(tmp_path)


def test_full_disk_keeps_earlier_rows(tmp_path):
    store = EpisodeStore(tmp_path, IDENTITY)
    store.add(result(0))
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now reports SQLITE_FULL, as on a full disk
    with pytest.raises(EvalkitError, match="cannot write episode"):
        for i in range(1, 500):
            store.add(result(i, error="x" * 2000))
    store.close()
    rows = EpisodeStore(tmp_path).rows()
    assert rows[0]["init_state"] == 0 and rows[0]["termination"] == "max_steps"
    assert [r["init_state"] for r in rows] == list(range(len(rows)))  # only whole rows, in order


def test_the_schema_the_insert_and_the_type_checks_come_from_one_column_table(tmp_path):
    """Issue 21: the schema existed three times (SCHEMA, COLUMNS, run.py's type lists)."""
    from evalkit.rundir.run import check_row_types
    from evalkit.rundir.store import COLUMNS, TABLE

    store = EpisodeStore(tmp_path, IDENTITY)
    store.add(result(0, "success", True))
    info = store._db.execute("PRAGMA table_info(episodes)").fetchall()
    assert [(name, kind, bool(notnull)) for _, name, kind, notnull, _, _ in info] == [
        (c.name, c.type, not c.nullable) for c in TABLE
    ]
    assert tuple(c.name for c in TABLE) == COLUMNS
    (row,) = store.rows()
    store.close()
    check_row_types(row, tmp_path)
    for column in TABLE:  # each column's type check comes from its entry: a wrong type is refused
        bad = {**row, column.name: 1.5 if column.type != "REAL" else "x"}
        with pytest.raises(EvalkitError, match=f"column {column.name} holds"):
            check_row_types(bad, tmp_path)
        if column.nullable:
            check_row_types({**row, column.name: None}, tmp_path)
        else:
            with pytest.raises(EvalkitError, match=f"column {column.name} holds None"):
                check_row_types({**row, column.name: None}, tmp_path)


def test_a_finished_run_read_by_a_report_leaves_no_wal_files(tmp_path):
    """Issue 22: a run read after it ended kept episodes.sqlite-wal and -shm (a read-only reader cannot remove
    them)."""
    from evalkit.rundir.run import read_episodes

    store = EpisodeStore(tmp_path, IDENTITY)
    store.add(result(0, "success", True))
    assert (tmp_path / f"{DB_NAME}-wal").exists()  # WAL while the writer runs
    reader_during_run = read_episodes(tmp_path)
    store.add(result(1))
    store.close()
    assert len(reader_during_run) == 1
    assert len(read_episodes(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]
    resumed = EpisodeStore(tmp_path, IDENTITY)  # a resumed run writes in WAL mode again
    resumed.add(result(2))
    assert resumed._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    resumed.close()
    assert len(read_episodes(tmp_path)) == 3 and sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]
