"""Measuring commits: sandbox runs recorded in the ledger, the acceptance policy's extra runs,
and noise calibration. The loop decides what to measure; this module knows how."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch._config import ResearchConfig
from autoresearch._data import DataGuard, ensure_data, run_caches
from autoresearch._data_candidates import check_files, eval_secret_values
from autoresearch._errors import Interrupted, MetricMissing
from autoresearch._layout import RunFiles, reserve_run_files
from autoresearch._objective import Objective, eval_spend, feedback_key
from autoresearch._scope import glob_match
from autoresearch._session import Session, marker_prefix
from autoresearch._types import Cause, Event, Measurement, RunKind, RunResult, Status
from autoresearch._workspace import changed_files
from autoresearch.acceptance._base import Acceptance, Evidence, Verdict
from autoresearch.execution._sandbox import RunSpec, Sandbox

# Chars of a failed run's log handed to the proposer as the last failure.
FAILURE_TAIL_CHARS = 4000
# Characters of an objective's feedback on one run kept for the proposer.
MAX_FEEDBACK_CHARS = 6000

log = logging.getLogger("autoresearch")
# The most incumbent runs one experiment may take, per run its candidate may take (the
# noise-aware policies ask for at most a few per candidate run).
INCUMBENT_RUNS_PER_CANDIDATE_RUN = 4


@dataclass(frozen=True)
class RunOutcome:
    """One measured run: its result and measurement, or why it failed (``failure`` and
    ``cause``), with the log tail a proposer is shown (``failure_note``)."""

    run: RunResult | None = None
    measurement: Measurement | None = None
    failure: Status | None = None
    cause: Cause | None = None
    reason: str = ""
    failure_note: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and self.measurement is not None


@dataclass
class Judgement:
    """What measuring a candidate came to: the verdict (or a failure), and every run of the
    candidate (first and repeats) with its measurement."""

    verdict: Verdict | None
    reason: str
    runs: list[tuple[RunResult, Measurement]] = field(default_factory=list)
    failure: Status | None = None
    cause: Cause | None = None
    failure_note: str | None = None


class Measurer:
    """Runs commits of one session in the sandbox and records every run."""

    def __init__(
        self,
        session: Session,
        config: ResearchConfig,
        objective: Objective,
        sandbox: Sandbox,
        acceptance: Acceptance,
        domain_dir: Path,
        gpu_ids: str | None = None,
        deny_env: tuple[str | None, ...] = (),
        emit: Callable[[Event], None] | None = None,
    ) -> None:
        self.session = session
        self.emit = emit or (lambda e: None)
        # Variables removed from every run on top of the config's env_deny.
        self.deny_env = tuple(name for name in deny_env if name)
        self.config = config
        self.objective = objective
        self.sandbox = sandbox
        self.acceptance = acceptance
        self.domain_dir = domain_dir
        self.gpu_ids = gpu_ids
        self._secrets: dict[str, str] | None = None
        # The fixed files' hashes of the first worktree this tag measured, kept in the ledger:
        # a resumed driver compares with them, not with whatever its first worktree holds.
        self._fixed_key = f"fixed_hashes:{session.tag}"
        self._fixed_hashes: dict[str, str] | None = session.ledger.meta(self._fixed_key)
        self._used: set[Path] = set()
        # The session's prepared data (prepare_command): built and hash-checked at first use.
        self._data: DataGuard | None = None

    def measure(
        self,
        exp: int | None,
        kind: RunKind,
        commit: str,
        worktree: Path,
        folder: Path,
        before: dict[str, str],
        step: tuple[int, int] = (1, 1),
    ) -> RunOutcome:
        """One sandbox run of ``commit`` in ``worktree``, recorded in the runs table.
        ``step``: this run is the k-th of at most n of its kind (told to ``emit``)."""
        s = self.session
        # Every run of a commit gets a seed of its own, failed runs included.
        seed = s.ledger.run_count(s.tag, commit)
        domain = s.workspace.worktree_domain(worktree)
        if worktree in self._used:
            # A repeat starts from the committed files alone: outputs of the run before it
            # (a metrics file, a checkpoint) must not stand in for its own.
            s.workspace.reset_worktree(worktree)
        self._used.add(worktree)
        # Candidate commits only ever change editable files, so every worktree of the session
        # must hold the same fixed files as the first one measured.
        fixed_now = {k: v for k, v in before.items() if k not in self._editable_in(before)}
        if self._fixed_hashes is None:
            self._fixed_hashes = fixed_now
            s.ledger.set_meta(self._fixed_key, fixed_now)
        if fixed_now != self._fixed_hashes:
            bad = changed_files(self._fixed_hashes, fixed_now)
            why = f"fixed files differ from the baseline: {', '.join(bad)}"
            return RunOutcome(failure=Status.INVALID, cause=Cause.FIXED_FILES, reason=why)
        stem = "incumbent-run" if kind is RunKind.INCUMBENT else "run"
        files = reserve_run_files(folder, stem)
        # The fixed files' bytes, read before the candidate's command runs: the evaluator runs
        # only if they are the same after it, and imports its modules from a copy of these.
        pristine = {rel: (domain / rel).read_bytes() for rel in fixed_now}
        data = self._prepared_data(pristine)
        if data is not None:
            data.check("before the run", rehash=False)
        self.emit(run_event(exp, kind.value, step, f"seed {seed}, log {files.log}"))
        run = self.sandbox.run(self._spec(domain, files, seed, pristine))
        # The evaluator's own spend, read from its output only, whatever became of the run.
        s.ledger.add_eval_spend(s.tag, exp, *eval_spend(run))
        if data is not None:  # never score a run on data that changed (DataError stops it)
            data.check("after the run, before it was scored")
        s.workspace.refresh_git_env(worktree)  # before a git call runs what it planted
        after = s.workspace.snapshot(domain)
        # Files the run changed or deleted; new files it wrote (outputs) do not matter.
        changed = [k for k in before if before[k] != after.get(k)]
        if run.failure is None and changed:
            s.ledger.add_run(s.tag, exp, kind, commit, run, None, Status.INVALID)
            why = f"files changed during the run: {', '.join(changed)}"
            return RunOutcome(run, failure=Status.INVALID, cause=Cause.FILES_CHANGED, reason=why)
        if run.failure is not None:
            s.ledger.add_run(s.tag, exp, kind, commit, run, None)
            note = f"{run.failure.value}: {run.reason}\n{run.log_tail(FAILURE_TAIL_CHARS)}"
            cause = Cause.INTERRUPTED if run.failure is Status.INTERRUPTED else Cause.RUN_FAILED
            return RunOutcome(run, None, run.failure, cause, run.reason, note)
        try:
            m = self.objective.measure(run)
        except MetricMissing as e:
            s.ledger.add_run(s.tag, exp, kind, commit, run, None, Status.CRASH, str(e))
            note = f"crash: {e}\n{run.log_tail(FAILURE_TAIL_CHARS)}"
            return RunOutcome(run, None, Status.CRASH, Cause.NO_METRIC, f"no metric: {e}", note)
        except Exception as e:  # a bug in an objective fails this run, not the whole loop
            why = f"objective error: {type(e).__name__}: {e}"
            s.ledger.add_run(s.tag, exp, kind, commit, run, None, Status.CRASH, why)
            return RunOutcome(run, None, Status.CRASH, Cause.OBJECTIVE_ERROR, why, f"crash: {why}")
        s.ledger.add_run(s.tag, exp, kind, commit, run, m)
        if exp is not None and kind in (RunKind.BASELINE, RunKind.CANDIDATE, RunKind.REPEAT):
            self._keep_feedback(exp, run)
        write_json(
            files.measurement,
            {
                "kind": kind.value,
                "commit": commit,
                "primary": m.primary,
                "secondary": dict(m.secondary),
                "holdout": dict(m.holdout),
                "seed": run.seed,
                "wall_s": run.wall_s,
                "peak_memory_mb": run.peak_memory_mb,
            },
        )
        return RunOutcome(run, m)

    def _keep_feedback(self, exp: int, run: RunResult) -> None:
        """The objective's feedback on this run, for the proposer (a failing ``feedback``
        costs only the feedback)."""
        try:
            text = self.objective.feedback(run)
        except Exception as e:
            log.warning(
                "objective feedback failed (%s: %s); the proposer gets none", type(e).__name__, e
            )
            return
        if not isinstance(text, str) or not text.strip():
            return
        if len(text) > MAX_FEEDBACK_CHARS:
            text = text[: MAX_FEEDBACK_CHARS - 1] + "…"
        self.session.ledger.set_meta(feedback_key(self.session.tag, exp), text)

    def _prepared_data(self, fixed_files: dict[str, bytes]) -> DataGuard | None:
        """The session's data: prepared (from the fixed files' bytes) if its folder is missing,
        and verified by hash, the first time a run needs it; None without prepare_command."""
        s = self.session
        if self._data is None and self.config.prepare_command is not None:
            log = s.workspace.layout.tag_dir(s.tag) / "prepare.log"
            self._data = ensure_data(
                self.config,
                self.domain_dir,
                self.sandbox,
                s.ledger,
                fixed_files,
                marker_prefix(self.domain_dir),
                log,
            )
        return self._data

    def _eval_secrets(self) -> dict[str, str]:
        """Data candidates' keys for eval_command (never command); the editable files are
        checked to be plain data first, once per run of the loop."""
        c = self.config
        if not c.eval_secrets:
            return {}
        if self._secrets is None:
            check_files(self.domain_dir, c.editable)
            self._secrets = eval_secret_values(c.eval_secrets)
        return self._secrets

    def _spec(
        self, domain: Path, files: RunFiles, seed: int, fixed_files: dict[str, bytes]
    ) -> RunSpec:
        c = self.config
        data = self._data
        cache, eval_cache = run_caches(c.name or self.domain_dir.name)
        if not c.shared_candidate_cache:
            # Runs are one at a time: one folder, emptied before each. A cache that outlived
            # the run would let a candidate train on in its repeats, or pass a result on.
            cache = cache.with_name("candidate-run")
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir(parents=True, exist_ok=True)
        return RunSpec(
            workdir=domain,
            command=c.command,
            log_path=files.log,
            time_budget_s=c.time_budget_s,
            timeout_s=c.hard_timeout_s,
            after_signal_s=c.time_budget_s + c.run_grace_s,
            seed=seed,
            eval_command=c.eval_command,
            eval_log_path=files.eval_log if c.eval_command else None,
            eval_timeout_s=c.eval_timeout_s or c.hard_timeout_s,
            memory_limit_mb=c.memory_limit_mb or default_memory_cap_mb(),
            log_limit_mb=c.log_limit_mb,
            network=c.network,
            env={**c.env, **(data.env if data else {})},
            env_allow=tuple(c.env_allow),
            env_deny=(*c.env_deny, *self.deny_env),
            marker_prefix=marker_prefix(self.domain_dir),
            gpu_ids=self.gpu_ids,
            fixed_files=fixed_files,
            data_dirs=(*c.readable_paths(), *((data.dirs.shared,) if data else ())),
            eval_data_dirs=(data.dirs.eval,) if data else (),
            eval_env={**(data.eval_env if data else {}), **self._eval_secrets()},
            cache_dir=cache,
            eval_cache_dir=eval_cache,
            pids_limit=c.pids_limit,
            disk_limit_mb=c.disk_limit_mb,
        )

    def decide(
        self,
        exp: int,
        commit: str,
        worktree: Path,
        folder: Path,
        before: dict[str, str],
        first: RunOutcome,
        parent: str,
    ) -> Judgement:
        """Ask the acceptance policy; run what it asks for (interleaved) until it decides."""
        s = self.session
        assert first.run is not None and first.measurement is not None
        runs = [(first.run, first.measurement)]
        values = [first.measurement.primary]
        # The incumbent's runs of this experiment, in order (Evidence.paired): the k-th ran
        # beside the candidate's k-th, right after or right before it, as the policy asked
        # (a failed one is NaN, so the pairs stay aligned).
        paired: list[float] = []
        inc_tree: Path | None = None
        # Incumbent runs one experiment may ask for: a policy that only ever asks for the
        # incumbent must not keep the experiment going forever.
        incumbent_cap = INCUMBENT_RUNS_PER_CANDIDATE_RUN * self.acceptance.max_runs_per_candidate
        incumbent_runs = 0
        try:
            while True:
                evidence = Evidence(
                    tuple(values),
                    tuple(self.incumbent_values()),
                    self.config.objective.direction,
                    self.noise_sigma(),
                    tuple(paired),
                )
                decision = self.acceptance.decide(evidence)
                if decision.verdict is not Verdict.MEASURE:
                    return Judgement(decision.verdict, decision.reason, runs)
                at_most = self.acceptance.max_runs_per_candidate
                if decision.more_candidate > 0 and len(values) >= at_most:
                    why = f"undecided after {len(values)} runs: {decision.reason}"
                    return Judgement(Verdict.DISCARD, why, runs)
                if incumbent_runs + decision.more_incumbent > incumbent_cap:
                    why = f"undecided after {incumbent_runs} incumbent runs: {decision.reason}"
                    return Judgement(Verdict.DISCARD, why, runs)
                for i in range(max(decision.more_candidate, decision.more_incumbent)):
                    if i < decision.more_incumbent:
                        incumbent_runs += 1
                        if inc_tree is None:
                            inc_tree = s.workspace.add_worktree(f"{s.tag}-{exp}-incumbent", parent)
                        inc_before = s.workspace.snapshot(s.workspace.worktree_domain(inc_tree))
                        inc = self.measure(
                            exp,
                            RunKind.INCUMBENT,
                            parent,
                            inc_tree,
                            folder,
                            inc_before,
                            (incumbent_runs, incumbent_cap),
                        )
                        if inc.failure is Status.INTERRUPTED:
                            raise Interrupted
                        got = inc.measurement if inc.ok else None
                        paired.append(got.primary if got is not None else math.nan)
                    if i < decision.more_candidate:
                        step = (len(values) + 1, self.acceptance.max_runs_per_candidate)
                        more = self.measure(
                            exp, RunKind.REPEAT, commit, worktree, folder, before, step
                        )
                        if more.failure is Status.INTERRUPTED:
                            raise Interrupted
                        if not more.ok:
                            assert more.failure is not None
                            why = f"a repeat run failed ({more.failure.value}: {more.reason})"
                            return Judgement(
                                Verdict.DISCARD,
                                why,
                                runs,
                                cause=Cause.REPEAT_FAILED,
                                failure_note=more.failure_note,
                            )
                        assert more.run is not None and more.measurement is not None
                        runs.append((more.run, more.measurement))
                        values.append(more.measurement.primary)
        finally:
            if inc_tree is not None:
                s.workspace.remove_worktree(inc_tree)

    def calibrate(self, done: int) -> str | None:
        """Extra runs of the incumbent for a noise estimate, when the policy asks for them."""
        n = self.acceptance.calibration_runs(done)
        if n <= 0:
            return None
        s = self.session
        incumbent = self.incumbent()
        folder = s.workspace.layout.calibration_dir(s.tag, done)
        worktree = s.workspace.add_worktree(f"{s.tag}-calibration", incumbent)
        try:
            before = s.workspace.snapshot(s.workspace.worktree_domain(worktree))
            for i in range(n):
                out = self.measure(
                    None, RunKind.CALIBRATION, incumbent, worktree, folder, before, (i + 1, n)
                )
                if out.failure is Status.INTERRUPTED:
                    raise Interrupted
        finally:
            s.workspace.remove_worktree(worktree)
        sigma = self.noise_sigma()
        s.ledger.set_noise_sigma(s.tag, sigma)
        if sigma is None:
            return f"calibration: {n} run(s), too few values for sigma"
        return f"calibrated noise from {n} run(s) of the incumbent: sigma={sigma:.6g}"

    def noise_sigma(self) -> float | None:
        """Pooled standard deviation of one run, from every commit measured more than once
        (calibration runs of the incumbent, repeats of candidates), None until there are any."""
        s = self.session
        num, dof = 0.0, 0
        for vals in s.ledger.values_by_commit(s.tag).values():
            if len(vals) >= 2:
                num += statistics.variance(vals) * (len(vals) - 1)
                dof += len(vals) - 1
        return (num / dof) ** 0.5 if dof > 0 else None

    def _editable_in(self, snapshot: dict[str, str]) -> set[str]:
        return {k for k in snapshot if glob_match(k, self.config.editable)}

    def incumbent(self) -> str:
        s = self.session
        commit = s.workspace.branch_commit()
        assert commit is not None
        return commit

    def incumbent_values(self) -> list[float]:
        s = self.session
        return s.ledger.run_values(s.tag, self.incumbent())

    def best_value(self) -> float | None:
        values = self.incumbent_values()
        return statistics.fmean(values) if values else None

    def folder(self, exp: int) -> Path:
        return self.session.workspace.layout.experiment_dir(self.session.tag, exp)


def run_event(exp: int | None, kind: str, step: tuple[int, int], detail: str = "") -> Event:
    """The "run" event told before a run starts: which experiment, why, k of at most n."""
    k, n = step
    who = f"experiment {exp}" if exp is not None else "calibration"
    count = f" {k} of {n}" if n > 1 else ""
    more = f" ({detail})" if detail else ""
    return Event(
        "run",
        message=f"{who}: {kind} run{count}{more}",
        experiment_id=exp,
        run_kind=kind,
        repeat=k,
        repeats=n,
    )


def metric_name(config: ResearchConfig, objective: Objective) -> str:
    """What the primary value is called: the config's ``objective.metric``, else a class
    objective's own ``metric`` (or ``name``) attribute, else "value"."""
    for name in (config.objective.metric, getattr(objective, "metric", None)):
        if isinstance(name, str) and name:
            return name
    name = getattr(objective, "name", None)
    return name if isinstance(name, str) and name else "value"


def content_hash(snapshot: dict[str, str], preset: str | None) -> str:
    h = hashlib.sha256()
    for path in sorted(snapshot):
        h.update(f"{path}\0{snapshot[path]}\n".encode())
    h.update(f"preset\0{preset}".encode())
    return h.hexdigest()


def summarize(measurements: list[Measurement]) -> dict[str, Any]:
    """Recorded values of a candidate: the mean of its runs, never its best run."""

    def mean_of(key: str) -> dict[str, float]:
        names = {n for m in measurements for n in getattr(m, key)}
        return {
            n: statistics.fmean(getattr(m, key)[n] for m in measurements if n in getattr(m, key))
            for n in sorted(names)
        }

    return {
        "value": statistics.fmean(m.primary for m in measurements),
        "secondary": mean_of("secondary"),
        "holdout": mean_of("holdout"),
    }


def memory_gb(runs: Iterable[RunResult]) -> float:
    return max((r.peak_memory_mb for r in runs), default=0.0) / 1024


def rename_in_measurements(folder: Path, old: str, new: str) -> None:
    """The measurement files of ``folder`` name a reworded commit by its new id."""
    for path in sorted(folder.glob("*measurement*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("commit") == old:
            write_json(path, {**data, "commit": new})


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` atomically through a temp file of a fresh name (a file planted under a
    fixed temp name is never written through)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def default_memory_cap_mb() -> int | None:
    """Without ``memory_limit_mb``: 80% of this machine's memory, so that a run (its
    processes, its tmpfs /tmp) can never take the driver down with it."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return max(256, int(pages * size * 0.8 / 2**20))
