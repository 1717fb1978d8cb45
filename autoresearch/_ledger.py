"""Ledger: the durable record. An SQLite store (the source of truth) and ``results.tsv``
regenerated from it atomically, with the upstream columns first."""

from __future__ import annotations

import enum
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoresearch._ledger_rows import (
    _MIGRATIONS,
    _RECORD_COLUMNS,
    _SCHEMA,
    RUN_KINDS,
    SCHEMA_VERSION,
    Confirmation,
    _confirmation,
    _record,
    _run_record,
    _tag_info,
    _tsv_cell,
)
from autoresearch._types import (
    FINAL_STATUSES,
    Cause,
    ExperimentKind,
    ExperimentRecord,
    Measurement,
    RunKind,
    RunRecord,
    RunResult,
    Status,
    TagInfo,
)


class Ledger:
    """Every experiment and every sandbox run of a domain folder, all tags, in one SQLite file.

    Writes are committed (WAL) before the loop moves on, so a killed driver loses nothing it
    had recorded. One driver writes (it holds the folder's lock). Thread safety: one Ledger
    may be shared by threads (a writer thread while others read); every statement runs under
    the ledger's lock. Readers in other processes open their own (``Ledger.open_readonly``);
    WAL lets them read while the driver writes.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._lock = threading.RLock()
        if readonly:
            uri = f"file:{path.resolve()}?mode=ro"
            self._db = sqlite3.connect(
                uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
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
            for table, column, definition in _MIGRATIONS:
                have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            # Rows of schema 1 found the baseline by its proposer's name.
            self._db.execute(
                "UPDATE experiments SET kind='baseline' WHERE proposer='baseline'"
                " AND kind='candidate'"
            )
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    @classmethod
    def open_readonly(cls, path: Path) -> Ledger:
        """A reader for reports and dashboards: it never writes, and never creates the file."""
        if not path.is_file():
            raise FileNotFoundError(path)
        reader = cls(path, readonly=True)
        if reader._schema_version() < SCHEMA_VERSION:
            # An older ledger is upgraded once (columns added, nothing removed) before it is
            # read, as a driver would on its next open.
            reader.close()
            cls(path).close()
            reader = cls(path, readonly=True)
        return reader

    def _schema_version(self) -> int:
        rows = self._q("SELECT value FROM meta WHERE key='schema_version'")
        return int(rows[0]["value"]) if rows else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _q(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
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

    def tag_info(self, tag: str) -> TagInfo | None:
        rows = self._q("SELECT * FROM tags WHERE tag=?", (tag,))
        return _tag_info(rows[0]) if rows else None

    def tags(self) -> list[TagInfo]:
        """Every tag of this folder, oldest first."""
        return [_tag_info(r) for r in self._q("SELECT * FROM tags ORDER BY created_at")]

    def latest_tag(self) -> str | None:
        rows = self._q("SELECT tag FROM tags ORDER BY created_at DESC LIMIT 1")
        return rows[0]["tag"] if rows else None

    def set_tag_state(self, tag: str, state: str) -> None:
        with self._tx():
            self._db.execute("UPDATE tags SET state=? WHERE tag=?", (state, tag))

    def meta(self, key: str) -> Any:
        """A JSON value stored under ``key`` (None if unset)."""
        rows = self._q("SELECT value FROM meta WHERE key=?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str))
            )

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
        kind: ExperimentKind = ExperimentKind.CANDIDATE,
    ) -> int:
        """Write the experiment's row as ``running`` before anything runs (so a crash of the
        driver leaves a row that resume turns into ``interrupted``)."""
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO experiments (tag, status, description, hypothesis, proposer,"
                " parent_commit, meta, tokens, cost_usd, started_at, propose_s, kind)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
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
                    kind.value,
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
        for key in ("status", "cause", "kind"):
            if isinstance(fields.get(key), enum.Enum):
                fields[key] = fields[key].value
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._tx():
            self._db.execute(
                f"UPDATE experiments SET {cols} WHERE id=?", (*fields.values(), experiment_id)
            )

    def finish(
        self,
        experiment_id: int,
        status: Status,
        reason: str = "",
        cause: Cause | None = None,
        **fields: Any,
    ) -> None:
        assert status in FINAL_STATUSES, status
        self.update(
            experiment_id,
            status=status,
            reason=reason,
            cause=cause,
            finished_at=time.time(),
            **fields,
        )

    def history(self, tag: str) -> list[ExperimentRecord]:
        """Every experiment of ``tag``, oldest first."""
        rows = self._q(f"SELECT {_RECORD_COLUMNS} FROM experiments WHERE tag=? ORDER BY id", (tag,))
        return [_record(r) for r in rows]

    def records(self, tag: str) -> list[ExperimentRecord]:
        """The same as ``history`` (the name plug-ins have used since the first release)."""
        return self.history(tag)

    def record(self, experiment_id: int) -> ExperimentRecord:
        rows = self._q(f"SELECT {_RECORD_COLUMNS} FROM experiments WHERE id=?", (experiment_id,))
        if not rows:
            raise KeyError(f"no experiment {experiment_id} in {self.path}")
        return _record(rows[0])

    def diff(self, experiment_id: int) -> str:
        """The diff an experiment applied ('' for none)."""
        rows = self._q("SELECT diff FROM experiments WHERE id=?", (experiment_id,))
        return str(rows[0]["diff"]) if rows else ""

    def find_measured(self, tag: str, content_hash: str) -> ExperimentRecord | None:
        """An earlier experiment of this tag with the same content that got a value."""
        rows = self._q(
            f"SELECT {_RECORD_COLUMNS} FROM experiments"
            " WHERE tag=? AND content_hash=? AND value IS NOT NULL"
            " ORDER BY id DESC LIMIT 1",
            (tag, content_hash),
        )
        return _record(rows[0]) if rows else None

    def interrupt_running(self, tag: str, reason: str) -> list[int]:
        """Turn rows a dead driver left ``running`` into ``interrupted``."""
        rows = self._q(
            "SELECT id FROM experiments WHERE tag=? AND status=?", (tag, Status.RUNNING.value)
        )
        ids = [int(r["id"]) for r in rows]
        for i in ids:
            self.finish(i, Status.INTERRUPTED, reason, Cause.INTERRUPTED)
        return ids

    def count_candidates(self, tag: str) -> int:
        """Experiments of this tag other than the baseline."""
        rows = self._q(
            "SELECT COUNT(*) FROM experiments WHERE tag=? AND kind != ?",
            (tag, ExperimentKind.BASELINE.value),
        )
        return int(rows[0][0])

    def counts(self, tag: str) -> dict[str, int]:
        out = {s.value: 0 for s in FINAL_STATUSES}
        for r in self._q(
            "SELECT status, COUNT(*) AS n FROM experiments WHERE tag=? GROUP BY status", (tag,)
        ):
            if r["status"] in out:
                out[r["status"]] = r["n"]
        return out

    def spend(self, tag: str) -> tuple[int, float]:
        """Tokens and USD of ``tag``: the proposer's and the evaluator's together."""
        r = self._q(
            "SELECT COALESCE(SUM(tokens + eval_tokens),0) AS t,"
            " COALESCE(SUM(cost_usd + eval_cost_usd),0) AS c FROM experiments WHERE tag=?",
            (tag,),
        )[0]
        loose = self.meta(_eval_spend_key(tag)) or [0, 0.0]
        return int(r["t"]) + int(loose[0]), float(r["c"]) + float(loose[1])

    def add_eval_spend(
        self, tag: str, experiment_id: int | None, tokens: int, cost_usd: float
    ) -> None:
        """Add what the evaluator spent on one run to its experiment (a calibration run,
        which has none, to the tag's own tally)."""
        if not tokens and not cost_usd:
            return
        if experiment_id is not None:
            with self._tx():
                self._db.execute(
                    "UPDATE experiments SET eval_tokens = eval_tokens + ?,"
                    " eval_cost_usd = eval_cost_usd + ? WHERE id=?",
                    (tokens, cost_usd, experiment_id),
                )
            return
        loose = self.meta(_eval_spend_key(tag)) or [0, 0.0]
        self.set_meta(_eval_spend_key(tag), [int(loose[0]) + tokens, float(loose[1]) + cost_usd])

    # -- runs --------------------------------------------------------------------------------
    def add_run(
        self,
        tag: str,
        experiment_id: int | None,
        kind: RunKind | str,
        commit: str,
        run: RunResult,
        measurement: Measurement | None,
        status: Status | None = None,
        reason: str = "",
    ) -> None:
        kind = str(kind)
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
        rows = self._q(
            "SELECT value FROM runs WHERE tag=? AND commit_sha=? AND value IS NOT NULL ORDER BY id",
            (tag, commit),
        )
        return [float(r["value"]) for r in rows]

    def values_by_commit(self, tag: str) -> dict[str, list[float]]:
        """Measured values of every run of this tag, grouped by commit, oldest first."""
        out: dict[str, list[float]] = {}
        for r in self._q(
            "SELECT commit_sha, value FROM runs WHERE tag=? AND value IS NOT NULL ORDER BY id",
            (tag,),
        ):
            out.setdefault(r["commit_sha"], []).append(float(r["value"]))
        return out

    def rename_commit(self, tag: str, experiment_id: int, old: str, new: str) -> None:
        """An experiment's commit, reworded (same tree): its row and runs now name ``new``."""
        with self._tx():
            self._db.execute(
                "UPDATE experiments SET commit_sha=? WHERE id=? AND commit_sha=?",
                (new, experiment_id, old),
            )
            self._db.execute(
                "UPDATE runs SET commit_sha=? WHERE tag=? AND commit_sha=?", (new, tag, old)
            )

    def run_count(self, tag: str, commit: str | None = None) -> int:
        """Runs of this tag (of ``commit`` only, when given), failed ones included."""
        if commit is None:
            rows = self._q("SELECT COUNT(*) FROM runs WHERE tag=?", (tag,))
        else:
            rows = self._q("SELECT COUNT(*) FROM runs WHERE tag=? AND commit_sha=?", (tag, commit))
        return int(rows[0][0])

    def runs(self, tag: str, experiment_id: int | None = None) -> list[RunRecord]:
        """Every sandbox run of ``tag`` (of one experiment, when given), oldest first."""
        if experiment_id is None:
            rows = self._q("SELECT * FROM runs WHERE tag=? ORDER BY id", (tag,))
        else:
            rows = self._q(
                "SELECT * FROM runs WHERE tag=? AND experiment_id=? ORDER BY id",
                (tag, experiment_id),
            )
        return [_run_record(r) for r in rows]

    # -- confirm (re-measures on fresh seeds; apart from the runs the loop decided on) ----
    def max_seed(self, tag: str) -> int:
        """The highest seed any run of ``tag`` used, confirm runs included (-1 for none)."""
        rows = self._q(
            "SELECT MAX(s) FROM (SELECT MAX(seed) AS s FROM runs WHERE tag=?"
            " UNION ALL SELECT MAX(seed) AS s FROM confirm_runs WHERE tag=?)",
            (tag, tag),
        )
        value = rows[0][0]
        return -1 if value is None else int(value)

    def new_confirmation(self, tag: str, baseline_commit: str, best_commit: str) -> int:
        """A confirmation's row, written before its runs (its result filled in at the end)."""
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO confirmations (tag, created_at, baseline_commit, best_commit,"
                " result) VALUES (?,?,?,?,?)",
                (tag, time.time(), baseline_commit, best_commit, "{}"),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def add_confirm_run(
        self,
        tag: str,
        confirmation: int,
        arm: str,
        commit: str,
        run: RunResult,
        measurement: Measurement | None,
        status: str,
        reason: str = "",
    ) -> None:
        """One run of a confirmation (``arm``: "baseline" or "best"). Kept out of ``runs``:
        the loop's figures and noise estimate never mix with the replication's."""
        with self._tx():
            self._db.execute(
                "INSERT INTO confirm_runs (tag, confirmation, arm, commit_sha, seed, status,"
                " reason, wall_s, value, secondary, holdout, log_path, started_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    tag,
                    confirmation,
                    arm,
                    commit,
                    run.seed,
                    status,
                    reason or run.reason,
                    run.wall_s,
                    measurement.primary if measurement else None,
                    json.dumps(dict(measurement.secondary)) if measurement else "{}",
                    json.dumps(dict(measurement.holdout)) if measurement else "{}",
                    str(run.log_path),
                    time.time() - run.wall_s,
                ),
            )

    def finish_confirmation(self, confirmation: int, result: Mapping[str, Any]) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE confirmations SET result=? WHERE id=?",
                (json.dumps(dict(result), default=str), confirmation),
            )

    def confirmations(self, tag: str) -> list[Confirmation]:
        """Every finished confirmation of ``tag``, oldest first."""
        try:
            rows = self._q(
                "SELECT * FROM confirmations WHERE tag=? AND result != '{}' ORDER BY id", (tag,)
            )
        except sqlite3.OperationalError:  # a read-only view of a ledger from before confirm
            return []
        return [_confirmation(r) for r in rows]

    def latest_confirmation(self, tag: str) -> Confirmation | None:
        found = self.confirmations(tag)
        return found[-1] if found else None

    # -- results.tsv -------------------------------------------------------------------------
    def write_results_tsv(self, path: Path, metric: str) -> None:
        """Regenerate ``results.tsv`` (all tags, oldest first) via a temp file + rename."""
        header = ["commit", metric, "memory_gb", "status", "description", "id", "tag", "reason"]
        lines = ["\t".join(_tsv_cell(h) for h in header)]
        for r in self._q(
            "SELECT commit_sha, parent_commit, value, memory_gb, status, description, id, tag,"
            " reason FROM experiments WHERE status != ? ORDER BY id",
            (Status.RUNNING.value,),
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
        # A temp file of a fresh name: one planted under a fixed name is never written through.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)


def _eval_spend_key(tag: str) -> str:
    """The meta key of the evaluator's spend on runs outside any experiment (calibration)."""
    return f"eval_spend:{tag}"
