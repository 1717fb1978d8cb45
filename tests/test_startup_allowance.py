"""The start-up allowance: a command's hard limit is allowance + budget + grace, and the
budget starts when the command signals (it creates the file in $AUTORESEARCH_BUDGET_FILE).
A slow start then cannot kill a run that keeps to its budget; one that never signals gets no
more than the allowance; one that signals and then overruns is killed at budget + grace.

Small numbers: budget 1 s + grace 0.5 s, allowance 4 s (hard limit 5.5 s). Statuses only."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ledger_records

from autoresearch import Candidate, Edit, Loop, Status
from autoresearch.testing import Scripted, make_toy_domain

pytestmark = pytest.mark.slow

BUDGET_S, GRACE_S, ALLOWANCE_S = 1.0, 0.5, 4.0
# Longer than budget + grace, well inside the allowance.
SLOW_START_S = 2.5
SIGNAL = "open(os.environ['AUTORESEARCH_BUDGET_FILE'], 'w').close()\n"


def candidate(desc: str, body: str, x: float) -> Candidate:
    text = f"import os, time\n{body}X = {x}\nY = 1.0\n"
    return Candidate(desc, (Edit("params.py", content=text),))


def test_the_budget_starts_when_the_command_signals(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, time_budget_s=BUDGET_S)
    cands = [
        candidate("slow start, then signals", f"time.sleep({SLOW_START_S})\n{SIGNAL}", 3.0),
        candidate("slow start, never signals", f"time.sleep({SLOW_START_S})\n", 2.0),
        candidate("never signals, never ends", "time.sleep(60)\n", 1.0),
        candidate("signals, then overruns", f"{SIGNAL}time.sleep(60)\n", 0.0),
    ]
    Loop.from_dir(
        d,
        proposer=Scripted(cands),
        tag="s",
        overrides={"startup_allowance_s": ALLOWANCE_S, "grace_s": GRACE_S},
    ).run()
    recs = {r.description: r for r in ledger_records(d, "s")[1:]}
    slow_signalled = recs["slow start, then signals"]
    assert slow_signalled.status is Status.KEEP, slow_signalled.reason
    assert slow_signalled.value == pytest.approx(1.0)
    slow_silent = recs["slow start, never signals"]
    assert slow_silent.status is Status.DISCARD, slow_silent.reason  # measured, not killed
    endless = recs["never signals, never ends"]
    hard_s = ALLOWANCE_S + BUDGET_S + GRACE_S
    assert endless.status is Status.TIMEOUT and f"hard limit of {hard_s:g} s" in endless.reason
    overrun = recs["signals, then overruns"]
    assert overrun.status is Status.TIMEOUT and "ran past budget + grace" in overrun.reason


def test_a_ceiling_caps_the_allowance(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, time_budget_s=BUDGET_S)
    slow = candidate("slow start, then signals", f"time.sleep({SLOW_START_S})\n{SIGNAL}", 3.0)
    Loop.from_dir(
        d,
        proposer=Scripted([slow]),
        tag="c",
        overrides={"startup_allowance_s": ALLOWANCE_S, "grace_s": GRACE_S, "timeout_s": 1.5},
    ).run()
    r = ledger_records(d, "c")[1]
    assert r.status is Status.TIMEOUT and "hard limit of 1.5 s" in r.reason
