"""When a run stops: the experiment count, the spend budgets, and failure streaks, which read
each row's Cause (never its reason text). Runs are faked (FakeSandbox): no process starts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import ledger_records, set_x

from autoresearch import (
    BudgetExhausted,
    Candidate,
    Cause,
    Context,
    Edit,
    Loop,
    ProposalError,
    Proposer,
    RunResult,
    Status,
    _budget,
)
from autoresearch._budget import MAX_HARNESS_ERRORS, Budget, Streaks
from autoresearch.testing import (
    FakeObjective,
    FakeRun,
    FakeSandbox,
    Scripted,
    make_record,
    toy_run,
)


@pytest.fixture(autouse=True)
def _no_backoff_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_budget, "PROPOSAL_BACKOFF_S", 0.001)
    monkeypatch.setattr(_budget, "MAX_PROPOSAL_BACKOFF_S", 0.01)


def loop(domain: Path, proposer: Proposer | str, tag: str) -> Loop:
    return Loop.from_dir(domain, proposer=proposer, tag=tag, sandbox=FakeSandbox())


class Steps(Proposer):
    """Raises or proposes what it is given, one step a proposal; then has nothing more."""

    name = "steps"

    def __init__(self, steps: Sequence[Exception | Candidate]) -> None:
        self.steps = list(steps)

    def propose(self, context: Context) -> Candidate | None:
        if not self.steps:
            return None
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def test_max_experiments_counts_the_baseline(toy: Path) -> None:
    summary = loop(toy, "knob", "m").run(max_experiments=4)
    assert summary.experiments == 4 and "max-experiments 4" in summary.stopped_because
    assert sum(summary.counts.values()) == 4


def test_spend_budget_stops_before_it_is_exceeded(toy: Path) -> None:
    cands = [
        Candidate(
            f"X={x}",
            (Edit("params.py", search="X = 0.0", replace=f"X = {x}"),),
            tokens=100,
            cost_usd=0.25,
        )
        for x in (-1.0, -2.0, -3.0, -4.0, -5.0)
    ]
    summary = loop(toy, Scripted(cands), "b").run(max_cost_usd=1.0)
    recs = ledger_records(toy, "b")
    # 0.25 a proposal: a 4th still fits (1.00), a 5th would not.
    assert sum(r.cost_usd for r in recs) <= 1.0
    assert len(recs) == 1 + 4 and "max-cost-usd" in summary.stopped_because
    summary = loop(toy, Scripted(cands), "t").run(max_tokens=250)
    assert sum(r.tokens for r in ledger_records(toy, "t")) <= 250
    assert "max-tokens" in summary.stopped_because


def test_failed_proposals_record_their_spend_and_budget_exhaustion_stops(toy: Path) -> None:
    errors: list[Exception] = [
        ProposalError("answer did not parse", tokens=120, cost_usd=0.01),
        BudgetExhausted("the next request could exceed --max-tokens 200", tokens=0),
    ]
    summary = loop(toy, Steps(errors), "spend").run(max_experiments=10)
    recs = ledger_records(toy, "spend")
    assert recs[1].status is Status.INVALID and recs[1].cause is Cause.NO_PROPOSAL
    assert recs[1].tokens == 120 and recs[1].cost_usd == pytest.approx(0.01)
    # The budget stop spent nothing, so it leaves no row of its own.
    assert "max-tokens 200" in summary.stopped_because and len(recs) == 2


def test_a_budget_stop_that_spent_something_leaves_a_row(toy: Path) -> None:
    errors: list[Exception] = [BudgetExhausted("the answer was cut by the budget", tokens=40)]
    summary = loop(toy, Steps(errors), "spent").run(max_experiments=10)
    recs = ledger_records(toy, "spent")
    assert [r.cause for r in recs] == [None, Cause.BUDGET] and recs[1].tokens == 40
    assert "cut by the budget" in summary.stopped_because


def test_five_proposer_bugs_in_a_row_end_the_run(toy: Path) -> None:
    bugs: list[Exception] = [TypeError("bad code in the proposer")] * 20
    summary = loop(toy, Steps(bugs), "bugs").run(max_experiments=20)
    recs = ledger_records(toy, "bugs")
    assert [r.cause for r in recs[1:]] == [Cause.PROPOSER_BUG] * MAX_HARNESS_ERRORS
    assert "in a row" in summary.stopped_because and "TypeError" in summary.stopped_because


def test_proposal_errors_never_end_the_run(toy: Path) -> None:
    misses: list[Exception] = [ProposalError("the answer had no edit blocks")] * 12
    summary = loop(toy, Steps(misses), "misses").run(max_experiments=13)
    recs = ledger_records(toy, "misses")
    assert [r.cause for r in recs[1:]] == [Cause.NO_PROPOSAL] * 12
    assert "max-experiments" in summary.stopped_because


def test_the_streak_reads_the_cause_not_the_reason(toy: Path) -> None:
    # Misses whose text looks like a bug's never count as bugs...
    lookalikes: list[Exception] = [ProposalError("proposer error: TypeError: x")] * 7
    summary = loop(toy, Steps(lookalikes), "text").run(max_experiments=8)
    assert summary.counts["invalid"] == 7 and "max-experiments" in summary.stopped_because
    # ...and a measured experiment between bugs breaks their streak.
    few = [RuntimeError("bug")] * (MAX_HARNESS_ERRORS - 1)
    summary = loop(toy, Steps([*few, set_x(1.0), *few]), "broken").run()
    causes = [r.cause for r in ledger_records(toy, "broken")[1:]]
    assert causes.count(Cause.PROPOSER_BUG) == 2 * len(few) and causes[len(few)] is None
    assert summary.stopped_because == "the proposer has no more candidates"


def test_objective_bugs_count_toward_the_streak_but_crashes_do_not(toy: Path) -> None:
    measured = iter(range(100))

    def works_once(run: RunResult) -> float:
        if next(measured) > 0:  # the baseline is measured; every candidate hits the bug
            raise KeyError("the objective's own bug")
        return 11.0

    cands = [set_x(i / 10) for i in range(1, 9)]
    summary = Loop.from_dir(
        toy,
        proposer=Scripted(cands),
        tag="obj",
        sandbox=FakeSandbox(),
        objective=FakeObjective(works_once),
    ).run()
    recs = ledger_records(toy, "obj")
    assert [r.cause for r in recs[1:]] == [Cause.OBJECTIVE_ERROR] * MAX_HARNESS_ERRORS
    assert "in a row" in summary.stopped_because
    # Candidates that crash are the candidates' fault: the run goes on.
    ran = iter(range(100))
    sandbox = FakeSandbox(lambda spec: toy_run(spec) if next(ran) == 0 else FakeRun.crash())
    summary = Loop.from_dir(toy, proposer=Scripted(cands), tag="runs", sandbox=sandbox).run()
    recs = ledger_records(toy, "runs")
    assert [r.cause for r in recs[1:]] == [Cause.RUN_FAILED] * len(cands)
    assert summary.stopped_because == "the proposer has no more candidates"


def test_streaks_unit_rules() -> None:
    streaks = Streaks()
    miss = make_record(status=Status.INVALID, cause=Cause.NO_PROPOSAL, reason="proposer error")
    waits = [streaks.after(miss) for _ in range(30)]
    assert all(stop is None for stop, _ in waits)
    seconds = [w for _, w in waits]
    assert seconds[1] == 2 * seconds[0] and seconds[2] == 4 * seconds[0]
    assert max(seconds) == _budget.MAX_PROPOSAL_BACKOFF_S == seconds[-1]
    assert streaks.after(make_record())[1] == 0.0  # a measured experiment ends the backoff
    bug = make_record(status=Status.INVALID, cause=Cause.PROPOSER_BUG, reason="no proposal")
    objective = make_record(status=Status.CRASH, cause=Cause.OBJECTIVE_ERROR)
    for r in [bug, objective, bug, objective]:
        assert streaks.after(r)[0] is None
    stop, _ = streaks.after(bug)
    assert stop is not None and "5 proposer/objective errors in a row" in stop


def test_max_hours_leaves_room_for_a_typical_experiment() -> None:
    budget = Budget(max_hours=1.0)
    assert budget.reason(3, 3000.0, [100.0, 300.0, 200.0], 0, 0.0, 3) is None
    assert "max-hours" in str(budget.reason(3, 3500.0, [100.0, 300.0, 200.0], 0, 0.0, 3))
