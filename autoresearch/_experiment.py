"""One experiment's pipeline: propose -> apply -> check scope -> run -> measure -> decide ->
gate -> record. ``Loop`` repeats it; this module knows nothing of budgets or signals."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import posixpath
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch._config import ResearchConfig
from autoresearch._context import build_context
from autoresearch._errors import (
    BaselineFailed,
    BudgetExhausted,
    Interrupted,
    ProposalError,
    ScopeError,
)
from autoresearch._gate import GateOutcome, GateRunner, loader_files, shadowing_modules
from autoresearch._measure import (
    FAILURE_TAIL_CHARS,
    Measurer,
    RunOutcome,
    content_hash,
    memory_gb,
    metric_name,
    rename_in_measurements,
    run_event,
    summarize,
)
from autoresearch._objective import Objective, has_report, report_key
from autoresearch._session import Session
from autoresearch._types import (
    GATE_RUN,
    Candidate,
    Cause,
    Context,
    Event,
    ExperimentKind,
    ExperimentRecord,
    RunKind,
    Status,
)
from autoresearch.acceptance._base import Verdict
from autoresearch.proposers._base import Proposer

log = logging.getLogger("autoresearch")


class BudgetStop(Exception):
    """The proposer says the next proposal would exceed the spend budget."""


@dataclass(frozen=True)
class Outcome:
    """How an experiment ended, before it is written: status, cause, reason, columns."""

    status: Status
    reason: str
    cause: Cause | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    failure_note: str | None = None  # what the next proposal is told (None: nothing failed)


class Pipeline:
    """Runs experiments of one session. It owns ``last_failure``: the failure of the
    experiment just before the next proposal, shown to the proposer once."""

    def __init__(
        self,
        session: Session,
        config: ResearchConfig,
        program: str,
        objective: Objective,
        measurer: Measurer,
        preset: str | None,
        emit: Callable[[Event], None],
        started: float,
    ) -> None:
        self.s = session
        self.config = config
        self.program = program  # read from the run's base when the loop was built
        self.objective = objective
        self.m = measurer
        self.preset = preset
        self.emit = emit
        self.started = started
        self.last_failure: str | None = None

    def context(self) -> Context:
        return build_context(
            self.s, self.config, self.program, self.m.incumbent(), self.last_failure
        )

    # -- a candidate ---------------------------------------------------------------------
    def candidate(
        self, proposer: Proposer, in_proposer: Callable[[bool], None]
    ) -> ExperimentRecord | None:
        """Propose and measure one candidate; None when the proposer has nothing more."""
        ledger = self.s.ledger
        parent = self.m.incumbent()
        t0 = time.monotonic()
        context = self.context()
        try:
            in_proposer(True)
            candidate = proposer.propose(context)
        except (KeyboardInterrupt, Interrupted):
            raise
        except Exception as e:  # a proposer failure never kills the loop
            return self._proposal_failed(proposer, parent, e)
        finally:
            in_proposer(False)
        if candidate is None:
            return None
        candidate = dataclasses.replace(
            candidate,
            description=_storable(candidate.description, _MAX_DESCRIPTION),
            hypothesis=_storable(candidate.hypothesis, _MAX_HYPOTHESIS),
        )
        exp = ledger.begin(
            self.s.tag,
            parent,
            candidate.description,
            proposer.name,
            candidate.hypothesis,
            candidate.meta,
            candidate.tokens,
            candidate.cost_usd,
            time.monotonic() - t0,
        )
        log.info("experiment %d started: %s", exp, candidate.description)
        outcome = self._measure_candidate(candidate, exp, parent)
        return self.finish(proposer, candidate, exp, outcome)

    def _measure_candidate(self, candidate: Candidate, exp: int, parent: str) -> Outcome:
        ws, ledger = self.s.workspace, self.s.ledger
        folder = self.m.folder(exp)
        worktree = ws.add_worktree(f"{self.s.tag}-{exp}", parent)
        try:
            try:
                self._no_gate_loaders(candidate)
                changed, created = ws.apply(worktree, candidate.edits)
                self._no_shadowing(created)
            except ScopeError as e:
                return Outcome(Status.INVALID, str(e), Cause.SCOPE, failure_note=f"invalid: {e}")
            message = _commit_message(candidate, exp)
            commit = ws.commit(worktree, changed, message, exp, created)
            diff = ws.diff(parent, commit)
            (folder / "diff.patch").write_text(diff, encoding="utf-8")
            before = ws.snapshot(ws.worktree_domain(worktree))
            digest = content_hash(before, self.preset)
            fields: dict[str, Any] = {"commit_sha": commit, "diff": diff, "content_hash": digest}
            ledger.update(exp, **fields)
            twin = ledger.find_measured(self.s.tag, digest)
            if twin is not None:
                why = f"identical to experiment {twin.id}; its value is reused"
                reused = {"value": twin.value, "secondary": twin.secondary, "holdout": twin.holdout}
                return Outcome(Status.DISCARD, why, fields=reused)
            step = (1, self.m.acceptance.max_runs_per_candidate)
            first = self.m.measure(exp, RunKind.CANDIDATE, commit, worktree, folder, before, step)
            fields.update(n_runs=1, log_path=str(first.run.log_path) if first.run else None)
            if not first.ok:
                return _failed(first, fields)
            judged = self.m.decide(exp, commit, worktree, folder, before, first, parent)
            runs = judged.runs
            fields.update(
                summarize([m for _, m in runs]),
                n_runs=len(runs),
                memory_gb=memory_gb(r for r, _ in runs),
            )
            if judged.cause is not None:
                return Outcome(
                    Status.DISCARD, judged.reason, judged.cause, fields, judged.failure_note
                )
            if judged.verdict is not Verdict.KEEP:
                return Outcome(Status.DISCARD, judged.reason, fields=fields)
            self.emit(run_event(exp, GATE_RUN, (1, 1), "the objective's gate, before a keep"))
            try:
                gate = self.objective.gate(runs[-1][0])
            except Exception as e:  # a gate that cannot check does not pass
                why = f"objective error: {type(e).__name__}: {e}"
                return Outcome(Status.GATE_FAILED, f"gate: {why}", Cause.OBJECTIVE_ERROR, fields)
            if not gate.passed:
                why = f"gate: {gate.reason}"
                return Outcome(Status.GATE_FAILED, why, Cause.GATE, fields, f"gate_failed: {why}")
            gated = self._gate_command(exp, worktree, folder)
            if gated is not None and not gated.passed:
                if gated.interrupted:
                    raise Interrupted
                why = f"gate_command: {gated.reason}"
                note = f"gate_failed: {why}\n{gated.tail}"
                return Outcome(Status.GATE_FAILED, why, Cause.GATE, fields, note)
            effect = self._effect(parent, fields["value"])
            notes = [gate.reason, gated.reason if gated is not None else ""]
            summary = "; ".join(f"gate: {n}" for n in notes if n)
            kept = ws.reword(commit, _kept_message(candidate, exp, effect, summary), exp)
            ledger.rename_commit(self.s.tag, exp, commit, kept)
            rename_in_measurements(folder, commit, kept)
            fields["commit_sha"] = kept
            return Outcome(Status.KEEP, judged.reason, fields=fields)
        finally:
            ws.remove_worktree(worktree)

    # -- gate_command -------------------------------------------------------------------
    def _no_gate_loaders(self, candidate: Candidate) -> None:
        """ScopeError for an edit to a file a gate's runner loads on its own (a conftest.py,
        a .pth, a pytest config), whatever the editable globs say, when a gate is set."""
        if not self.config.gate_commands:
            return
        bad = loader_files(posixpath.normpath(e.path.replace("\\", "/")) for e in candidate.edits)
        if bad:
            raise ScopeError(
                f"{bad[0]!r}: a file the gate's runner would load (conftest.py, "
                "sitecustomize.py, a .pth file, test or linter configuration) may not change "
                "while a gate_command is set"
            )

    def _no_shadowing(self, created: list[str]) -> None:
        """ScopeError for a new module that would be imported in place of the test runner,
        the standard library or an installed package, when a gate is set."""
        if not self.config.gate_commands:
            return
        bad = shadowing_modules(created)
        if bad:
            raise ScopeError(
                f"{bad[0]!r}: a new module of that name would be imported instead of the "
                "standard library's or an installed package's (e.g. the test runner) while a "
                "gate_command is set; name it differently"
            )

    def _gate_runner(self, domain: Path) -> GateRunner:
        """The gate commands run like any run, with the fixed files (the tests the candidate
        is gated by) bound read-only from their bytes before it: candidate code a test imports
        cannot rewrite a test that is yet to be collected."""
        m = self.m
        fixed = self._fixed_bytes(domain)
        return GateRunner(
            self.config.gate_commands,
            self.config.gate_timeout_s,
            self.config.gate_retries,
            m.sandbox,
            lambda domain, files: m._spec(domain, files, 0, fixed),
            lambda: _differ(fixed, self._fixed_bytes(domain)),
        )

    def _fixed_bytes(self, domain: Path) -> dict[str, bytes]:
        snap = self.s.workspace.snapshot(domain)
        editable = self.m._editable_in(snap)
        return {rel: (domain / rel).read_bytes() for rel in sorted(snap) if rel not in editable}

    def _gate_command(self, exp: int, worktree: Path, folder: Path) -> GateOutcome | None:
        """The gate commands on the candidate's committed files (what its runs left is
        removed first: a file a run wrote must not change the gate), against the unmodified
        code's test counts; None without a gate_command."""
        if not self.config.gate_commands:
            return None
        ws = self.s.workspace
        ws.reset_worktree(worktree)
        ws.refresh_git_env(worktree)
        reference = self.s.ledger.meta(gate_reference_key(self.s.tag))
        domain = ws.worktree_domain(worktree)
        return self._gate_runner(domain).run(
            domain,
            folder,
            reference if isinstance(reference, dict) else {},
            lambda what: self.emit(run_event(exp, GATE_RUN, (1, 1), what)),
        )

    def _gate_reference(self, exp: int, worktree: Path, folder: Path) -> None:
        """Before the first candidate: the gate commands on the unmodified code. Their test
        counts become the reference; a failure stops the run (BaselineFailed)."""
        if not self.config.gate_commands:
            return
        ws = self.s.workspace
        ws.reset_worktree(worktree)
        ws.refresh_git_env(worktree)
        domain = ws.worktree_domain(worktree)
        out = self._gate_runner(domain).run(
            domain,
            folder,
            None,
            lambda what: self.emit(run_event(exp, GATE_RUN, (1, 1), f"unmodified code, {what}")),
        )
        if out.interrupted:
            raise Interrupted
        if not out.passed:
            retries = self.config.gate_retries
            raise BaselineFailed(
                f"gate_command fails on the unmodified code: {out.reason}. No candidate can "
                "pass a gate the code it starts from fails: fix the suite, exclude its flaky "
                f"tests, or raise gate_retries (now {retries}).\nIts output ends with:\n"
                f"{out.tail}\nSee {folder}"
            )
        self.s.ledger.set_meta(gate_reference_key(self.s.tag), out.counts)
        self.emit(Event("message", message=f"gate_command on the unmodified code: {out.reason}"))

    def _effect(self, parent: str, value: float) -> str:
        """ "val_bpb 3.92 -> 3.58 (-0.34)": the incumbent's mean and the candidate's."""
        name = metric_name(self.config, self.objective)
        before = self.s.ledger.run_values(self.s.tag, parent)
        if not before:
            return f"{name} {value:.6g}"
        old = statistics.fmean(before)
        return f"{name} {old:.6g} -> {value:.6g} ({value - old:+.6g})"

    def _proposal_failed(self, proposer: Proposer, parent: str, e: Exception) -> ExperimentRecord:
        tokens, cost = getattr(e, "tokens", 0), getattr(e, "cost_usd", 0.0)
        if isinstance(e, BudgetExhausted):
            if tokens or cost:  # a row only for what was really spent
                spent = Candidate("budget reached", tokens=tokens, cost_usd=cost)
                self._record_invalid(proposer, spent, parent, Cause.BUDGET, f"no proposal: {e}")
            raise BudgetStop(str(e)) from None
        # What the failed attempt spent is recorded like any other proposal's spend.
        if isinstance(e, ProposalError):
            cause, label, detail = Cause.NO_PROPOSAL, "no proposal", str(e)
        else:
            cause, label, detail = Cause.PROPOSER_BUG, "proposer error", f"{type(e).__name__}: {e}"
        candidate = Candidate(f"{label}: {type(e).__name__}", tokens=tokens, cost_usd=cost)
        return self._record_invalid(proposer, candidate, parent, cause, f"{label}: {detail}")

    def _record_invalid(
        self, proposer: Proposer, candidate: Candidate, parent: str, cause: Cause, reason: str
    ) -> ExperimentRecord:
        exp = self.s.ledger.begin(
            self.s.tag,
            parent,
            candidate.description,
            proposer.name,
            tokens=candidate.tokens,
            cost_usd=candidate.cost_usd,
        )
        outcome = Outcome(Status.INVALID, reason, cause, failure_note=f"invalid: {reason}")
        return self.finish(None, candidate, exp, outcome)

    # -- the baseline --------------------------------------------------------------------
    def baseline(self) -> ExperimentRecord:
        """Measure the unmodified target. A crash or timeout on the user's own files is tried
        again (``baseline_retries``), each attempt a recorded baseline run, before the run
        gives up with the cause."""
        s = self.s
        base = self.m.incumbent()
        exp = s.ledger.begin(
            s.tag,
            base,
            "baseline",
            "baseline",
            "the unmodified target, measured first",
            kind=ExperimentKind.BASELINE,
        )
        folder = self.m.folder(exp)
        attempts = 1 + self.config.baseline_retries
        worktree = s.workspace.add_worktree(f"{s.tag}-{exp}", base)
        try:
            before = s.workspace.snapshot(s.workspace.worktree_domain(worktree))
            for attempt in range(1, attempts + 1):
                first = self.m.measure(
                    exp, RunKind.BASELINE, base, worktree, folder, before, (attempt, attempts)
                )
                # Only a run that crashed or timed out is tried again: a missing metric or
                # changed files would fail the same way twice.
                retry = first.cause is Cause.RUN_FAILED and first.failure in (
                    Status.CRASH,
                    Status.TIMEOUT,
                )
                if first.ok or not retry or attempt == attempts:
                    break
                self.emit(
                    Event(
                        "message",
                        message=f"baseline attempt {attempt} of {attempts} failed "
                        f"({first.failure}: {first.reason}); trying again",
                    )
                )
        finally:
            s.workspace.remove_worktree(worktree)
        cand = Candidate("baseline")
        if not first.ok:
            assert first.failure is not None
            log = first.run.log_path if first.run else folder
            outcome = _failed(first, {"commit_sha": base, "n_runs": attempt})
            why = f"baseline failed: {first.reason}"
            self.finish(
                None, cand, exp, Outcome(outcome.status, why, outcome.cause, outcome.fields)
            )
            if first.failure is Status.INTERRUPTED:
                raise Interrupted
            tried = f" ({attempt} attempts)" if attempt > 1 else ""
            said = last_words(first.run.log_tail(FAILURE_TAIL_CHARS)) if first.run else ""
            hint = f"\n{timeout_hint()}" if first.failure is Status.TIMEOUT else ""
            raise BaselineFailed(
                f"the baseline run failed{tried} ({first.failure.value}: {first.reason}); "
                f"nothing can be compared to it."
                + (f"\nThe run's log ends with:\n{said}" if said else "")
                + f"{hint}\nSee {log}"
            )
        assert first.run is not None and first.measurement is not None
        fields = summarize([first.measurement])
        fields.update(commit_sha=base, n_runs=attempt, log_path=str(first.run.log_path))
        fields.update(memory_gb=memory_gb([first.run]))
        if self.config.gate_commands:
            worktree = s.workspace.add_worktree(f"{s.tag}-{exp}-gate", base)
            try:
                self._gate_reference(exp, worktree, folder)
            except BaselineFailed as e:
                failed = Outcome(Status.GATE_FAILED, str(e).split("\n")[0], Cause.GATE, fields)
                self.finish(None, cand, exp, failed)
                raise
            finally:
                s.workspace.remove_worktree(worktree)
        return self.finish(None, cand, exp, Outcome(Status.KEEP, "baseline", fields=fields))

    # -- recording -----------------------------------------------------------------------
    def finish(
        self, proposer: Proposer | None, candidate: Candidate, exp: int, outcome: Outcome
    ) -> ExperimentRecord:
        """Write the row, then (for a keep) move the branch, then regenerate results.tsv."""
        s = self.s
        s.ledger.finish(exp, outcome.status, outcome.reason, outcome.cause, **outcome.fields)
        record = s.ledger.record(exp)
        if outcome.status is Status.KEEP and record.kind is ExperimentKind.CANDIDATE:
            assert record.commit is not None
            s.workspace.move_branch(record.commit, record.parent_commit)
        # The failure shown to the next proposal is this experiment's (None if it went fine).
        self.last_failure = outcome.failure_note
        s.ledger.write_results_tsv(
            s.workspace.layout.results_tsv, metric_name(self.config, self.objective)
        )
        self._save_report()
        if proposer is not None:
            with contextlib.suppress(Exception):
                proposer.observe(candidate, record)
        self.emit(
            Event(
                "experiment",
                record=record,
                best_value=self.m.best_value(),
                elapsed_s=time.monotonic() - self.started,
            )
        )
        return record

    def _save_report(self) -> None:
        """The objective's figures for ``status``, computed here in the driver and kept in
        the ledger, so that ``status`` runs no code of the domain."""
        if not has_report(self.objective):
            return
        try:
            found = self.objective.report(self.s.ledger.history(self.s.tag))
            figures = {str(k): float(v) for k, v in found.items()}
        except Exception:  # a report that cannot be computed shows none; the run goes on
            figures = {}
        self.s.ledger.set_meta(report_key(self.s.tag), figures)


def _differ(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def gate_reference_key(tag: str) -> str:
    """The ledger's meta key of the unmodified code's gate test counts for run ``tag``."""
    return f"gate_reference:{tag}"


def _failed(run: RunOutcome, fields: dict[str, Any]) -> Outcome:
    assert run.failure is not None
    return Outcome(run.failure, run.reason, run.cause, fields, run.failure_note)


def _commit_message(candidate: Candidate, exp: int) -> str:
    body = f"\n\n{candidate.hypothesis}" if candidate.hypothesis else ""
    return f"{candidate.description}{body}\n\nautoresearch-experiment: {exp}"


def _kept_message(candidate: Candidate, exp: int, effect: str, gate: str) -> str:
    """A kept commit's message: what was measured (and the gate's summary) under the title."""
    measured = "\n".join(x for x in (effect, gate) if x)
    body = f"\n\n{candidate.hypothesis}" if candidate.hypothesis else ""
    return f"{candidate.description}\n\n{measured}{body}\n\nautoresearch-experiment: {exp}"


# Lines of a failed run's log quoted when there is no traceback to quote.
LAST_WORDS_LINES = 3


def last_words(log: str) -> str:
    """What a failed run said last: a traceback's final line (the exception, or the message
    of a SystemExit), else its last few non-blank lines."""
    lines = [line.rstrip() for line in log.splitlines() if line.strip()]
    lines = [line for line in lines if line != "--- eval ---"]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback (most recent call last)"):
            after = [line for line in lines[i + 1 :] if not line.startswith((" ", "\t"))]
            if after:
                return "  " + after[-1]
    return "\n".join("  " + line for line in lines[-LAST_WORDS_LINES:])


def timeout_hint() -> str:
    return (
        "To give it more time, raise time_budget_s (the budget), startup_allowance_s (time "
        "before the budget starts) or grace_s in autoresearch.toml, or the same field as an "
        "override (Loop.from_dir(..., overrides={...})); timeout_s, where set, caps them all"
    )


__all__ = ["BudgetStop", "Outcome", "Pipeline"]


# A proposer's description and hypothesis go into the commit message, one argument of one git
# command: Linux takes at most 128 KiB per argument, and git refuses a NUL in a message.
_MAX_DESCRIPTION = 2_000
_MAX_HYPOTHESIS = 16_000


def _storable(text: str, limit: int) -> str:
    """Text a proposer wrote, as the ledger and git can store it, never a driver crash: a lone
    surrogate (a model's broken escape, or a candidate's on purpose) and a NUL are written as
    their escapes, and text over ``limit`` characters is cut, ending in "…"."""
    text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"
