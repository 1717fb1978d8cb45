"""The loop end to end on a toy domain: keep/discard, scope rules, records, git hygiene."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git, ledger_records

from autoresearch import Candidate, Edit, Loop, Status
from autoresearch._ledger import Ledger
from autoresearch.testing import Scripted, make_toy_domain


def scripted(*cands: Candidate) -> Scripted:
    return Scripted(list(cands))


def set_x(value: float, desc: str = "") -> Candidate:
    return Candidate(
        desc or f"X={value}", (Edit("params.py", search="X = 0.0", replace=f"X = {value}"),)
    )


def test_end_to_end_knob_search_keeps_improvements(toy: Path) -> None:
    head_before = git(toy, "rev-parse", "HEAD")
    status_before = git(toy, "status", "--porcelain")
    summary = Loop.from_dir(toy, proposer="knob", tag="t1").run(max_experiments=5)
    assert summary.experiments == 5
    assert summary.baseline_value == pytest.approx(11.0)
    assert summary.best_value is not None and summary.best_value <= 11.0
    assert sum(summary.counts.values()) == 5
    # The branch points at the best commit, whose params.py is the kept one.
    branch = git(toy, "rev-parse", "autoresearch/t1").strip()
    assert branch == summary.best_commit
    # Every experiment has its own commit ref; the user's checkout is untouched.
    refs = git(toy, "for-each-ref", "--format=%(refname)", "refs/autoresearch/t1").split()
    assert len(refs) == 4
    assert git(toy, "rev-parse", "HEAD") == head_before
    assert git(toy, "status", "--porcelain") == status_before
    assert (toy / "params.py").read_text().count("X = 0.0") == 1
    # results.tsv: upstream columns first, then ours; one row per experiment.
    lines = (toy / "results.tsv").read_text().splitlines()
    assert lines[0].split("\t") == [
        "commit",
        "score",
        "memory_gb",
        "status",
        "description",
        "id",
        "tag",
        "reason",
    ]
    assert len(lines) == 6
    first = lines[1].split("\t")
    assert len(first[0]) == 7 and first[1] == "11.000000" and first[3] == "keep"
    # Each experiment folder has its log, diff and measurement.
    recs = ledger_records(toy)
    for r in recs[1:]:
        folder = toy / ".autoresearch" / "runs" / "t1" / str(r.id)
        assert (folder / "diff.patch").read_text().startswith("diff --git")
        assert json.loads((folder / "measurement.json").read_text())["primary"] == r.value
        assert "score:" in (folder / "run.log").read_text()
    # No worktree is left behind.
    assert list((toy / ".autoresearch" / "worktrees").iterdir()) == []


def test_scope_rules_make_invalid_and_apply_nothing(toy: Path) -> None:
    (toy / "link.py").symlink_to("/etc/hostname")
    git(toy, "add", "link.py")
    git(toy, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "link")
    bad = [
        Candidate("outside editable", (Edit("notes.txt", content="hi"),)),
        Candidate("traversal", (Edit("../escape.py", content="x"),)),
        Candidate("absolute", (Edit("/tmp/abs.py", content="x"),)),
        Candidate("fixed file", (Edit("run.py", content="print('---'); print('score: 0')"),)),
        Candidate("config", (Edit("autoresearch.toml", content=""),)),
        Candidate(
            "half bad", (Edit("params.py", content="X = 3\nY = 1\n"), Edit("run.py", content="x"))
        ),
        Candidate("search misses", (Edit("params.py", search="X = 9", replace="X = 1"),)),
        Candidate("no change", (Edit("params.py", search="X = 0.0", replace="X = 0.0"),)),
    ]
    loop = Loop.from_dir(
        toy, proposer=scripted(*bad), tag="scope", overrides={"editable": ["*.py"]}
    )
    summary = loop.run()
    recs = ledger_records(toy)
    assert [r.status for r in recs[1:]] == [Status.INVALID] * len(bad)
    reasons = [r.reason for r in recs[1:]]
    assert "outside the editable files" in reasons[0]
    assert "escapes" in reasons[1]
    assert "absolute" in reasons[2]
    assert "fixed" in reasons[3] and "fixed" in reasons[4] and "fixed" in reasons[5]
    assert "not found" in reasons[6]
    assert "changes nothing" in reasons[7]
    assert summary.best_value == pytest.approx(11.0)
    assert not (toy.parent / "escape.py").exists() and not Path("/tmp/abs.py").exists()


def test_symlinked_editable_path_is_refused(toy: Path) -> None:
    (toy / "sub").symlink_to(toy.parent)
    git(toy, "add", "sub")
    git(toy, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "sub")
    cand = Candidate("through a symlink", (Edit("sub/evil.py", content="x"),))
    Loop.from_dir(
        toy, proposer=scripted(cand), tag="sym", overrides={"editable": ["**/*.py"]}
    ).run()
    r = ledger_records(toy)[-1]
    assert r.status is Status.INVALID and "symlink" in r.reason
    assert not (toy.parent / "evil.py").exists()


def test_run_that_rewrites_a_fixed_file_is_invalid(toy: Path) -> None:
    sneaky = Candidate(
        "rewrites the harness",
        (Edit("params.py", content="open('run.py', 'a').write('# tampered')\nX = 3.0\nY = 1.0\n"),),
    )
    Loop.from_dir(toy, proposer=scripted(sneaky), tag="tamper").run()
    r = ledger_records(toy)[-1]
    assert r.status is Status.INVALID and "files changed during the run: run.py" in r.reason
    assert git(toy, "rev-parse", "autoresearch/tamper") == git(toy, "rev-parse", "HEAD")


def test_baseline_that_fails_stops_the_run(tmp_path: Path) -> None:
    from autoresearch import BaselineFailed

    d = make_toy_domain(
        tmp_path / "t", command="python run.py && echo tampered >> run.py", git=True
    )
    with pytest.raises(BaselineFailed, match=r"files changed during the run: run\.py"):
        Loop.from_dir(d, proposer="knob", tag="tamper").run()


def test_crash_and_missing_metric(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True)
    crash = Candidate("crash", (Edit("params.py", content="raise SystemExit(4)\n"),))
    nometric = Candidate("no metric", (Edit("params.py", content="X = 'a'\nY = 0\n"),))
    good = set_x(3.0, "good")
    Loop.from_dir(d, proposer=scripted(crash, nometric, good), tag="c").run()
    recs = ledger_records(d)
    assert [r.status for r in recs] == [Status.KEEP, Status.CRASH, Status.CRASH, Status.KEEP]
    assert "exit code 4" in recs[1].reason
    lines = (d / "results.tsv").read_text().splitlines()
    assert lines[2].split("\t")[1] == "0.000000"


def test_no_metric_line_is_a_crash_with_log_tail_for_the_proposer(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True)
    quiet = Candidate(
        "prints nothing",
        (
            Edit(
                "params.py",
                content="X = 0\nY = 0\nprint('hello from params')\n"
                "import sys, os; sys.stdout.flush(); os._exit(0)\n",
            ),
        ),
    )
    seen = []

    class Spy(Scripted):
        def propose(self, context):  # type: ignore[no-untyped-def]
            seen.append(context.last_failure)
            return super().propose(context)

    Loop.from_dir(d, proposer=Spy([quiet, set_x(1.0)]), tag="q").run()
    recs = ledger_records(d)
    assert recs[1].status is Status.CRASH and "no metric" in recs[1].reason
    assert seen[0] is None and seen[1] is not None and "hello from params" in seen[1]


def test_timeout_is_recorded(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True)
    slow = Candidate(
        "slow", (Edit("params.py", content="import time\ntime.sleep(60)\nX = 0\nY = 0\n"),)
    )
    Loop.from_dir(
        d, proposer=scripted(slow), tag="slow", overrides={"time_budget_s": 1, "timeout_s": 2}
    ).run()
    r = ledger_records(d)[-1]
    assert r.status is Status.TIMEOUT and "hard limit of 2 s" in r.reason


def test_identical_candidate_is_not_run_again(toy: Path) -> None:
    worse = set_x(-2.0, "worse")
    same = Candidate(
        "the same file written whole",
        (
            Edit(
                "params.py", content=(toy / "params.py").read_text().replace("X = 0.0", "X = -2.0")
            ),
        ),
    )
    Loop.from_dir(toy, proposer=scripted(worse, same), tag="dup").run()
    recs = ledger_records(toy)
    assert recs[1].status is Status.DISCARD
    assert recs[2].status is Status.DISCARD and "identical to experiment 2" in recs[2].reason
    assert recs[2].value == recs[1].value
    led = Ledger(toy / ".autoresearch" / "ledger.sqlite")
    assert led.run_count("dup") == 2  # the baseline and the first candidate only
    led.close()


def test_uncommitted_changes_stop_the_run(toy: Path) -> None:
    from autoresearch._errors import SessionError

    (toy / "params.py").write_text("X = 1.0\nY = 0.0\n")
    with pytest.raises(SessionError, match=r"params\.py"):
        Loop.from_dir(toy, proposer="knob").run(max_experiments=1)


def test_existing_tag_is_refused_and_resume_without_tag_takes_the_latest(toy: Path) -> None:
    from autoresearch._errors import SessionError

    Loop.from_dir(toy, proposer="knob", tag="a").run(max_experiments=2)
    with pytest.raises(SessionError, match="already exists"):
        Loop.from_dir(toy, proposer="knob", tag="a").run(max_experiments=1)
    summary = Loop.from_dir(toy, proposer="knob", resume=True).run(max_experiments=1)
    assert summary.tag == "a" and summary.experiments == 3


def test_folder_outside_git_gets_a_repository(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "plain")
    messages = []
    Loop.from_dir(d, proposer="knob", on_event=lambda e: messages.append(e.message)).run(
        max_experiments=1
    )
    assert (d / ".git").is_dir()
    assert any("created one" in m for m in messages)


def test_gate_failure_blocks_a_keep(toy: Path) -> None:
    from autoresearch.testing import FakeObjective

    obj = FakeObjective(gate=lambda run: "X = 0.0" in (run.workdir / "params.py").read_text())
    loop = Loop(
        toy, Loop.from_dir(toy).config, proposer=scripted(set_x(3.0)), objective=obj, tag="g"
    )
    loop.run()
    r = ledger_records(toy)[-1]
    assert r.status is Status.GATE_FAILED and git(toy, "rev-parse", "autoresearch/g") == git(
        toy, "rev-parse", "HEAD"
    )


def test_proposer_exception_is_recorded_and_the_loop_goes_on(toy: Path) -> None:
    class Flaky(Scripted):
        calls = 0

        def propose(self, context):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("model said nonsense")
            return super().propose(context)

    Loop.from_dir(toy, proposer=Flaky([set_x(3.0)]), tag="f").run()
    recs = ledger_records(toy)
    assert recs[1].status is Status.INVALID and "model said nonsense" in recs[1].reason
    assert recs[2].status is Status.KEEP


def test_second_driver_is_refused(toy: Path) -> None:
    from autoresearch._errors import SessionError
    from autoresearch._session import DriverLock

    lock = DriverLock(toy / ".autoresearch" / "driver.lock")
    lock.acquire()
    try:
        with pytest.raises(SessionError, match="another autoresearch driver"):
            Loop.from_dir(toy, proposer="knob").run(max_experiments=1)
    finally:
        lock.release()


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
    summary = Loop.from_dir(toy, proposer=scripted(*cands), tag="b").run(max_cost_usd=1.0)
    recs = ledger_records(toy)
    # 0.25 a proposal: a 4th still fits (1.00), a 5th would not.
    assert sum(r.cost_usd for r in recs) <= 1.0
    assert len(recs) == 1 + 4 and "max-cost-usd" in summary.stopped_because
    summary = Loop.from_dir(toy, proposer=scripted(*cands), tag="t").run(max_tokens=250)
    assert (
        sum(r.tokens for r in ledger_records(toy)) <= 250
        and "max-tokens" in summary.stopped_because
    )


def test_failed_proposals_record_their_spend_and_budget_exhaustion_stops(toy: Path) -> None:
    from autoresearch._errors import BudgetExhausted, ProposalError

    class Spender(Scripted):
        calls = 0

        def propose(self, context):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 1:
                raise ProposalError("answer did not parse", tokens=120, cost_usd=0.01)
            raise BudgetExhausted("the next request could exceed --max-tokens 200", tokens=0)

    summary = Loop.from_dir(toy, proposer=Spender([]), tag="spend").run(max_experiments=10)
    recs = ledger_records(toy)
    assert recs[1].status is Status.INVALID and recs[1].tokens == 120
    assert recs[1].cost_usd == pytest.approx(0.01)
    # The budget stop spent nothing, so it leaves no row of its own.
    assert "max-tokens 200" in summary.stopped_because and len(recs) == 2


def test_failed_proposals_never_end_the_run_but_proposer_bugs_do(
    toy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoresearch import _budget
    from autoresearch._errors import ProposalError

    monkeypatch.setattr(_budget, "PROPOSAL_BACKOFF_S", 0.01)

    class Unparseable(Scripted):
        def propose(self, context):  # type: ignore[no-untyped-def]
            raise ProposalError("the answer had no edit blocks")

    summary = Loop.from_dir(toy, proposer=Unparseable([]), tag="u").run(max_experiments=9)
    assert summary.counts["invalid"] == 8 and "max-experiments" in summary.stopped_because

    class Buggy(Scripted):
        def propose(self, context):  # type: ignore[no-untyped-def]
            raise TypeError("bad code in the proposer")

    summary = Loop.from_dir(toy, proposer=Buggy([]), tag="b").run(max_experiments=20)
    assert summary.counts["invalid"] == 5 and "in a row" in summary.stopped_because


@pytest.mark.parametrize("via", ["config", "option"])
def test_llm_key_variable_never_reaches_a_run(
    toy: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    monkeypatch.setenv("MY_LLM_CRED", "s3cr3t")
    cfg = toy / "autoresearch.toml"
    cfg.write_text(
        cfg.read_text().replace(
            'command = "python run.py"', 'command = "env > env.txt; python run.py"'
        )
        + ('\n[proposer.llm]\napi_key_env = "MY_LLM_CRED"\n' if via == "config" else "")
    )
    git(toy, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "env dump")
    option = {"api_key_env": "MY_LLM_CRED"} if via == "option" else {}
    loop = Loop.from_dir(toy, proposer=scripted(set_x(3.0)), tag="env", **option)
    seen = []
    real = loop.objective.measure

    def spy(run):  # type: ignore[no-untyped-def]
        seen.append((run.workdir / "env.txt").read_text())
        return real(run)

    loop.objective.measure = spy  # type: ignore[method-assign]
    loop.run()
    assert seen and all("s3cr3t" not in text and "MY_LLM_CRED" not in text for text in seen)


def test_holdout_is_recorded_but_never_in_the_context(toy: Path) -> None:
    from autoresearch import Measurement, MetricObjective

    class WithHoldout(MetricObjective):
        def measure(self, run):  # type: ignore[no-untyped-def]
            m = super().measure(run)
            return Measurement(m.primary, {"aux": 1.5}, {"secret_holdout": 987.654321})

    contexts = []

    class Spy(Scripted):
        def propose(self, context):  # type: ignore[no-untyped-def]
            contexts.append(repr(context))
            return super().propose(context)

    loop = Loop.from_dir(
        toy, proposer=Spy([set_x(-1.0), set_x(3.0)]), tag="h", objective=WithHoldout("score")
    )
    loop.run()
    recs = ledger_records(toy)
    assert all(r.holdout == {"secret_holdout": 987.654321} for r in recs)
    assert contexts and all("987.65" not in c and "secret_holdout" not in c for c in contexts)
    assert "aux" in contexts[-1]  # secondary figures are shown
