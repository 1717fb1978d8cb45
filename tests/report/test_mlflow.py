"""MLflow tracking: one MLflow run per experiment, read back through MlflowClient; offline
by default (a sqlite store under .autoresearch/); a failing tracker never stops the loop."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import set_x
from typer.testing import CliRunner

from autoresearch import Candidate, Edit, Event, Loop
from autoresearch._layout import Layout
from autoresearch.testing import FakeSandbox, Scripted, make_toy_domain

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")


@pytest.mark.slow
def test_every_experiment_lands_in_mlflow(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    toy = make_toy_domain(tmp_path / "toy", git=True)
    back = Candidate("X to -4", (Edit("params.py", search="X = 3.0", replace="X = -4.0"),))
    script = [set_x(3.0, "X to 3"), back]
    Loop.from_dir(
        toy,
        proposer=Scripted(script),
        tag="ml",
        sandbox=FakeSandbox(),
        overrides={"tracking.mlflow": "local"},
    ).run(max_experiments=3)
    layout = Layout(toy)
    assert layout.mlflow_db.is_file()
    assert not (toy / "mlruns").exists() and not (Path.cwd() / "mlruns").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{layout.mlflow_db}")
    exp = client.get_experiment_by_name("toy/ml")
    assert exp is not None
    assert Path(exp.artifact_location.removeprefix("file://")) == layout.mlflow_artifacts
    runs = sorted(client.search_runs([exp.experiment_id]), key=lambda r: r.info.start_time)
    assert len(runs) == 3
    base, keep, discard = runs
    assert base.data.tags["status"] == "keep" and base.data.tags["kind"] == "baseline"
    assert keep.data.tags["status"] == "keep" and discard.data.tags["status"] == "discard"
    assert keep.data.params["description"] == "X to 3"
    assert keep.data.metrics["score"] == pytest.approx(2.0)
    assert discard.data.metrics["score"] == pytest.approx(51.0)
    assert keep.data.tags["parent"] == base.data.tags["commit"]
    assert discard.data.tags["parent"] == keep.data.tags["commit"]
    assert keep.data.tags["proposer"] == "scripted"
    assert [f.path for f in client.list_artifacts(keep.info.run_id)] == ["diff.patch", "run.log"]
    diff = Path(client.download_artifacts(keep.info.run_id, "diff.patch", str(tmp_path)))
    assert "+X = 3.0" in diff.read_text()
    log = Path(client.download_artifacts(keep.info.run_id, "run.log", str(tmp_path)))
    assert "score: 2.000000" in log.read_text()


@pytest.mark.slow
def test_knob_values_are_params_and_holdout_is_named(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from autoresearch import Measurement
    from autoresearch.testing import FakeObjective

    class Held(FakeObjective):
        def measure(self, run):  # type: ignore[no-untyped-def]
            m = super().measure(run)
            return Measurement(m.primary, {"speed": 3.0}, {"test_score": m.primary + 1})

    toy = make_toy_domain(tmp_path / "toy", git=True)
    Loop.from_dir(
        toy,
        proposer="knob",
        tag="k",
        sandbox=FakeSandbox(),
        objective=Held(),
        overrides={"tracking.mlflow": "local"},
    ).run(max_experiments=2)
    client = MlflowClient(tracking_uri=f"sqlite:///{Layout(toy).mlflow_db}")
    exp = client.get_experiment_by_name("toy/k")
    runs = sorted(client.search_runs([exp.experiment_id]), key=lambda r: r.info.start_time)
    knob = runs[1].data
    assert {"knob.x", "knob.y"} <= set(knob.params)
    assert knob.metrics["holdout.test_score"] == pytest.approx(knob.metrics["score"] + 1)
    assert knob.metrics["secondary.speed"] == 3.0


def test_a_tracking_failure_warns_once_and_the_loop_goes_on(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    events: list[Event] = []
    summary = Loop.from_dir(
        toy,
        proposer=Scripted([set_x(3.0), set_x(2.0)]),
        tag="f",
        sandbox=FakeSandbox(),
        on_event=events.append,
        overrides={"tracking.mlflow": "nosuchscheme://nowhere"},
    ).run(max_experiments=3)
    assert summary.experiments == 3
    warnings = [e.message for e in events if e.message.startswith("tracking:")]
    assert len(warnings) == 1 and "the run goes on without it" in warnings[0]


@pytest.mark.slow
def test_run_mlflow_flag_without_a_uri_uses_the_local_store(tmp_path: Path) -> None:
    from autoresearch.cli import app

    toy = make_toy_domain(tmp_path / "toy", git=True)
    out = CliRunner().invoke(
        app, ["run", str(toy), "--proposer", "knob", "--max-experiments", "2", "--mlflow"]
    )
    assert out.exit_code == 0, out.output
    assert Layout(toy).mlflow_db.is_file()
    assert "tracking:" not in out.output
