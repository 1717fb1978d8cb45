"""Tools to test plug-ins the way autoresearch tests its own: a scripted proposer, a fake
objective, a toy domain, and ``check_objective`` / ``check_proposer``.

Example::

    from autoresearch.testing import check_objective, make_toy_domain
    def test_my_objective(tmp_path):
        check_objective(MyObjective(), tmp_path, log_text="---\\nscore: 1.5\\n")
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from autoresearch._config import load_config
from autoresearch._errors import MetricMissing, ScopeError
from autoresearch._objective import Objective
from autoresearch._scope import glob_match
from autoresearch._types import (
    Candidate,
    Context,
    ExperimentRecord,
    GateResult,
    Measurement,
    RunResult,
    Status,
)
from autoresearch._workspace import Workspace, init_repo
from autoresearch.proposers._base import Proposer
from autoresearch.proposers._scripted import Scripted, load_script, parse_candidate
from autoresearch.testing._fake_openai import FakeOpenAIServer, Reply

__all__ = [
    "FakeObjective",
    "FakeOpenAIServer",
    "Reply",
    "Scripted",
    "check_objective",
    "check_proposer",
    "load_script",
    "make_toy_domain",
    "parse_candidate",
]


class FakeObjective(Objective):
    """An objective whose value comes from a function of the run (default: the number after
    ``score:`` in the log), for testing loops and policies without a real metric."""

    def __init__(
        self,
        value: Callable[[RunResult], float] | None = None,
        gate: Callable[[RunResult], bool] | None = None,
    ) -> None:
        self._value = value
        self._gate = gate
        self.calls = 0

    def measure(self, run: RunResult) -> Measurement:
        self.calls += 1
        if self._value is not None:
            return Measurement(self._value(run))
        for line in reversed(run.trusted_output().splitlines()):
            if line.startswith("score:"):
                return Measurement(float(line.split(":", 1)[1]))
        raise MetricMissing("no 'score:' line")

    def gate(self, run: RunResult) -> GateResult:
        if self._gate is None or self._gate(run):
            return GateResult(True)
        return GateResult(False, "fake gate said no")


TOY_PARAMS = '''\
"""Knobs of the toy objective. The score is lowest at X=3, Y=1."""
X = 0.0  # first coordinate
Y = 0.0  # second coordinate
'''

TOY_RUN = '''\
"""Fixed harness: prints the score of params.py in the upstream summary format."""
import os
import random

import params

rng = random.Random(int(os.environ.get("AUTORESEARCH_SEED", "0")))
noise = float(os.environ.get("TOY_NOISE", "0")) * rng.gauss(0, 1)
score = (params.X - 3) ** 2 + (params.Y - 1) ** 2 + 1 + noise
print("training...")
print("---")
print(f"score: {score:.6f}")
'''


def make_toy_domain(
    path: Path,
    *,
    command: str = "python run.py",
    extra_toml: str = "",
    git: bool = False,
    time_budget_s: float = 10,
    noise: float = 0.0,
) -> Path:
    """Write a small domain folder: editable ``params.py`` (constants X, Y), fixed ``run.py``
    printing ``score`` (minimize; best 1.0 at X=3, Y=1), knobs for both constants."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "params.py").write_text(TOY_PARAMS)
    (path / "run.py").write_text(TOY_RUN)
    (path / "program.md").write_text("# Toy\nLower the score by changing X and Y in params.py.\n")
    (path / "autoresearch.toml").write_text(
        textwrap.dedent(f"""\
        name = "toy"
        description = "A two-constant toy objective for tests"
        editable = ["params.py"]
        fixed = ["run.py"]
        command = "{command}"
        time_budget_s = {time_budget_s}

        [env]
        TOY_NOISE = "{noise}"

        [objective]
        metric = "score"
        direction = "minimize"

        [[proposer.knobs]]
        name = "x"
        file = "params.py"
        constant = "X"
        type = "float"
        low = -5.0
        high = 5.0

        [[proposer.knobs]]
        name = "y"
        file = "params.py"
        constant = "Y"
        type = "float"
        low = -5.0
        high = 5.0
        """)
        + extra_toml
    )
    if git:
        init_repo(path)
    return path


def check_objective(
    objective: Objective, workdir: Path, log_text: str = "", eval_text: str | None = None
) -> Measurement:
    """Check an Objective against a finished run's folder and output; returns its Measurement.

    Checks: ``measure`` returns a Measurement with a finite primary value; it edits no file in
    ``workdir``; a run with no output and an empty folder raises MetricMissing (not another
    error); ``gate`` returns a GateResult.
    """
    workdir = Path(workdir)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "run.log"
        log.write_text(log_text)
        eval_log = None
        if eval_text is not None:
            eval_log = Path(tmp) / "eval.log"
            eval_log.write_text(eval_text)
        run = RunResult(workdir, log, 0, 1.0, 10.0, 0, eval_log_path=eval_log, eval_exit_code=0)
        before = _tree_state(workdir)
        m = objective.measure(run)
        if not isinstance(m, Measurement):
            raise AssertionError(f"measure() returned {type(m).__name__}, not a Measurement")
        if _tree_state(workdir) != before:
            raise AssertionError("measure() changed files in the run's folder; it must not")
        gate = objective.gate(run)
        if not isinstance(gate, GateResult):
            raise AssertionError(f"gate() returned {type(gate).__name__}, not a GateResult")
        empty_dir = Path(tmp) / "empty"
        empty_dir.mkdir()
        empty_log = Path(tmp) / "empty.log"
        empty_log.write_text("")
        empty = RunResult(
            empty_dir,
            empty_log,
            0,
            1.0,
            10.0,
            0,
            eval_log_path=empty_log if eval_text is not None else None,
        )
        try:
            objective.measure(empty)
        except MetricMissing:
            pass
        except Exception as e:
            raise AssertionError(
                f"measure() of a run with no output raised {type(e).__name__}: {e}; "
                "it must raise MetricMissing"
            ) from e
        else:
            raise AssertionError("measure() of a run with no output returned a value")
    return m


def check_proposer(proposer: Proposer, domain_dir: Path, rounds: int = 1) -> list[Candidate]:
    """Check a Proposer against a domain folder (with an ``autoresearch.toml``).

    Calls ``restore([])``, then ``rounds`` times ``propose`` + ``observe``, then ``close``.
    Every candidate must have a description and edits that stay within the editable files and
    apply cleanly to a copy of the folder. Returns the candidates.
    """
    domain_dir = Path(domain_dir)
    config, _ = load_config(domain_dir)
    files = {
        p.relative_to(domain_dir).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(domain_dir.rglob("*"))
        if p.is_file()
        and ".autoresearch" not in p.parts
        and ".git" not in p.parts
        and glob_match(p.relative_to(domain_dir).as_posix(), config.editable)
    }
    program = domain_dir / config.program
    out: list[Candidate] = []
    proposer.restore([])
    try:
        for i in range(rounds):
            context = Context(
                program=program.read_text() if program.exists() else "",
                files=files,
                history=(),
                metric=config.objective.metric or "value",
                direction=config.objective.direction,
                best_value=None,
                baseline_value=None,
                experiment_id=i + 1,
                editable_globs=tuple(config.editable),
            )
            cand = proposer.propose(context)
            if cand is None:
                break
            if not isinstance(cand, Candidate):
                raise AssertionError(f"propose() returned {type(cand).__name__}, not a Candidate")
            _check_applies(cand, domain_dir, config.editable, config.fixed, config.program)
            proposer.observe(cand, _fake_record(i + 1, cand))
            out.append(cand)
    finally:
        proposer.close()
    return out


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


def _fake_record(i: int, cand: Candidate) -> ExperimentRecord:
    return ExperimentRecord(
        id=i,
        tag="check",
        status=Status.DISCARD,
        reason="check_proposer",
        description=cand.description,
        hypothesis=cand.hypothesis,
        proposer="check",
        parent_commit="0" * 40,
        commit=None,
        value=1.0,
        secondary={},
        holdout={},
        meta=dict(cand.meta),
        tokens=cand.tokens,
        cost_usd=cand.cost_usd,
        memory_gb=0.0,
    )


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }
