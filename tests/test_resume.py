"""A driver killed with SIGKILL mid-experiment resumes with no lost and no duplicated rows;
Ctrl-C records `interrupted` and exits cleanly."""

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
from conftest import ledger_records, pids_alive

from autoresearch import Status

pytestmark = pytest.mark.slow


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


def _start(domain: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autoresearch.cli", "run", str(domain), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(pattern: str, timeout_s: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = pids_alive(pattern)
        if pids:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"no process matching {pattern!r} appeared")


def test_resume_after_sigkill_of_the_driver(toy: Path) -> None:
    sleep_s = f"{200 + uuid.uuid4().int % 10**6 / 10**6:.6f}"
    script = _script(toy, sleep_s)
    driver = _start(toy, "--proposer", "scripted", "--script", str(script), "--tag", "r")
    try:
        _wait_for(f"sleep {sleep_s}")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert pids_alive(f"sleep {sleep_s}"), "the dead driver's experiment should still be running"
    assert [r.status for r in ledger_records(toy, "r")] == [Status.KEEP, Status.RUNNING]

    resumed = _start(toy, "--proposer", "scripted", "--script", str(script), "--resume")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
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
