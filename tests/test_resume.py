"""Resuming: a driver killed with SIGKILL mid-experiment resumes with no lost and no
duplicated rows; Ctrl-C records `interrupted` and exits cleanly; a resume picks the tag,
finishes what a dead driver left half done (rows, branch moves, processes) and never throws
away work it did not make. The decisions are tested with faked runs; the kills for real."""

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
from conftest import (
    commit_all,
    git,
    ledger_records,
    open_ledger,
    path_without_bwrap,
    pids_alive,
    set_x,
)

from autoresearch import Cause, Loop, RunSpec, SessionError, Status
from autoresearch.execution import LocalSandbox
from autoresearch.testing import FakeRun, FakeSandbox, Scripted, make_toy_domain, toy_run


def _script(domain: Path, sleep_s: str) -> Path:
    slow = {
        "description": "slow candidate",
        "edits": [
            {
                "path": "params.py",
                "content": f"import subprocess\nsubprocess.run(['sleep', '{sleep_s}'])\n"
                "X = 1.0\nY = 0.0\n",
            }
        ],
    }
    good = {
        "description": "X to 3",
        "edits": [{"path": "params.py", "search": "X = 0.0", "replace": "X = 3.0"}],
    }
    path = domain.parent / "script.jsonl"
    path.write_text(json.dumps(slow) + "\n" + json.dumps(good) + "\n")
    return path


def _start(domain: Path, *args: str, path: str | None = None) -> subprocess.Popen[str]:
    """The CLI driver (``path``: its PATH, e.g. one without bubblewrap)."""
    env = {**os.environ, "PATH": path} if path else None
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch.cli", "run", str(domain), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _wait_gone(pattern: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while pids_alive(pattern) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_alive(pattern) == [], f"{pattern!r} outlived its driver"


def _wait_for(pattern: str, timeout_s: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = pids_alive(pattern)
        if pids:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"no process matching {pattern!r} appeared")


@pytest.mark.slow
def test_resume_after_sigkill_of_the_driver(toy: Path, tmp_path: Path, isolation: str) -> None:
    path = path_without_bwrap(tmp_path) if isolation == "none" else None
    sleep_s = f"{200 + uuid.uuid4().int % 10**6 / 10**6:.6f}"
    script = _script(toy, sleep_s)
    driver = _start(toy, "--proposer", "scripted", "--script", str(script), "--tag", "r", path=path)
    try:
        _wait_for(f"sleep {sleep_s}")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    if isolation == "namespaces":
        # The run's pid namespace ends with its driver: nothing is left to find.
        _wait_gone(f"sleep {sleep_s}")
    else:
        assert pids_alive(f"sleep {sleep_s}"), "the dead driver's experiment should still run"
    assert [r.status for r in ledger_records(toy, "r")] == [Status.KEEP, Status.RUNNING]

    resumed = _start(toy, "--proposer", "scripted", "--script", str(script), "--resume", path=path)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    if isolation == "none":
        assert "ended 1 stray process" in out or "ended" in out
    assert pids_alive(f"sleep {sleep_s}") == []
    recs = ledger_records(toy, "r")
    assert [(r.id, r.status) for r in recs] == [
        (1, Status.KEEP),
        (2, Status.INTERRUPTED),
        (3, Status.KEEP),
    ]
    assert recs[2].description == "X to 3"
    rows = (toy / "results.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[5] for row in rows] == ["1", "2", "3"]
    assert list((toy / ".autoresearch" / "worktrees").iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_records_interrupted_and_exits_130(toy: Path) -> None:
    sleep_s = f"{200 + uuid.uuid4().int % 10**6 / 10**6:.6f}"
    script = _script(toy, sleep_s)
    driver = _start(toy, "--proposer", "scripted", "--script", str(script), "--tag", "c")
    try:
        _wait_for(f"sleep {sleep_s}")
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, out
    assert "--resume" in out
    assert pids_alive(f"sleep {sleep_s}") == []
    recs = ledger_records(toy, "c")
    assert [r.status for r in recs] == [Status.KEEP, Status.INTERRUPTED]
    assert list((toy / ".autoresearch" / "worktrees").iterdir()) == []
    # SIGTERM behaves the same, and the run can be resumed after either.
    resumed = _start(toy, "--proposer", "scripted", "--script", str(script), "--resume")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    assert [r.status for r in ledger_records(toy, "c")][-1] is Status.KEEP


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(toy: Path) -> None:
    sleep_s = f"{200 + uuid.uuid4().int % 10**6 / 10**6:.6f}"
    script = _script(toy, sleep_s)
    driver = _start(toy, "--proposer", "scripted", "--script", str(script), "--tag", "s")
    try:
        _wait_for(f"sleep {sleep_s}")
        driver.send_signal(signal.SIGTERM)
        out, _ = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, out
    assert pids_alive(f"sleep {sleep_s}") == []
    assert [r.status for r in ledger_records(toy, "s")] == [Status.KEEP, Status.INTERRUPTED]


# -- resume decisions (faked runs) ---------------------------------------------------------------


def scripted(*xs: float) -> Scripted:
    """Candidates setting X, each with its script line (a resumed Scripted goes on after it)."""
    from autoresearch import Candidate

    return Scripted(
        [Candidate(f"X={x}", set_x(x).edits, meta={"line": n}) for n, x in enumerate(xs, 1)]
    )


def test_an_existing_tag_is_refused_and_resume_without_a_tag_takes_the_latest(
    toy: Path,
) -> None:
    Loop.from_dir(toy, proposer="knob", tag="a", sandbox=FakeSandbox()).run(max_experiments=2)
    with pytest.raises(SessionError, match="already exists"):
        Loop.from_dir(toy, proposer="knob", tag="a", sandbox=FakeSandbox()).run(max_experiments=1)
    summary = Loop.from_dir(toy, proposer="knob", resume=True, sandbox=FakeSandbox()).run(
        max_experiments=1
    )
    assert summary.tag == "a" and summary.experiments == 3


def test_nothing_to_resume_is_a_session_error(toy: Path) -> None:
    with pytest.raises(SessionError, match="nothing to resume"):
        Loop.from_dir(toy, proposer="knob", resume=True, sandbox=FakeSandbox()).run()
    Loop.from_dir(toy, proposer="knob", tag="a", sandbox=FakeSandbox()).run(max_experiments=1)
    with pytest.raises(SessionError, match="under tag 'b'"):
        Loop.from_dir(toy, proposer="knob", tag="b", resume=True, sandbox=FakeSandbox()).run()


def test_an_interrupted_run_resumes_after_its_last_row_without_a_new_baseline(
    toy: Path,
) -> None:
    sandbox = FakeSandbox()

    def cancelled_on_the_second_candidate(spec: RunSpec) -> str | FakeRun:
        if len(sandbox.specs) == 3:
            sandbox.cancel()  # Ctrl-C while the run is going
        return toy_run(spec)

    sandbox.handler = cancelled_on_the_second_candidate
    first = Loop.from_dir(toy, proposer=scripted(-1.0, -2.0, 3.0), tag="i", sandbox=sandbox)
    summary = first.run()
    assert summary.interrupted and summary.stopped_because == "interrupted"
    recs = ledger_records(toy, "i")
    assert [r.status for r in recs] == [Status.KEEP, Status.DISCARD, Status.INTERRUPTED]
    assert recs[2].cause is Cause.INTERRUPTED
    with open_ledger(toy) as led:
        assert led.tag_info("i").state == "interrupted"  # type: ignore[union-attr]
    again = FakeSandbox()
    Loop.from_dir(toy, proposer=scripted(-1.0, -2.0, 3.0), resume=True, sandbox=again).run()
    recs = ledger_records(toy, "i")
    # The script goes on after its last recorded line; the baseline is not measured again.
    assert [r.description for r in recs] == ["baseline", "X=-1.0", "X=-2.0", "X=3.0"]
    assert recs[-1].status is Status.KEEP and len(again.specs) == 1


def test_resume_marks_a_dead_drivers_running_row_interrupted(toy: Path) -> None:
    Loop.from_dir(toy, proposer="knob", tag="d", sandbox=FakeSandbox()).run(max_experiments=2)
    with open_ledger(toy) as led:  # a driver that died mid-experiment left this row
        base = led.tag_info("d").base_commit  # type: ignore[union-attr]
        lost = led.begin("d", base, "lost in the crash", "knob")
    messages: list[str] = []
    Loop.from_dir(
        toy,
        proposer="knob",
        resume=True,
        sandbox=FakeSandbox(),
        on_event=lambda e: messages.append(e.message),
    ).run(max_experiments=1)
    with open_ledger(toy) as led:
        rec = led.record(lost)
    assert rec.status is Status.INTERRUPTED and rec.cause is Cause.INTERRUPTED
    assert any("marked 1 experiment(s) interrupted" in m for m in messages)


def test_resume_finishes_a_branch_move_the_dead_driver_did_not_make(toy: Path) -> None:
    Loop.from_dir(toy, proposer=scripted(3.0), tag="m", sandbox=FakeSandbox()).run()
    kept = ledger_records(toy, "m")[1]
    assert kept.status is Status.KEEP and kept.commit is not None
    base = git(toy, "rev-parse", "HEAD").strip()
    git(toy, "branch", "-f", "autoresearch/m", base)  # died between the row and the move
    messages: list[str] = []
    Loop.from_dir(
        toy,
        proposer=Scripted([]),
        resume=True,
        sandbox=FakeSandbox(),
        on_event=lambda e: messages.append(e.message),
    ).run()
    assert git(toy, "rev-parse", "autoresearch/m").strip() == kept.commit
    assert any("moved autoresearch/m to the last kept commit" in m for m in messages)
    git(toy, "branch", "-D", "autoresearch/m")
    Loop.from_dir(toy, proposer=Scripted([]), resume=True, sandbox=FakeSandbox()).run()
    assert git(toy, "rev-parse", "autoresearch/m").strip() == kept.commit


def test_hand_commit_on_the_research_branch_is_never_thrown_away(toy: Path) -> None:
    Loop.from_dir(toy, proposer="knob", tag="h", sandbox=FakeSandbox()).run(max_experiments=1)
    git(toy, "checkout", "-q", "autoresearch/h")
    (toy / "notes.txt").write_text("mine\n")
    commit_all(toy, "my own work")
    mine = git(toy, "rev-parse", "HEAD").strip()
    git(toy, "checkout", "-q", "-")
    with pytest.raises(SessionError, match="never kept"):
        Loop.from_dir(toy, proposer="knob", resume=True, sandbox=FakeSandbox()).run(
            max_experiments=2
        )
    assert git(toy, "rev-parse", "autoresearch/h").strip() == mine


def _points(domain: Path, tag: str) -> list[tuple[str | None, str | None]]:
    """The (X, Y) literals of params.py in each experiment's commit (the baseline's first)."""
    from autoresearch.proposers._knob import get_constant

    out = []
    for r in ledger_records(domain, tag):
        assert r.commit is not None, f"#{r.id} ({r.status}: {r.reason}) has no commit"
        text = git(domain, "show", f"{r.commit}:params.py")
        out.append((get_constant(text, "X"), get_constant(text, "Y")))
    return out


def test_a_resumed_knob_search_never_repeats_a_point(toy: Path) -> None:
    Loop.from_dir(toy, proposer="knob", tag="r", sandbox=FakeSandbox()).run(max_experiments=4)
    Loop.from_dir(toy, proposer="knob", resume=True, sandbox=FakeSandbox()).run(max_experiments=4)
    recs = ledger_records(toy, "r")
    assert len(recs) == 8  # the baseline and three candidates, four more after the resume
    assert [r for r in recs if r.status is Status.INVALID] == []
    assert all("no change" not in r.description for r in recs)
    points = _points(toy, "r")
    assert len(set(points)) == len(points), points
    # The ledger keeps each candidate's point, as written into params.py.
    recorded = [r.meta["knobs"] for r in recs[1:]]
    assert recorded == [{"x": float(x or ""), "y": float(y or "")} for x, y in points[1:]]


def test_a_fresh_knob_search_with_the_same_seed_is_reproducible(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        domain = make_toy_domain(tmp_path / name, git=True)
        Loop.from_dir(domain, proposer="knob", tag="s", sandbox=FakeSandbox()).run(
            max_experiments=3
        )
        runs.append(_points(domain, "s"))
    assert runs[0] == runs[1] and len(set(runs[0])) == 3  # the baseline and two candidates


# -- what a dead or interrupted driver leaves (real processes) -----------------------------------


@pytest.mark.slow
def test_a_new_run_ends_processes_a_dead_driver_left(toy: Path, tmp_path: Path) -> None:
    """Unisolated (in namespaces the runs die with their driver, test above), strays of a
    dead driver are ended by the next run."""
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
    driver = _start(
        toy,
        "--proposer",
        "scripted",
        "--script",
        str(script),
        "--tag",
        "d",
        path=path_without_bwrap(tmp_path),
    )
    try:
        _wait_for(f"sleep {sleep_s}")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert pids_alive(f"sleep {sleep_s}")
    messages: list[str] = []
    Loop.from_dir(
        toy,
        proposer="knob",
        tag="fresh",
        on_event=lambda e: messages.append(e.message),
        sandbox=LocalSandbox("none"),
    ).run(max_experiments=1)
    assert pids_alive(f"sleep {sleep_s}") == []
    assert any("stray process" in m for m in messages)


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
    try:
        _wait_for(f"sleep {sleep_s}")
        cli.send_signal(signal.SIGINT)
        out, _ = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 130, out
    assert "Traceback" not in out and pids_alive(f"sleep {sleep_s}") == []
    with open_ledger(d) as led:
        tag = led.latest_tag()
        assert tag is not None
        info = led.tag_info(tag)
        assert info is not None and info.state == "interrupted"
        assert led.records(tag)[0].status is Status.INTERRUPTED
