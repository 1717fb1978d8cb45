"""Metric sources and the Objective contract, checked with autoresearch.testing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoresearch import MetricMissing, MetricObjective
from autoresearch._objective import parse_metric_lines, parse_summary
from autoresearch.testing import FakeObjective, ObjectiveContract, check_objective


def test_parse_summary_reads_the_last_block() -> None:
    text = "---\nval_bpb: 9\n---\nval_bpb:          0.997900\npeak_vram_mb: 45060.2\nnote: hi\n"
    assert parse_summary(text) == {"val_bpb": 0.9979, "peak_vram_mb": 45060.2}
    assert parse_summary("val_bpb: 1.0\n") == {}


def test_parse_metric_lines() -> None:
    text = "METRIC parse_us=12.5\nnoise METRIC x=1\nMETRIC allocs=3e2\nMETRIC parse_us=11\n"
    assert parse_metric_lines(text) == {"parse_us": 11.0, "allocs": 300.0}


def test_metric_objective_summary(tmp_path: Path) -> None:
    obj = MetricObjective("score", secondary=["mem"], holdout=["hold"])
    m = check_objective(obj, tmp_path, "---\nscore: 2.5\nmem: 10\nhold: 3\n")
    assert m.primary == 2.5 and m.secondary == {"mem": 10.0} and m.holdout == {"hold": 3.0}


def test_metric_objective_prefers_the_eval_log(tmp_path: Path) -> None:
    obj = MetricObjective("score")
    m = check_objective(obj, tmp_path, "---\nscore: 0.001\n", eval_text="---\nscore: 4\n")
    assert m.primary == 4.0


def test_metric_objective_json(tmp_path: Path) -> None:
    (tmp_path / "out.json").write_text(json.dumps({"acc": 0.5, "n": 3, "label": "x"}))
    m = check_objective(MetricObjective("acc", "json", "out.json", secondary=["n"]), tmp_path)
    assert m.primary == 0.5 and m.secondary == {"n": 3.0}


def test_nan_metric_is_missing(tmp_path: Path) -> None:
    with pytest.raises(MetricMissing, match="nan"):
        check_objective(MetricObjective("score"), tmp_path, "---\nscore: nan\n")


def test_check_objective_catches_a_broken_objective(tmp_path: Path) -> None:
    class Raises(FakeObjective):
        def measure(self, run):  # type: ignore[no-untyped-def]
            if not run.log_text():
                raise KeyError("score")
            return super().measure(run)

    with pytest.raises(AssertionError, match="must raise MetricMissing"):
        check_objective(Raises(), tmp_path, "score: 1\n")

    class Writes(FakeObjective):
        def measure(self, run):  # type: ignore[no-untyped-def]
            (run.workdir / "junk.txt").write_text("x")
            return super().measure(run)

    with pytest.raises(AssertionError, match="changed files"):
        check_objective(Writes(), tmp_path, "score: 1\n")


# -- the Objective contract, for the built-in objectives ------------------------------------------


class TestMetricObjectiveSummaryContract(ObjectiveContract):
    log_text = "training...\n---\nscore: 2.5\nmem: 10\nhold: 3\n"

    def make_objective(self) -> MetricObjective:
        return MetricObjective("score", secondary=["mem"], holdout=["hold"])


class TestMetricObjectiveEvalContract(ObjectiveContract):
    log_text = "---\nscore: 0.001\n"  # the command's own output is not trusted
    eval_text = "---\nscore: 4\n"

    def make_objective(self) -> MetricObjective:
        return MetricObjective("score")

    def test_the_eval_output_is_the_one_read(self, tmp_path: Path) -> None:
        assert self.make_objective().measure(self._run(tmp_path)).primary == 4.0


class TestMetricObjectiveMetricLinesContract(ObjectiveContract):
    log_text = "METRIC parse_us=12.5\nMETRIC allocs=3e2\n"

    def make_objective(self) -> MetricObjective:
        return MetricObjective("parse_us", "metric-lines", secondary=["allocs"])


class TestMetricObjectiveJsonContract(ObjectiveContract):
    def make_objective(self) -> MetricObjective:
        return MetricObjective("acc", "json", "out.json", secondary=["n"])

    def write_run_files(self, workdir: Path) -> None:
        (workdir / "out.json").write_text(json.dumps({"acc": 0.5, "n": 3}))


class TestFakeObjectiveContract(ObjectiveContract):
    log_text = "---\nscore: 1.5\n"

    def make_objective(self) -> FakeObjective:
        return FakeObjective()


def test_json_metric_file_that_is_not_text_is_missing(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(MetricMissing):
        check_objective(MetricObjective("score", "json"), tmp_path)
    (tmp_path / "metrics.json").unlink()
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(MetricMissing, match="not a regular file"):
        check_objective(MetricObjective("score", "json"), tmp_path)
