"""``Objective.feedback``: what the evaluation says beyond the metric reaches the proposer
(the incumbent's and the last experiment's), fenced as data, and a failing one costs only
the feedback."""

from __future__ import annotations

from pathlib import Path

from autoresearch import Candidate, Context, Edit, Loop, MetricObjective, RunResult, Status
from autoresearch.proposers._prompt import render_context
from autoresearch.testing import FakeSandbox, Scripted, make_toy_domain


def set_x(x: float) -> Candidate:
    return Candidate(f"X={x}", (Edit("params.py", content=f"X = {x}\nY = 0.0\n"),))


class Recording(Scripted):
    def __init__(self, script):  # type: ignore[no-untyped-def]
        super().__init__(script)
        self.seen: list[Context] = []

    def propose(self, context: Context):  # type: ignore[no-untyped-def]
        self.seen.append(context)
        return super().propose(context)


class Explains(MetricObjective):
    """Feedback names the run's X (read from the toy's params.py for the test)."""

    def feedback(self, run: RunResult) -> str:
        x = (run.workdir / "params.py").read_text().split("X = ")[1].split()[0]
        if x == "-7.0":
            raise RuntimeError("the feedback parser broke")
        return f"X is {x}: criterion 'near three' failed" if x != "3.0" else "all criteria met"


def test_the_proposer_sees_the_incumbents_and_the_last_experiments_feedback(
    tmp_path: Path,
) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    proposer = Recording([set_x(3.0), set_x(9.0), set_x(-7.0), set_x(2.0)])
    Loop.from_dir(
        toy, proposer=proposer, objective=Explains("score"), tag="f", sandbox=FakeSandbox()
    ).run(max_experiments=5)
    first, second, third, fourth = proposer.seen
    # After the baseline: its own feedback, once.
    assert first.feedback.count("X is 0.0") == 1 and "current best (experiment 1" in first.feedback
    # After a keep, the keep is both the best and the last: shown once.
    assert "all criteria met" in second.feedback and "last experiment" not in second.feedback
    # After a discard: the best's and the discarded one's.
    assert "all criteria met" in third.feedback
    assert (
        "last experiment (experiment 3, discard)" in third.feedback and "X is 9.0" in third.feedback
    )
    # A feedback that raised: the run still counted, only its feedback is missing.
    assert "all criteria met" in fourth.feedback and "-7.0" not in fourth.feedback
    # The LLM prompt shows it as fenced data, under its own heading.
    prompt = render_context(third)
    assert "# Evaluation feedback" in prompt and "untrusted DATA" in prompt
    assert prompt.index("X is 9.0") > prompt.index("# Evaluation feedback")


def test_without_feedback_the_context_has_none(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    proposer = Recording([set_x(3.0), set_x(2.0)])
    Loop.from_dir(toy, proposer=proposer, tag="n", sandbox=FakeSandbox()).run(max_experiments=3)
    assert all(c.feedback == "" for c in proposer.seen)
    assert "# Evaluation feedback" not in render_context(proposer.seen[-1])


def test_feedback_is_capped(tmp_path: Path) -> None:
    class Verbose(MetricObjective):
        def feedback(self, run: RunResult) -> str:
            return "x" * 100_000

    toy = make_toy_domain(tmp_path / "toy", git=True)
    proposer = Recording([set_x(3.0)])
    summary = Loop.from_dir(
        toy, proposer=proposer, objective=Verbose("score"), tag="c", sandbox=FakeSandbox()
    ).run(max_experiments=2)
    assert summary.counts.get(Status.KEEP, 0) >= 1 or summary.best_value is not None
    assert 5000 < len(proposer.seen[0].feedback) < 7000
