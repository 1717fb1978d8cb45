"""sim_speed: the shipped candidates through the real loop, and the harness's checks."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from autoresearch import Candidate, Edit, ExperimentRecord, Loop, Status
from autoresearch._git import init_repo
from autoresearch._ledger import Ledger

pytest.importorskip("gymnasium")

DOMAIN = Path(__file__).resolve().parents[2] / "domains" / "sim_speed"
# The shipped candidates: 0 changes trajectories, 1 is the real speed-up.
CANDIDATES = [json.loads(line) for line in (DOMAIN / "candidates.jsonl").read_text().splitlines()]


def _copy(tmp_path: Path) -> Path:
    d = tmp_path / "sim_speed"
    shutil.copytree(DOMAIN, d, ignore=shutil.ignore_patterns("__pycache__", ".autoresearch"))
    return d


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sim_speed_harness", DOMAIN / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _records(d: Path) -> list[ExperimentRecord]:
    led = Ledger(d / ".autoresearch" / "ledger.sqlite")
    try:
        return led.records("s")
    finally:
        led.close()


def _logs(record: ExperimentRecord) -> str:
    """Every log of an experiment's runs (its gate's too)."""
    assert record.log_path is not None
    return "".join(p.read_text() for p in sorted(Path(record.log_path).parent.glob("*.log")))


def _run(d: Path, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "harness.py", mode],
        cwd=d,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )


def _nested() -> str:
    """The engine's start of a nested sandbox, as an evaluator's sandbox sets it."""
    from autoresearch.execution._bwrap import isolated_call_prefix

    return json.dumps(isolated_call_prefix((), False))


# -- the harness ----------------------------------------------------------------------------


def test_the_reference_simulator_is_a_frozen_copy_of_the_shipped_sim() -> None:
    assert (DOMAIN / "reference_sim.py").read_bytes() == (DOMAIN / "sim.py").read_bytes()


def test_every_run_draws_episodes_no_file_holds() -> None:
    h = _harness()
    a, b = h.fresh_episodes(4), h.fresh_episodes(4)
    assert len(a) == 4 and all(len(e["actions"]) == h.STEPS for e in a)
    assert {e["seed"] for e in a}.isdisjoint({e["seed"] for e in b})
    assert not {e["seed"] for e in a} & set(h.FIXED_SEEDS)
    assert [e["actions"] for e in a] != [e["actions"] for e in b]


def test_the_command_compiles_sim_and_runs_none_of_it(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    (d / "sim.py").write_text("open('ran.txt', 'w').write('x')\n")
    ok = _run(d, "check")
    assert ok.returncode == 0, ok.stderr
    assert not (d / "ran.txt").exists()
    (d / "sim.py").write_text("def f(:\n")
    bad = _run(d, "check")
    assert bad.returncode == 1 and "does not compile" in bad.stderr


def test_a_difference_names_the_episode_and_step() -> None:
    h = _harness()
    want = [["E 5 1 2", "1 2 0 0 0", "3 4 0 0 0"]]
    got = h.Played([["E 5 1 2", "1 2 0 0 0", "3 5 0 0 0"]], False, 0, 1.0, 1.0)
    why = h.first_difference(got, want, "benchmark")
    assert "episode 1 of 1 (seed 5)" in why and "at step 2" in why
    assert h.first_difference(h.Played(want, False, 0, 1.0, 1.0), want, "x") is None
    assert "before its first episode" in h.first_difference(
        h.Played(want, False, 1, 1, 1), want, "x"
    )


@pytest.mark.slow
def test_the_reference_is_the_unmodified_sims(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    shipped = json.loads((d / "reference.json").read_text())
    subprocess.run(
        [sys.executable, "harness.py", "regenerate"], cwd=d, check=True, capture_output=True
    )
    assert json.loads((d / "reference.json").read_text()) == shipped
    gate = _run(d, "gate", SIM_GATE_EPISODES="2")
    assert gate.returncode == 0, gate.stderr
    assert "2 fresh episodes match the reference simulator, 12 fixed ones" in gate.stdout
    assert "check_env passed" in gate.stdout


@pytest.mark.slow
def test_the_bench_compares_fresh_episodes_with_the_reference(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    source = (d / "sim.py").read_text()
    assert "        reward -= int(obs[2])\n" in source
    # Every step's reward one higher: every episode differs from its first step on.
    (d / "sim.py").write_text(source.replace("reward -= int(obs[2])", "reward -= int(obs[2]) - 1"))
    wrong = _run(d, "bench", SIM_BENCH_EPISODES="2")
    assert wrong.returncode == 0, wrong.stderr
    assert "trajectory_ok: 0" in wrong.stdout
    assert "episode 1 of 2" in wrong.stdout and "reference simulator's at step 1" in wrong.stdout
    gate = _run(d, "gate", SIM_GATE_EPISODES="2")
    assert gate.returncode == 1 and "fresh episodes" in gate.stderr


@pytest.mark.slow
def test_a_plain_childs_leftover_processes_are_timed(tmp_path: Path) -> None:
    # Work done by a process the simulator forked, detached and left running is its CPU
    # time too: the helper burns 1 CPU second before the simulator goes on, then lives on.
    d = _copy(tmp_path)
    helper = (
        "\nimport os as _os, time as _time\n"
        "_r, _w = _os.pipe()\n"
        "if _os.fork() == 0:\n"
        "    _os.setsid()\n"
        "    while _time.process_time() < 1.0:\n"
        "        pass\n"
        "    _os.write(_w, b'x')\n"
        "    _time.sleep(600)\n"
        "_os.read(_r, 1)\n"
    )
    (d / "sim.py").write_text((d / "sim.py").read_text() + helper)
    out = _run(d, "bench", SIM_BENCH_EPISODES="1")
    assert out.returncode == 0, out.stderr
    values = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    assert values["trajectory_ok"] == "1"
    assert float(values["cpu_s"]) >= 1.0, values


@pytest.mark.slow
@pytest.mark.usefixtures("namespaces")
def test_in_the_nested_sandbox_a_simulator_may_start_no_process(tmp_path: Path) -> None:
    # Inside the namespace a process nobody waits for would take its CPU time with it:
    # the runner (pid 1 there) refuses a simulator that started one.
    d = _copy(tmp_path)
    fork = "\nimport os as _os\nif _os.fork() == 0:\n    _os._exit(0)\n_os.wait()\n"
    (d / "sim.py").write_text((d / "sim.py").read_text() + fork)
    out = _run(d, "bench", SIM_BENCH_EPISODES="1", AUTORESEARCH_ISOLATED_CALL_SANDBOX=_nested())
    assert out.returncode == 1 and "started a thread or a process" in out.stderr
    (d / "sim.py").write_text((DOMAIN / "sim.py").read_text())
    ok = _run(d, "bench", SIM_BENCH_EPISODES="1", AUTORESEARCH_ISOLATED_CALL_SANDBOX=_nested())
    assert ok.returncode == 0, ok.stderr
    assert "trajectory_ok: 1" in ok.stdout


# -- the loop -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_shipped_candidates_show_the_pattern(tmp_path: Path) -> None:
    # Changes trajectories (faster): refused on the first timed run whose fresh episodes
    # show it (trajectory_ok 0: its first run -> crash, a repeat -> discard; the gate, had
    # every run missed it); a >3x algorithmic speed-up -> keep; a comment -> not kept
    # under the paired policy; edits the reference -> invalid.
    d = _copy(tmp_path)
    init_repo(d)
    summary = Loop.from_dir(d, preset="quick", tag="s").run(max_experiments=5)
    recs = _records(d)
    got = [(r.status, r.reason) for r in recs]
    assert [r.status for r in recs[2:]] == [Status.KEEP, Status.DISCARD, Status.INVALID], got
    assert recs[0].status is Status.KEEP, got
    assert recs[1].status in (Status.CRASH, Status.DISCARD, Status.GATE_FAILED), got
    assert "trajectory_ok is 0" in recs[1].reason or "fresh episodes" in _logs(recs[1]), got
    assert "reference.json" in recs[4].reason
    assert summary.best_value is not None


@pytest.mark.slow
def test_a_faster_candidate_that_changes_one_fixed_trajectory_is_gate_failed(
    tmp_path: Path,
) -> None:
    # The real speed-up, but wrong on one of reference.json's 12 fixed episodes (seed 7):
    # every timed run's fresh episodes are right, so it is measured and wins; the gate's
    # fixed hashes stop it.
    d = _copy(tmp_path)
    cfg = (d / "autoresearch.toml").read_text()
    (d / "autoresearch.toml").write_text(
        cfg.replace('policy = "paired"\nrepeats = 6\nmin_gain = 0.02', 'policy = "greedy"')
    )
    init_repo(d)
    fast = CANDIDATES[1]["edits"][0]["content"]
    marker = "        super().reset(seed=seed)\n"
    assert marker in fast
    wrong = fast.replace(marker, marker + "        self.wrong_seed = seed == 7\n")
    wrong = wrong.replace(
        "        return obs, reward, terminated, truncated, {}",
        "        if self.wrong_seed:\n            reward += 1\n"
        "        return obs, reward, terminated, truncated, {}",
    )
    assert wrong.count("self.wrong_seed") == 2
    from autoresearch.testing import Scripted

    candidate = Candidate("faster, one trajectory off", (Edit("sim.py", content=wrong),))
    Loop.from_dir(d, proposer=Scripted([candidate]), preset="quick", tag="s").run(max_experiments=2)
    recs = _records(d)
    assert [r.status for r in recs] == [Status.KEEP, Status.GATE_FAILED], [
        (r.status, r.reason) for r in recs
    ]
    assert "hash differs from reference.json for seed(s) 7 of 12" in _logs(recs[1])
