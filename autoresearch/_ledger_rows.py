"""The ledger's SQLite schema, its migrations, and the mapping of rows to the typed
records plug-ins and reports read (``ExperimentRecord``, ``RunRecord``, ``TagInfo``)."""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from autoresearch._types import (
    Cause,
    ExperimentKind,
    ExperimentRecord,
    RunKind,
    RunRecord,
    Status,
    TagInfo,
)

SCHEMA_VERSION = 3  # 3: eval spend columns, confirmations
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
    diff TEXT NOT NULL DEFAULT '', log_path TEXT, n_runs INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'candidate', cause TEXT
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
CREATE TABLE IF NOT EXISTS confirm_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT NOT NULL REFERENCES tags(tag),
    confirmation INTEGER NOT NULL, arm TEXT NOT NULL, commit_sha TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    wall_s REAL NOT NULL, value REAL, secondary TEXT NOT NULL DEFAULT '{}',
    holdout TEXT NOT NULL DEFAULT '{}', log_path TEXT, started_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS confirmations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT NOT NULL REFERENCES tags(tag),
    created_at REAL NOT NULL, baseline_commit TEXT NOT NULL, best_commit TEXT NOT NULL,
    result TEXT NOT NULL
);
"""
RUN_KINDS = tuple(k.value for k in RunKind)
# The experiment columns a record holds: every one but the diff (often the largest, and read
# only by ``Ledger.diff``), so reading records stays cheap however large the diffs grow.
_RECORD_COLUMNS = (
    "id, tag, status, reason, description, hypothesis, proposer, parent_commit, commit_sha,"
    " value, secondary, holdout, meta, tokens, cost_usd, memory_gb, content_hash, kind, cause,"
    " n_runs, started_at, finished_at, log_path, eval_tokens, eval_cost_usd"
)
# Columns added since schema 1: (table, column, definition). Old ledgers get them on open.
_MIGRATIONS = (
    ("experiments", "kind", "TEXT NOT NULL DEFAULT 'candidate'"),
    ("experiments", "cause", "TEXT"),
    # What the fixed evaluator spent (a prompt eval's model calls), beside the proposer's.
    ("experiments", "eval_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("experiments", "eval_cost_usd", "REAL NOT NULL DEFAULT 0"),
)


def _tsv_cell(text: str) -> str:
    return " ".join(str(text).split())


_E = TypeVar("_E", bound=enum.Enum)


def _member(cls: type[_E], value: Any) -> _E:
    # The members' own map gives what ``cls(value)`` gives, without the slow call: every
    # context rebuilds the whole history from rows.
    member = cls._value2member_map_.get(value)
    return cast(_E, member) if member is not None else cls(value)


def _json(text: str) -> Any:
    return {} if text == "{}" else json.loads(text)


def _record(r: sqlite3.Row) -> ExperimentRecord:
    return ExperimentRecord(
        id=r["id"],
        tag=r["tag"],
        status=_member(Status, r["status"]),
        reason=r["reason"],
        description=r["description"],
        hypothesis=r["hypothesis"],
        proposer=r["proposer"],
        parent_commit=r["parent_commit"],
        commit=r["commit_sha"],
        value=r["value"],
        secondary=_json(r["secondary"]),
        holdout=_json(r["holdout"]),
        meta=_json(r["meta"]),
        tokens=r["tokens"],
        cost_usd=r["cost_usd"],
        memory_gb=r["memory_gb"],
        content_hash=r["content_hash"],
        kind=_member(ExperimentKind, r["kind"]),
        cause=_member(Cause, r["cause"]) if r["cause"] else None,
        n_runs=r["n_runs"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        log_path=r["log_path"],
        eval_tokens=r["eval_tokens"],
        eval_cost_usd=r["eval_cost_usd"],
    )


def _run_record(r: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=r["id"],
        experiment_id=r["experiment_id"],
        tag=r["tag"],
        kind=r["kind"],
        commit=r["commit_sha"],
        seed=r["seed"],
        status=r["status"],
        reason=r["reason"],
        exit_code=r["exit_code"],
        wall_s=r["wall_s"],
        peak_memory_mb=r["peak_memory_mb"],
        value=r["value"],
        secondary=json.loads(r["secondary"]),
        holdout=json.loads(r["holdout"]),
        log_path=r["log_path"],
        started_at=r["started_at"],
    )


@dataclass(frozen=True)
class Confirmation:
    """A recorded ``confirm``: baseline and best re-measured on fresh seeds (``result``
    holds the figures ``confirm --json`` prints)."""

    id: int
    tag: str
    created_at: float
    baseline_commit: str
    best_commit: str
    result: Mapping[str, Any]


def _confirmation(r: sqlite3.Row) -> Confirmation:
    return Confirmation(
        id=r["id"],
        tag=r["tag"],
        created_at=r["created_at"],
        baseline_commit=r["baseline_commit"],
        best_commit=r["best_commit"],
        result=json.loads(r["result"]),
    )


def _tag_info(r: sqlite3.Row) -> TagInfo:
    return TagInfo(
        tag=r["tag"],
        branch=r["branch"],
        base_commit=r["base_commit"],
        created_at=r["created_at"],
        preset=r["preset"],
        metric=r["metric"],
        direction=r["direction"],
        config=json.loads(r["config_json"]),
        versions=json.loads(r["versions_json"]),
        state=r["state"],
        noise_sigma=r["noise_sigma"],
    )
