"""The ledger: an old (schema 1) file is migrated on open, and one Ledger may be shared by a
writer thread and reader threads."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from autoresearch import Cause, ExperimentKind, Ledger, Status
from autoresearch.cli import app
from autoresearch.testing import make_toy_domain

# The tables as the first release wrote them: experiments had no kind and no cause.
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tags (
    tag TEXT PRIMARY KEY, branch TEXT NOT NULL, base_commit TEXT NOT NULL,
    created_at REAL NOT NULL, preset TEXT, metric TEXT NOT NULL, direction TEXT NOT NULL,
    config_json TEXT NOT NULL, versions_json TEXT NOT NULL, state TEXT NOT NULL,
    noise_sigma REAL
);
CREATE TABLE experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT NOT NULL REFERENCES tags(tag),
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL, hypothesis TEXT NOT NULL DEFAULT '', proposer TEXT NOT NULL,
    parent_commit TEXT NOT NULL, commit_sha TEXT,
    value REAL, secondary TEXT NOT NULL DEFAULT '{}', holdout TEXT NOT NULL DEFAULT '{}',
    meta TEXT NOT NULL DEFAULT '{}', tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0, memory_gb REAL, content_hash TEXT,
    started_at REAL NOT NULL, finished_at REAL, propose_s REAL, run_s REAL,
    diff TEXT NOT NULL DEFAULT '', log_path TEXT, n_runs INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id INTEGER REFERENCES experiments(id),
    tag TEXT NOT NULL, kind TEXT NOT NULL, commit_sha TEXT NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', exit_code INTEGER,
    wall_s REAL NOT NULL, peak_memory_mb REAL NOT NULL, value REAL,
    secondary TEXT NOT NULL DEFAULT '{}', holdout TEXT NOT NULL DEFAULT '{}',
    log_path TEXT, started_at REAL NOT NULL
);
"""
BASE, CAND = "a" * 40, "b" * 40


def _schema_1_file(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute(
        "INSERT INTO tags VALUES ('old', 'autoresearch/old', ?, 1.0, NULL, 'score', 'minimize',"
        " '{}', '{}', 'stopped', NULL)",
        (BASE,),
    )
    rows = [
        ("keep", "baseline", "baseline", BASE, BASE, 11.0),
        ("discard", "X=-1", "knob", BASE, CAND, 17.0),
        ("crash", "X=9", "knob", BASE, None, None),
    ]
    for status, desc, proposer, parent, commit, value in rows:
        db.execute(
            "INSERT INTO experiments (tag, status, description, proposer, parent_commit,"
            " commit_sha, value, started_at, n_runs) VALUES ('old', ?, ?, ?, ?, ?, ?, 1.0, 1)",
            (status, desc, proposer, parent, commit, value),
        )
    db.execute(
        "INSERT INTO runs (experiment_id, tag, kind, commit_sha, seed, status, wall_s,"
        " peak_memory_mb, value, started_at) VALUES (1, 'old', 'baseline', ?, 0, 'ok', 1.0,"
        " 10.0, 11.0, 1.0)",
        (BASE,),
    )
    db.commit()
    db.close()


def test_a_schema_1_ledger_is_migrated_and_its_baseline_marked(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _schema_1_file(path)
    led = Ledger(path)
    try:
        recs = led.history("old")
        assert [r.kind for r in recs] == [
            ExperimentKind.BASELINE,
            ExperimentKind.CANDIDATE,
            ExperimentKind.CANDIDATE,
        ]
        assert [r.status for r in recs] == [Status.KEEP, Status.DISCARD, Status.CRASH]
        assert all(r.cause is None for r in recs) and recs[1].value == 17.0
        assert led.count_candidates("old") == 2
        assert led.run_values("old", BASE) == [11.0]
        info = led.tag_info("old")
        assert info is not None and info.state == "stopped" and info.metric == "score"
        # The migrated file takes new rows with the new columns.
        exp = led.begin("old", CAND, "after the upgrade", "knob")
        led.finish(exp, Status.INVALID, "no proposal: x", Cause.NO_PROPOSAL)
        assert led.record(exp).cause is Cause.NO_PROPOSAL
    finally:
        led.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)
    db.close()
    # Opening it again changes nothing more.
    again = Ledger(path)
    try:
        assert [r.kind for r in again.history("old")][:1] == [ExperimentKind.BASELINE]
        assert len(again.history("old")) == 4
    finally:
        again.close()


def test_a_readonly_reader_of_a_schema_1_file_sees_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _schema_1_file(path)
    Ledger(path).close()  # the driver migrates on open
    reader = Ledger.open_readonly(path)
    try:
        assert len(reader.history("old")) == 3
    finally:
        reader.close()


def _new_tag(led: Ledger) -> None:
    led.create_tag("t", "autoresearch/t", BASE, None, "score", "minimize", {}, {})


def test_one_ledger_shared_by_a_writer_and_readers(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.sqlite")
    _new_tag(led)
    rows = 60
    errors: list[BaseException] = []
    seen: list[list[int]] = [[] for _ in range(3)]
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(rows):
                exp = led.begin("t", BASE, f"candidate {i}", "test", meta={"i": i})
                led.finish(exp, Status.DISCARD, "measured", value=float(i))
                time.sleep(0.002)  # let the readers in between rows
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def read(slot: int) -> None:
        try:
            while not done.is_set():
                recs = led.history("t")
                # A reader only ever sees committed rows: finished ones, or running ones
                # without a value, never half a row.
                assert all(r.value is None or r.status is Status.DISCARD for r in recs)
                seen[slot].append(len(recs))
                led.counts("t")
                led.spend("t")
                time.sleep(0.001)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write)] + [
        threading.Thread(target=read, args=(n,)) for n in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [], errors
        assert all(s == sorted(s) for s in seen), "a reader saw rows disappear"
        assert any(0 < n < rows for s in seen for n in s), "no reader ran beside the writer"
        recs = led.history("t")
        assert [r.value for r in recs] == [float(i) for i in range(rows)]
        assert [json.loads(json.dumps(r.meta))["i"] for r in recs] == list(range(rows))
    finally:
        led.close()


def test_a_reader_in_another_thread_sees_what_the_writer_committed(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.sqlite")
    _new_tag(led)
    exp = led.begin("t", BASE, "one", "test")
    led.finish(exp, Status.KEEP, "kept", value=1.5)
    out: list[object] = []
    reader = threading.Thread(target=lambda: out.append(led.record(exp)))
    reader.start()
    reader.join(10)
    try:
        (rec,) = out
        assert rec.value == 1.5 and rec.status is Status.KEEP  # type: ignore[attr-defined]
    finally:
        led.close()


def _old_domain(tmp_path: Path) -> Path:
    d = make_toy_domain(tmp_path / "toy", git=True)
    (d / ".autoresearch").mkdir()
    _schema_1_file(d / ".autoresearch" / "ledger.sqlite")
    return d


def test_status_reads_a_schema_1_ledger_a_driver_has_migrated(tmp_path: Path) -> None:
    d = _old_domain(tmp_path)
    Ledger(d / ".autoresearch" / "ledger.sqlite").close()  # a new driver opened it once
    res = CliRunner().invoke(app, ["status", str(d), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["tag"] == "old" and data["baseline_value"] == 11.0


def test_status_reads_a_schema_1_ledger_as_it_is(tmp_path: Path) -> None:
    d = _old_domain(tmp_path)
    res = CliRunner().invoke(app, ["status", str(d), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["tag"] == "old" and data["baseline_value"] == 11.0


def test_a_schema_2_ledger_is_read_by_status_and_report_readers(tmp_path: Path) -> None:
    # A ledger written before the eval-spend columns (schema 2): a read-only opener (status,
    # report, dashboard) upgrades it once and reads its rows.
    path = tmp_path / "ledger.sqlite"
    led = Ledger(path)
    led.create_tag("t", "autoresearch/t", "a" * 40, None, "score", "minimize", {}, {})
    exp = led.begin("t", "a" * 40, "baseline", "baseline", kind=ExperimentKind.BASELINE)
    led.finish(exp, Status.KEEP, "baseline", commit_sha="a" * 40, value=3.0)
    led.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE experiments DROP COLUMN eval_tokens")
    db.execute("ALTER TABLE experiments DROP COLUMN eval_cost_usd")
    db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    db.commit()
    db.close()
    reader = Ledger.open_readonly(path)
    try:
        (rec,) = reader.records("t")
        assert rec.value == 3.0 and rec.eval_tokens == 0 and rec.eval_cost_usd == 0.0
    finally:
        reader.close()
