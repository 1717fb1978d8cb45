"""autoresearch.objectives.ml.ValBpb: reads only the fixed evaluator's summary block."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch._errors import MetricMissing
from autoresearch._types import RunResult
from autoresearch.objectives.ml import DEFAULT_SECONDARY, ValBpb
from autoresearch.testing import ObjectiveContract

EVAL_BLOCK = """loading checkpoint
---
val_bpb:          2.345678
training_seconds: 50.1
total_seconds:    58.0
peak_mem_mb:      1020.5
mfu_percent:      31.20
total_tokens_M:   0.4
num_steps:        120
num_params_M:     3.28
eval_seconds:     3.1
"""


def make_run(tmp_path: Path, command_log: str, eval_log: str | None) -> RunResult:
    log = tmp_path / "run.log"
    log.write_text(command_log)
    eval_path = None
    if eval_log is not None:
        eval_path = tmp_path / "eval.log"
        eval_path.write_text(eval_log)
    return RunResult(
        workdir=tmp_path,
        log_path=log,
        exit_code=0,
        wall_s=60.0,
        peak_memory_mb=1000.0,
        seed=0,
        eval_log_path=eval_path,
        eval_exit_code=0,
    )


def test_reads_the_evaluator_block_with_secondary_figures(tmp_path: Path) -> None:
    m = ValBpb().measure(make_run(tmp_path, "step 1 | loss 3.0\n", EVAL_BLOCK))
    assert m.primary == 2.345678
    assert set(m.secondary) == set(DEFAULT_SECONDARY)
    assert m.secondary["num_steps"] == 120 and m.secondary["mfu_percent"] == 31.2
    assert m.holdout == {}


def test_a_forged_line_in_the_training_log_is_ignored(tmp_path: Path) -> None:
    forged = "---\nval_bpb: 0.000100\n"
    assert ValBpb().measure(make_run(tmp_path, forged, EVAL_BLOCK)).primary == 2.345678
    with pytest.raises(MetricMissing, match="summary"):
        ValBpb().measure(make_run(tmp_path, forged, "evaluator crashed before its summary\n"))


def test_refuses_a_domain_without_an_evaluator(tmp_path: Path) -> None:
    run = make_run(tmp_path, EVAL_BLOCK, None)
    with pytest.raises(MetricMissing, match="eval_command"):
        ValBpb().measure(run)
    assert ValBpb(require_eval=False).measure(run).primary == 2.345678


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1.5"])
def test_impossible_values_are_missing(tmp_path: Path, value: str) -> None:
    block = EVAL_BLOCK.replace("2.345678", value)
    with pytest.raises(MetricMissing):
        ValBpb().measure(make_run(tmp_path, "", block))


def test_custom_metric_and_holdout_names(tmp_path: Path) -> None:
    block = "---\nbpb_web: 1.5\nbpb_code: 0.9\n"
    m = ValBpb(metric="bpb_web", secondary=(), holdout=["bpb_code"]).measure(
        make_run(tmp_path, "", block)
    )
    assert (m.primary, dict(m.secondary), dict(m.holdout)) == (1.5, {}, {"bpb_code": 0.9})


def test_loads_from_a_config() -> None:
    from autoresearch._config import ObjectiveConfig
    from autoresearch._objective import load_objective

    config = ObjectiveConfig.model_validate(
        {"class": "autoresearch.objectives.ml:ValBpb", "args": {"secondary": ["num_steps"]}}
    )
    objective = load_objective(config)
    assert isinstance(objective, ValBpb) and objective.secondary == ("num_steps",)


class TestValBpbContract(ObjectiveContract):
    log_text = "step 1 | loss 3.0\n---\nval_bpb: 0.000100\n"  # forged: only the eval counts
    eval_text = EVAL_BLOCK

    def make_objective(self) -> ValBpb:
        return ValBpb()
