"""Ledger: the durable record. An SQLite store (the source of truth) and ``results.tsv``
regenerated from it atomically, with the upstream columns first."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._types import FINAL_STATUSES, ExperimentRecord, Measurement, RunResult, Status

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT PRIMARY KEY, branch TEXT NOT NULL, base_commit TEXT NOT NULL,
    created_at REAL NOT NULL, preset TEXT, metric TEXT NOT NULL, direction TEXT NOT NULL,
    config_json TEXT NOT NULL, versions_json TEXT NOT NULL, state TEXT NOT NULL,
    noise_sigma REAL
);
CREATE TABLE IF NOT EXISTS experiments (
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
CREATE INDEX IF NOT EXISTS experiments_tag ON experiments(tag);
CREATE INDEX IF NOT EXISTS experiments_hash ON experiments(tag, content_hash);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id INTEGER REFERENCES experiments(id),
    tag TEXT NOT NULL, kind TEXT NOT NULL, commit_sha TEXT NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', exit_code INTEGER,
    wall_s REAL NOT NULL, peak_memory_mb REAL NOT NULL, value REAL,
    secondary TEXT NOT NULL DEFAULT '{}', holdout TEXT NOT NULL DEFAULT '{}',
    log_path TEXT, started_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_commit ON runs(tag, commit_sha);
"""
RUN_KINDS = ("baseline", "candidate", "calibration", "re-measure")


class Ledger:
    """Every experiment and every sandbox run of a domain folder, all tags, in one SQLite file.

    Writes are committed (WAL) before the loop moves on, so a killed
    driver loses nothing it had recorded. One writer at a time (the driver holds a lock).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed row survives the driver being killed (the crash that
        # matters here); only an OS crash could lose the very last transaction.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._tx():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- tags --------------------------------------------------------------------------------
    def create_tag(
        self,
        tag: str,
        branch: str,
        base_commit: str,
        preset: str | None,
        metric: str,
        direction: str,
        config: Mapping[str, Any],
        versions: Mapping[str, str],
    ) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO tags VALUES (?,?,?,?,?,?,?,?,?,?,NULL)",
                (
                    tag,
                    branch,
                    base_commit,
                    time.time(),
                    preset,
                    metric,
                    direction,
                    json.dumps(config, default=str),
                    json.dumps(versions),
                    "running",
                ),
            )

    def tag(self, tag: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM tags WHERE tag=?", (tag,)
        ).fetchone()
        return row

    def latest_tag(self) -> str | None:
        row = self._db.execute("SELECT tag FROM tags ORDER BY created_at DESC LIMIT 1").fetchone()
        return row["tag"] if row else None

    def set_tag_state(self, tag: str, state: str) -> None:
        with self._tx():
            self._db.execute("UPDATE tags SET state=? WHERE tag=?", (state, tag))

    def set_noise_sigma(self, tag: str, sigma: float | None) -> None:
        with self._tx():
            self._db.execute("UPDATE tags SET noise_sigma=? WHERE tag=?", (sigma, tag))

    # -- experiments -------------------------------------------------------------------------
    def begin(
        self,
        tag: str,
        parent_commit: str,
        description: str,
        proposer: str,
        hypothesis: str = "",
        meta: Mapping[str, object] | None = None,
        tokens: int = 0,
        cost_usd: float = 0.0,
        propose_s: float | None = None,
    ) -> int:
        """Write the experiment's row as ``running`` before anything runs (so a crash of the
        driver leaves a row that resume turns into ``interrupted``)."""
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO experiments (tag, status, description, hypothesis, proposer,"
                " parent_commit, meta, tokens, cost_usd, started_at, propose_s)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    tag,
                    Status.RUNNING.value,
                    description,
                    hypothesis,
                    proposer,
                    parent_commit,
                    json.dumps(dict(meta or {}), default=str),
                    tokens,
                    cost_usd,
                    time.time(),
                    propose_s,
                ),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update(self, experiment_id: int, **fields: Any) -> None:
        """Set columns of an experiment row (dicts are stored as JSON)."""
        if not fields:
            return
        for key in ("secondary", "holdout", "meta"):
            if key in fields:
                fields[key] = json.dumps(dict(fields[key]), default=str)
        if isinstance(fields.get("status"), Status):
            fields["status"] = fields["status"].value
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._tx():
            self._db.execute(
                f"UPDATE experiments SET {cols} WHERE id=?", (*fields.values(), experiment_id)
            )

    def finish(self, experiment_id: int, status: Status, reason: str = "", **fields: Any) -> None:
        assert status in FINAL_STATUSES, status
        self.update(experiment_id, status=status, reason=reason, finished_at=time.time(), **fields)

    def records(self, tag: str) -> list[ExperimentRecord]:
        rows = self._db.execute("SELECT * FROM experiments WHERE tag=? ORDER BY id", (tag,))
        return [_record(r) for r in rows]

    def record(self, experiment_id: int) -> ExperimentRecord:
        row = self._db.execute("SELECT * FROM experiments WHERE id=?", (experiment_id,)).fetchone()
        return _record(row)

    def row(self, experiment_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM experiments WHERE id=?", (experiment_id,)
        ).fetchone()
        return row

    def find_measured(self, tag: str, content_hash: str) -> ExperimentRecord | None:
        """An earlier experiment of this tag with the same content that got a value."""
        row = self._db.execute(
            "SELECT * FROM experiments WHERE tag=? AND content_hash=? AND value IS NOT NULL"
            " ORDER BY id DESC LIMIT 1",
            (tag, content_hash),
        ).fetchone()
        return _record(row) if row else None

    def interrupt_running(self, tag: str, reason: str) -> list[int]:
        """Turn rows a dead driver left ``running`` into ``interrupted``."""
        ids = [
            r["id"]
            for r in self._db.execute(
                "SELECT id FROM experiments WHERE tag=? AND status=?", (tag, Status.RUNNING.value)
            )
        ]
        for i in ids:
            self.finish(i, Status.INTERRUPTED, reason)
        return ids

    def count_candidates(self, tag: str) -> int:
        """Experiments of this tag other than the baseline."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM experiments WHERE tag=? AND proposer != 'baseline'", (tag,)
        ).fetchone()
        return int(row[0])

    def counts(self, tag: str) -> dict[str, int]:
        out = {s.value: 0 for s in FINAL_STATUSES}
        for r in self._db.execute(
            "SELECT status, COUNT(*) AS n FROM experiments WHERE tag=? GROUP BY status", (tag,)
        ):
            if r["status"] in out:
                out[r["status"]] = r["n"]
        return out

    def spend(self, tag: str) -> tuple[int, float]:
        r = self._db.execute(
            "SELECT COALESCE(SUM(tokens),0) AS t, COALESCE(SUM(cost_usd),0) AS c"
            " FROM experiments WHERE tag=?",
            (tag,),
        ).fetchone()
        return int(r["t"]), float(r["c"])

    # -- runs --------------------------------------------------------------------------------
    def add_run(
        self,
        tag: str,
        experiment_id: int | None,
        kind: str,
        commit: str,
        run: RunResult,
        measurement: Measurement | None,
        status: Status | None = None,
        reason: str = "",
    ) -> None:
        assert kind in RUN_KINDS, kind
        final = status or run.failure or Status.KEEP
        with self._tx():
            self._db.execute(
                "INSERT INTO runs (experiment_id, tag, kind, commit_sha, seed, status, reason,"
                " exit_code, wall_s, peak_memory_mb, value, secondary, holdout, log_path,"
                " started_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    experiment_id,
                    tag,
                    kind,
                    commit,
                    run.seed,
                    "ok" if final is Status.KEEP else final.value,
                    reason or run.reason,
                    run.exit_code,
                    run.wall_s,
                    run.peak_memory_mb,
                    measurement.primary if measurement else None,
                    json.dumps(dict(measurement.secondary)) if measurement else "{}",
                    json.dumps(dict(measurement.holdout)) if measurement else "{}",
                    str(run.log_path),
                    time.time() - run.wall_s,
                ),
            )

    def run_values(self, tag: str, commit: str) -> list[float]:
        """Every measured value of ``commit`` in this tag (baseline, candidate, re-measure and
        calibration runs alike), oldest first."""
        rows = self._db.execute(
            "SELECT value FROM runs WHERE tag=? AND commit_sha=? AND value IS NOT NULL ORDER BY id",
            (tag, commit),
        )
        return [float(r["value"]) for r in rows]

    def values_by_commit(self, tag: str) -> dict[str, list[float]]:
        """Measured values of every run of this tag, grouped by commit, oldest first."""
        out: dict[str, list[float]] = {}
        for r in self._db.execute(
            "SELECT commit_sha, value FROM runs WHERE tag=? AND value IS NOT NULL ORDER BY id",
            (tag,),
        ):
            out.setdefault(r["commit_sha"], []).append(float(r["value"]))
        return out

    def run_count(self, tag: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM runs WHERE tag=?", (tag,)).fetchone()[0])

    # -- results.tsv -------------------------------------------------------------------------
    def write_results_tsv(self, path: Path, metric: str) -> None:
        """Regenerate ``results.tsv`` (all tags, oldest first) via a temp file + rename."""
        header = ["commit", metric, "memory_gb", "status", "description", "id", "tag", "reason"]
        lines = ["\t".join(header)]
        for r in self._db.execute(
            "SELECT * FROM experiments WHERE status != ? ORDER BY id", (Status.RUNNING.value,)
        ):
            commit = (r["commit_sha"] or r["parent_commit"] or "")[:7]
            value = f"{r['value']:.6f}" if r["value"] is not None else f"{0:.6f}"
            mem = f"{r['memory_gb']:.1f}" if r["memory_gb"] is not None else "0.0"
            cells = [
                commit,
                value,
                mem,
                r["status"],
                r["description"],
                str(r["id"]),
                r["tag"],
                r["reason"],
            ]
            lines.append("\t".join(_tsv_cell(c) for c in cells))
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)


def _tsv_cell(text: str) -> str:
    return " ".join(str(text).split())


def _record(r: sqlite3.Row) -> ExperimentRecord:
    return ExperimentRecord(
        id=r["id"],
        tag=r["tag"],
        status=Status(r["status"]),
        reason=r["reason"],
        description=r["description"],
        hypothesis=r["hypothesis"],
        proposer=r["proposer"],
        parent_commit=r["parent_commit"],
        commit=r["commit_sha"],
        value=r["value"],
        secondary=json.loads(r["secondary"]),
        holdout=json.loads(r["holdout"]),
        meta=json.loads(r["meta"]),
        tokens=r["tokens"],
        cost_usd=r["cost_usd"],
        memory_gb=r["memory_gb"],
        content_hash=r["content_hash"],
    )
