"""``check_objective`` and ``check_proposer``: one call that puts a plug-in through its
contract, and the pieces the contract suites share with them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from autoresearch._config import load_config
from autoresearch._errors import MetricMissing, ScopeError
from autoresearch._git import init_repo
from autoresearch._objective import Objective
from autoresearch._types import (
    Candidate,
    ExperimentRecord,
    GateResult,
    Measurement,
    RunResult,
    Status,
)
from autoresearch._workspace import Workspace
from autoresearch.proposers._base import Proposer
from autoresearch.testing._fakes import domain_context, make_record


def check_objective(
    objective: Objective, workdir: Path, log_text: str = "", eval_text: str | None = None
) -> Measurement:
    """Check an Objective against a finished run's folder and output; returns its Measurement.

    ``workdir`` must hold what a finished run leaves for the objective to read: the files its
    ``measure`` opens (e.g. the metrics JSON a harness writes, relative to the run's folder),
    as the domain's ``command`` and ``eval_command`` would have left them. ``log_text`` is the
    command's output and ``eval_text`` the evaluator's (None: no evaluator ran).

    Checks: ``measure`` returns a Measurement with a finite primary value; it edits no file in
    ``workdir``; a run with no output and an empty folder raises MetricMissing (not another
    error); ``gate`` returns a GateResult.
    """
    workdir = Path(workdir)
    with tempfile.TemporaryDirectory() as tmp:
        run = finished_run(Path(tmp), workdir, log_text, eval_text)
        before = tree_state(workdir)
        m = objective.measure(run)
        if not isinstance(m, Measurement):
            raise AssertionError(f"measure() returned {type(m).__name__}, not a Measurement")
        if tree_state(workdir) != before:
            raise AssertionError("measure() changed files in the run's folder; it must not")
        gate = objective.gate(run)
        if not isinstance(gate, GateResult):
            raise AssertionError(f"gate() returned {type(gate).__name__}, not a GateResult")
        expect_metric_missing(objective, empty_run(Path(tmp), eval_text is not None))
    return m


def check_proposer(proposer: Proposer, domain_dir: Path, rounds: int = 1) -> list[Candidate]:
    """Check a Proposer against a domain folder (with an ``autoresearch.toml``).

    Calls ``restore([])``, then ``rounds`` times ``propose`` + ``observe``, then ``close``.
    Every candidate must have a description and edits that stay within the editable files and
    apply cleanly to a copy of the folder. Returns the candidates.
    """
    domain_dir = Path(domain_dir)
    out: list[Candidate] = []
    proposer.restore([])
    try:
        for i in range(rounds):
            cand = proposer.propose(domain_context(domain_dir, experiment_id=i + 1))
            if cand is None:
                break
            check_candidate(cand, domain_dir)
            proposer.observe(cand, observed_record(i + 1, cand))
            out.append(cand)
    finally:
        proposer.close()
    return out


def check_candidate(cand: object, domain_dir: Path) -> None:
    """``cand`` is a Candidate with a description whose edits apply, in scope, to a copy of
    ``domain_dir``; an AssertionError says what is wrong."""
    if not isinstance(cand, Candidate):
        raise AssertionError(f"propose() returned {type(cand).__name__}, not a Candidate")
    if not cand.description.strip():
        raise AssertionError("the candidate has no description")
    config, _ = load_config(domain_dir)
    _check_applies(cand, domain_dir, config.editable, config.fixed, config.program)


def observed_record(i: int, cand: Candidate, status: Status = Status.DISCARD) -> ExperimentRecord:
    """The record ``observe`` gets for the ``i``-th candidate of a check run."""
    measured = status in (Status.KEEP, Status.DISCARD)
    return make_record(
        id=i + 1,
        tag="check",
        status=status,
        reason="check_proposer",
        description=cand.description,
        hypothesis=cand.hypothesis,
        proposer="check",
        value=1.0 if measured else None,
        meta=dict(cand.meta),
        tokens=cand.tokens,
        cost_usd=cand.cost_usd,
    )


def finished_run(
    folder: Path, workdir: Path, log_text: str, eval_text: str | None, name: str = "run"
) -> RunResult:
    """A clean RunResult of ``workdir`` whose logs (written in ``folder``) hold the texts."""
    log = folder / f"{name}.log"
    log.write_text(log_text, encoding="utf-8")
    eval_log = None
    if eval_text is not None:
        eval_log = folder / f"{name}-eval.log"
        eval_log.write_text(eval_text, encoding="utf-8")
    return RunResult(workdir, log, 0, 1.0, 10.0, 0, eval_log_path=eval_log, eval_exit_code=0)


def empty_run(folder: Path, with_eval: bool) -> RunResult:
    """A clean run that printed nothing and left an empty folder."""
    empty_dir = folder / "empty"
    empty_dir.mkdir(exist_ok=True)
    return finished_run(folder, empty_dir, "", "" if with_eval else None, name="empty")


def expect_metric_missing(objective: Objective, run: RunResult) -> None:
    try:
        objective.measure(run)
    except MetricMissing:
        return
    except Exception as e:
        raise AssertionError(
            f"measure() of a run with no output raised {type(e).__name__}: {e}; "
            "it must raise MetricMissing"
        ) from e
    raise AssertionError("measure() of a run with no output returned a value")


def tree_state(root: Path, skip: Sequence[str] = ()) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under ``root`` (folders named in ``skip`` left out)."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not set(skip) & set(p.relative_to(root).parts)
    }


def _check_applies(
    cand: Candidate, domain_dir: Path, editable: Sequence[str], fixed: Sequence[str], program: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "domain"
        shutil.copytree(domain_dir, copy, ignore=shutil.ignore_patterns(".git", ".autoresearch"))
        init_repo(copy)
        ws = Workspace(copy, "check", editable, fixed, program)
        try:
            ws.apply(copy, cand.edits)
        except ScopeError as e:
            raise AssertionError(f"candidate {cand.description!r} does not apply: {e}") from e
