"""The loop end to end on a toy domain: keep/discard, records, git hygiene, what a proposer
is shown, and failures (crashes, missing metrics, timeouts, objective and gate errors) that
are recorded as what happened and never stop the loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git, ledger_records, set_x

from autoresearch import Candidate, Cause, Edit, Loop, MetricObjective, Status
from autoresearch.testing import FakeObjective, FakeSandbox, Scripted, make_toy_domain


def scripted(*cands: Candidate) -> Scripted:
    return Scripted(list(cands))


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
        d,
        proposer=scripted(slow),
        tag="slow",
        overrides={"time_budget_s": 0.2, "timeout_s": 0.5},
    ).run()
    r = ledger_records(d)[-1]
    assert r.status is Status.TIMEOUT and "hard limit of 0.5 s" in r.reason
    assert r.cause is Cause.RUN_FAILED


def test_gate_failure_blocks_a_keep(toy: Path) -> None:
    obj = FakeObjective(gate=lambda run: "X = 0.0" in (run.workdir / "params.py").read_text())
    loop = Loop.from_dir(
        toy, proposer=scripted(set_x(3.0)), objective=obj, tag="g", sandbox=FakeSandbox()
    )
    loop.run()
    r = ledger_records(toy)[-1]
    assert r.status is Status.GATE_FAILED and r.cause is Cause.GATE
    assert git(toy, "rev-parse", "autoresearch/g") == git(toy, "rev-parse", "HEAD")


def test_objective_and_gate_errors_do_not_kill_the_loop(toy: Path) -> None:
    class Buggy(MetricObjective):
        def measure(self, run):  # type: ignore[no-untyped-def]
            if "X = -1.0" in (run.workdir / "params.py").read_text():
                raise KeyError("oops")
            return super().measure(run)

        def gate(self, run):  # type: ignore[no-untyped-def]
            return json.loads((run.workdir / "missing.json").read_text())

    prop = Scripted([set_x(-1.0), set_x(3.0)])
    Loop.from_dir(
        toy, proposer=prop, tag="o", objective=Buggy("score"), sandbox=FakeSandbox()
    ).run()
    recs = ledger_records(toy, "o")
    assert recs[1].status is Status.CRASH and "objective error: KeyError" in recs[1].reason
    assert recs[2].status is Status.GATE_FAILED and "FileNotFoundError" in recs[2].reason
    assert recs[1].cause is recs[2].cause is Cause.OBJECTIVE_ERROR


def test_proposer_exception_is_recorded_and_the_loop_goes_on(toy: Path) -> None:
    class Flaky(Scripted):
        calls = 0

        def propose(self, context):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("model said nonsense")
            return super().propose(context)

    Loop.from_dir(toy, proposer=Flaky([set_x(3.0)]), tag="f", sandbox=FakeSandbox()).run()
    recs = ledger_records(toy)
    assert recs[1].status is Status.INVALID and "model said nonsense" in recs[1].reason
    assert recs[1].cause is Cause.PROPOSER_BUG
    assert recs[2].status is Status.KEEP


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
    git(toy, "commit", "-qam", "env dump")
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
    from autoresearch import Measurement

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
        toy,
        proposer=Spy([set_x(-1.0), set_x(3.0)]),
        tag="h",
        objective=WithHoldout("score"),
        sandbox=FakeSandbox(),
    )
    loop.run()
    recs = ledger_records(toy)
    assert all(r.holdout == {"secret_holdout": 987.654321} for r in recs)
    assert contexts and all("987.65" not in c and "secret_holdout" not in c for c in contexts)
    assert "aux" in contexts[-1]  # secondary figures are shown
