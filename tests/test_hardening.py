"""Failure paths found in review: none may kill the loop, touch the user's repository, or be
recorded as something else than what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import commit_all, git, ledger_records, pids_alive

from autoresearch import Candidate, Edit, LocalSandbox, Loop, MetricObjective, RunSpec, Status
from autoresearch._errors import SessionError
from autoresearch._ledger import Ledger
from autoresearch.testing import Scripted, make_toy_domain


def x_to(value: float) -> Candidate:
    return Candidate(f"X={value}", (Edit("params.py", search="X = 0.0", replace=f"X = {value}"),))


def test_unwritable_or_unencodable_edits_are_invalid(toy: Path) -> None:
    through_file = Candidate("path through a file", (Edit("params.py/x.py", content="x"),))
    surrogate = Candidate("lone surrogate", (Edit("params.py", content="X = '\ud800'\n"),))
    Loop.from_dir(
        toy,
        proposer=Scripted([through_file, surrogate, x_to(3.0)]),
        tag="w",
        overrides={"editable": ["**/*.py"]},
    ).run()
    recs = ledger_records(toy, "w")
    assert [r.status for r in recs] == [Status.KEEP, Status.INVALID, Status.INVALID, Status.KEEP]
    assert "cannot edit" in recs[1].reason and "not valid text" in recs[2].reason


def test_objective_and_gate_errors_do_not_kill_the_loop(toy: Path) -> None:
    class Buggy(MetricObjective):
        def measure(self, run):  # type: ignore[no-untyped-def]
            if "X = -1.0" in (run.workdir / "params.py").read_text():
                raise KeyError("oops")
            return super().measure(run)

        def gate(self, run):  # type: ignore[no-untyped-def]
            return json.loads((run.workdir / "missing.json").read_text())

    prop = Scripted([x_to(-1.0), x_to(3.0)])
    Loop.from_dir(toy, proposer=prop, tag="o", objective=Buggy("score")).run()
    recs = ledger_records(toy, "o")
    assert recs[1].status is Status.CRASH and "objective error: KeyError" in recs[1].reason
    assert recs[2].status is Status.GATE_FAILED and "FileNotFoundError" in recs[2].reason


def test_json_metric_file_that_is_not_text_is_missing(tmp_path: Path) -> None:
    from autoresearch import MetricMissing
    from autoresearch.testing import check_objective

    (tmp_path / "metrics.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(MetricMissing):
        check_objective(MetricObjective("score", "json"), tmp_path)
    (tmp_path / "metrics.json").unlink()
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(MetricMissing, match="not a regular file"):
        check_objective(MetricObjective("score", "json"), tmp_path)


def test_cancel_before_a_run_interrupts_it_without_starting_it(tmp_path: Path) -> None:
    sb = LocalSandbox()
    sb.cancel()
    t0 = time.monotonic()
    r = sb.run(RunSpec(tmp_path, "sleep 5", tmp_path / "run.log", 1, 10))
    assert r.failure is Status.INTERRUPTED and time.monotonic() - t0 < 2
    r = sb.run(RunSpec(tmp_path, "true", tmp_path / "run.log", 1, 10))
    assert r.ok  # the cancel was consumed


def test_git_variables_of_the_caller_never_reach_the_users_index(
    toy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_INDEX_FILE", str(toy / ".git" / "index"))
    monkeypatch.setenv("GIT_DIR", str(toy / ".git"))
    helper = Candidate(
        "add a helper",
        (
            Edit("helper.py", content="K = 1\n"),
            Edit("params.py", search="X = 0.0", replace="X = 3.0"),
        ),
    )
    Loop.from_dir(
        toy,
        proposer=Scripted([helper]),
        tag="g",
        overrides={"editable": ["*.py"], "fixed": ["run.py"]},
    ).run()
    monkeypatch.delenv("GIT_INDEX_FILE")
    monkeypatch.delenv("GIT_DIR")
    assert git(toy, "status", "--porcelain") == ""
    assert ledger_records(toy, "g")[-1].status is Status.KEEP


def test_engine_files_and_ignored_files_do_not_block_a_run(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True)
    cfg = d / "autoresearch.toml"
    cfg.write_text(
        cfg.read_text()
        .replace('editable = ["params.py"]', 'editable = ["**/*"]')
        .replace('fixed = ["run.py"]', 'fixed = ["run.py", "autoresearch.toml"]')
    )
    (d / ".gitignore").write_text(".venv/\n")
    commit_all(d, "wide globs")
    (d / ".venv").mkdir()
    (d / ".venv" / "junk.py").write_text("x = 1\n")
    Loop.from_dir(d, proposer=Scripted([x_to(3.0)]), tag="a").run()
    assert (d / "results.tsv").exists()
    Loop.from_dir(d, proposer=Scripted([]), resume=True).run()
    Loop.from_dir(d, proposer=Scripted([]), tag="b").run()


def test_repeat_runs_start_from_clean_files(tmp_path: Path) -> None:
    # The first run (seed 0) writes metrics.json; a repeat that writes nothing must not be
    # credited with the first run's file.
    cmd = (
        'if [ \\"$AUTORESEARCH_SEED\\" = 0 ]; then python -c '
        "\\\"import params, json; json.dump({'score': (params.X - 3) ** 2 + 1}, "
        "open('metrics.json', 'w'))\\\"; fi"
    )
    d = make_toy_domain(tmp_path / "t", git=True, command=cmd)
    cfg = d / "autoresearch.toml"
    cfg.write_text(cfg.read_text().replace('metric = "score"', 'metric = "score"\nsource = "json"'))
    commit_all(d, "json")
    Loop.from_dir(
        d,
        proposer=Scripted([x_to(3.0)]),
        tag="r",
        acceptance="repeated",
        overrides={"editable": ["*"], "fixed": ["run.py"]},
    ).run()
    recs = ledger_records(d, "r")
    assert recs[1].status is Status.DISCARD and "a repeat run failed" in recs[1].reason


def test_research_branch_checked_out_is_refused(toy: Path) -> None:
    Loop.from_dir(toy, proposer="knob", tag="c").run(max_experiments=1)
    git(toy, "checkout", "-q", "autoresearch/c")
    with pytest.raises(SessionError, match="checked out"):
        Loop.from_dir(toy, proposer="knob", resume=True).run(max_experiments=2)


def test_hand_commit_on_the_research_branch_is_never_thrown_away(toy: Path) -> None:
    Loop.from_dir(toy, proposer="knob", tag="h").run(max_experiments=1)
    git(toy, "checkout", "-q", "autoresearch/h")
    (toy / "notes.txt").write_text("mine\n")
    commit_all(toy, "my own work")
    mine = git(toy, "rev-parse", "HEAD").strip()
    git(toy, "checkout", "-q", "-")
    with pytest.raises(SessionError, match="never kept"):
        Loop.from_dir(toy, proposer="knob", resume=True).run(max_experiments=2)
    assert git(toy, "rev-parse", "autoresearch/h").strip() == mine


@pytest.mark.slow
def test_a_new_run_ends_processes_a_dead_driver_left(toy: Path, tmp_path: Path) -> None:
    sleep_s = f"{200 + uuid.uuid4().int % 10**6 / 10**6:.6f}"
    script = tmp_path / "s.jsonl"
    script.write_text(
        json.dumps(
            {
                "description": "slow",
                "edits": [
                    {
                        "path": "params.py",
                        "content": f"import os\nos.system('sleep {sleep_s}')\nX = 0\nY = 0\n",
                    }
                ],
            }
        )
    )
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoresearch.cli",
            "run",
            str(toy),
            "--proposer",
            "scripted",
            "--script",
            str(script),
            "--tag",
            "d",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not pids_alive(f"sleep {sleep_s}") and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert pids_alive(f"sleep {sleep_s}")
    messages: list[str] = []
    Loop.from_dir(
        toy, proposer="knob", tag="fresh", on_event=lambda e: messages.append(e.message)
    ).run(max_experiments=1)
    assert pids_alive(f"sleep {sleep_s}") == []
    assert any("stray process" in m for m in messages)


def test_knob_trial_of_a_recorded_row_keeps_its_value_on_resume(toy: Path) -> None:
    import optuna

    from autoresearch._config import load_config
    from autoresearch._types import ExperimentRecord
    from autoresearch.proposers._knob import Knob

    config, _ = load_config(toy)
    url = f"sqlite:///{toy.parent / 'k.sqlite'}"
    first = Knob(config.proposer.knobs, url, "s", "minimize")
    cand = first.propose(_context(toy))
    assert cand is not None
    # The driver "dies" after writing the row but before observe(): a new proposer restores.
    row = ExperimentRecord(
        2,
        "t",
        Status.DISCARD,
        "",
        cand.description,
        "",
        "knob",
        "p",
        "c",
        4.25,
        {},
        {},
        dict(cand.meta),
        0,
        0.0,
        0.0,
    )
    Knob(config.proposer.knobs, url, "s", "minimize").restore([row])
    trial = optuna.load_study(study_name="s", storage=url).trials[0]
    assert trial.state.name == "COMPLETE" and trial.value == 4.25


def _context(toy: Path):  # type: ignore[no-untyped-def]
    from autoresearch import Context

    files = {"params.py": (toy / "params.py").read_text()}
    return Context("", files, (), "score", "minimize", None, None, 1)


@pytest.mark.slow
def test_ctrl_c_during_baseline_exits_130(tmp_path: Path) -> None:
    sleep_s = f"{200 + uuid.uuid4().int % 10**6 / 10**6:.6f}"
    d = make_toy_domain(tmp_path / "t", git=True, command=f"sleep {sleep_s}; python run.py")
    cli = subprocess.Popen(
        [sys.executable, "-m", "autoresearch.cli", "baseline", str(d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not pids_alive(f"sleep {sleep_s}") and time.monotonic() < deadline:
        time.sleep(0.1)
    cli.send_signal(signal.SIGINT)
    out, _ = cli.communicate(timeout=30)
    assert cli.returncode == 130, out
    assert "Traceback" not in out and pids_alive(f"sleep {sleep_s}") == []
    led = Ledger(d / ".autoresearch" / "ledger.sqlite")
    tag = led.latest_tag()
    assert tag is not None
    row = led.tag(tag)
    assert row is not None and row["state"] == "interrupted"
    assert led.records(tag)[0].status is Status.INTERRUPTED
    led.close()
