"""Records that cross a plug-in boundary: frozen dataclasses and one Status enum."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


class Status(enum.StrEnum):
    """The outcome of one experiment (and of one sandbox run, where it applies)."""

    KEEP = "keep"
    DISCARD = "discard"
    CRASH = "crash"
    TIMEOUT = "timeout"
    OOM = "oom"
    INVALID = "invalid"
    GATE_FAILED = "gate_failed"
    INTERRUPTED = "interrupted"
    # Internal: a ledger row whose experiment is still in progress. Never a final status.
    RUNNING = "running"

    def __str__(self) -> str:
        return self.value


FINAL_STATUSES: tuple[Status, ...] = tuple(s for s in Status if s is not Status.RUNNING)


class Cause(enum.StrEnum):
    """Why an experiment failed or was cut short: stored with its row, read by budgets and
    failure streaks (never the text of a reason)."""

    PROPOSER_BUG = "proposer_bug"  # the proposer raised something other than ProposalError
    NO_PROPOSAL = "no_proposal"  # a ProposalError: no candidate this time (endpoint, format)
    BUDGET = "budget"  # the proposer stopped before a spend budget would be passed
    SCOPE = "scope"  # an edit outside the editable files, or one that cannot be applied
    FIXED_FILES = "fixed_files"  # the worktree's fixed files differ from the baseline's
    FILES_CHANGED = "files_changed"  # the run changed committed files
    RUN_FAILED = "run_failed"  # the command crashed, timed out or ran out of memory
    NO_METRIC = "no_metric"  # the run finished but the objective found no value
    OBJECTIVE_ERROR = "objective_error"  # the objective (or its gate) raised: a harness bug
    REPEAT_FAILED = "repeat_failed"  # a repeat run asked for by the policy failed
    GATE = "gate"  # the gate refused a keep
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM, or a driver that died mid-experiment

    def __str__(self) -> str:
        return self.value


# Causes that are the harness's or the proposer's fault, not the candidate's: a few in a row
# end the run (more experiments will not fix them).
HARNESS_CAUSES = frozenset({Cause.PROPOSER_BUG, Cause.OBJECTIVE_ERROR})


class ExperimentKind(enum.StrEnum):
    """What an experiment row is: the unmodified baseline, or a proposed candidate."""

    BASELINE = "baseline"
    CANDIDATE = "candidate"
    IMPORTED = "imported"  # a row of an upstream results.tsv (`init --from-upstream`)

    def __str__(self) -> str:
        return self.value


class RunKind(enum.StrEnum):
    """Why a sandbox run was made."""

    BASELINE = "baseline"  # the unmodified target, first run of a tag
    CANDIDATE = "candidate"  # a candidate's first run
    REPEAT = "re-measure"  # a further run of the candidate, asked for by the policy
    INCUMBENT = "incumbent"  # a run of the incumbent beside the candidate's (interleaved)
    CALIBRATION = "calibration"  # a run of the incumbent to estimate noise

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Edit:
    """One change to one file, with ``path`` relative to the domain folder.

    Exactly one form: ``content`` (write or create the whole file), ``search`` + ``replace``
    (the search text must match exactly once), or ``delete=True``.
    """

    path: str
    content: str | None = None
    search: str | None = None
    replace: str | None = None
    delete: bool = False

    def __post_init__(self) -> None:
        forms = [self.content is not None, self.search is not None, self.delete]
        if sum(forms) != 1:
            raise ValueError(
                f"edit of {self.path!r} must have exactly one of content, search/replace or delete"
            )
        if self.search is not None and self.replace is None:
            raise ValueError(f"edit of {self.path!r} has 'search' but no 'replace'")
        if not self.path:
            raise ValueError("edit has an empty path")


@dataclass(frozen=True)
class Candidate:
    """What a proposer returns: edits plus a one-line description and a hypothesis.

    ``meta`` is proposer-private state stored in the ledger (e.g. the script line or the
    Optuna trial number) and handed back on resume. ``tokens``/``cost_usd`` are what
    producing this candidate cost.
    """

    description: str
    edits: tuple[Edit, ...] = ()
    hypothesis: str = ""
    meta: Mapping[str, object] = field(default_factory=dict)
    tokens: int = 0
    cost_usd: float = 0.0

    def __post_init__(self) -> None:
        if not self.description.strip():
            raise ValueError("a candidate needs a one-line description")
        object.__setattr__(self, "description", " ".join(self.description.split()))
        object.__setattr__(self, "edits", tuple(self.edits))


@dataclass(frozen=True)
class RunResult:
    """One finished sandbox run of a candidate: the command, then the fixed ``eval_command``.

    ``failure`` is None when every command exited 0 within its limits, else CRASH, TIMEOUT,
    OOM or INTERRUPTED, with ``reason`` saying why. ``workdir`` is the domain folder inside
    the candidate's worktree (files the run wrote are there until the run is cleaned up).
    Objectives read ``trusted_output()``: the eval log when there is an eval command,
    else the command's own log.
    """

    workdir: Path
    log_path: Path
    exit_code: int | None
    wall_s: float
    peak_memory_mb: float
    seed: int
    failure: Status | None = None
    reason: str = ""
    eval_log_path: Path | None = None
    eval_exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def log_text(self) -> str:
        return _read_text(self.log_path)

    def trusted_output(self) -> str:
        if self.eval_log_path is not None:
            return _read_text(self.eval_log_path)
        return self.log_text()

    def log_tail(self, max_chars: int = 4000) -> str:
        text = self.log_text()
        if self.eval_log_path is not None:
            text += "\n--- eval ---\n" + _read_text(self.eval_log_path)
        return text[-max_chars:]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class Measurement:
    """An objective's reading of one run.

    ``primary`` decides; ``secondary`` is recorded and shown; ``holdout`` is recorded but
    never used to decide and never shown to a proposer.
    """

    primary: float
    secondary: Mapping[str, float] = field(default_factory=dict)
    holdout: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.primary, (int, float)) or isinstance(self.primary, bool):
            raise TypeError(f"Measurement.primary must be a number, got {self.primary!r}")
        if not math.isfinite(self.primary):
            raise ValueError(f"Measurement.primary must be finite, got {self.primary!r}")
        object.__setattr__(self, "primary", float(self.primary))


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    """One past experiment as a proposer may see it (no holdout values, by construction)."""

    id: int
    status: Status
    description: str
    value: float | None
    delta: float | None
    reason: str = ""
    hypothesis: str = ""
    # Secondary metrics (never holdout ones), e.g. in-sample figures or memory.
    secondary: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """Everything a proposer is given for one proposal."""

    program: str
    files: Mapping[str, str]
    history: tuple[HistoryEntry, ...]
    metric: str
    direction: str
    best_value: float | None
    baseline_value: float | None
    experiment_id: int
    older_summary: str = ""
    last_failure: str | None = None
    editable_globs: tuple[str, ...] = ()
    # The objective's feedback (``Objective.feedback``) on the incumbent's and the last
    # experiment's runs: e.g. the evaluation's failing criteria. Untrusted data.
    feedback: str = ""


@dataclass(frozen=True)
class ExperimentRecord:
    """A ledger row, as handed back to plug-ins (e.g. ``Proposer.restore`` on resume).
    ``cause`` says why it failed (None for a measured keep or discard)."""

    id: int
    tag: str
    status: Status
    reason: str
    description: str
    hypothesis: str
    proposer: str
    parent_commit: str
    commit: str | None
    value: float | None
    secondary: Mapping[str, float]
    holdout: Mapping[str, float]
    meta: Mapping[str, object]
    tokens: int
    cost_usd: float
    memory_gb: float | None
    content_hash: str | None = None
    kind: ExperimentKind = ExperimentKind.CANDIDATE
    cause: Cause | None = None
    n_runs: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    log_path: str | None = None
    # What the fixed evaluator spent on this experiment's runs (model calls of a prompt eval).
    eval_tokens: int = 0
    eval_cost_usd: float = 0.0


@dataclass(frozen=True)
class RunRecord:
    """One sandbox run as the ledger holds it (``Ledger.runs``)."""

    id: int
    experiment_id: int | None
    tag: str
    kind: str
    commit: str
    seed: int
    status: str  # "ok", or the failure's Status value
    reason: str
    exit_code: int | None
    wall_s: float
    peak_memory_mb: float
    value: float | None
    secondary: Mapping[str, float]
    holdout: Mapping[str, float]
    log_path: str | None
    started_at: float


@dataclass(frozen=True)
class TagInfo:
    """One research run (a tag) as the ledger holds it (``Ledger.tag_info``)."""

    tag: str
    branch: str
    base_commit: str
    created_at: float
    preset: str | None
    metric: str
    direction: str
    config: Mapping[str, object]
    versions: Mapping[str, str]
    state: str
    noise_sigma: float | None


EventKind = Literal["experiment", "calibration", "message", "run"]
# What a "run" event's ``run_kind`` says: a RunKind's value, or "gate" (the objective's gate,
# run in the driver before a keep).
GATE_RUN = "gate"


@dataclass(frozen=True)
class Event:
    """Progress reported to ``on_event``: a finished experiment, a calibration, a message, or
    a run about to start (``kind="run"``: ``experiment_id`` (None for calibration),
    ``run_kind`` (a RunKind value or "gate"), and ``repeat`` of at most ``repeats``: the
    policy may decide before the last)."""

    kind: EventKind
    message: str = ""
    record: ExperimentRecord | None = None
    best_value: float | None = None
    elapsed_s: float = 0.0
    experiment_id: int | None = None
    run_kind: str = ""
    repeat: int = 0
    repeats: int = 0


@dataclass(frozen=True)
class RunSummary:
    """What ``Loop.run`` returns."""

    tag: str
    branch: str
    best_commit: str | None
    best_value: float | None
    baseline_value: float | None
    counts: Mapping[str, int]
    experiments: int
    stopped_because: str
    interrupted: bool = False
    # How many runs of the baseline's code ``baseline_value`` is the mean of.
    baseline_runs: int = 0
