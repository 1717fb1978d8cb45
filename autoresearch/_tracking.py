"""Experiment trackers: every recorded experiment also logged to MLflow (``[tracking]
mlflow``, ``run --mlflow [URI]``).

One MLflow run per experiment, under an MLflow experiment named ``<domain>/<tag>``: params
(knob values, else the description), metrics (the primary under its own name,
``secondary.<name>``, ``holdout.<name>``, each run's primary as steps of ``<metric>.runs``),
tags (status, commit, parent, proposer, ...), and the diff and run log as artifacts.

Offline by default: ``"local"`` is a sqlite store under ``DIR/.autoresearch/`` (never in a
worktree or the repository), its artifacts beside it. mlflow is imported only when a tracker
is built (``import autoresearch`` stays light). A tracking failure never stops the loop: the
first one is told once (a warning) and the tracker stops trying.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoresearch._config import ResearchConfig
from autoresearch._errors import ConfigError
from autoresearch._layout import Layout
from autoresearch._ledger import Ledger
from autoresearch._types import Event, ExperimentRecord

LOCAL = "local"
# MLflow caps a param's value; descriptions and knob values are cut to it.
PARAM_CHARS = 500
# Characters of a run log sent as an artifact (its end: where a failure shows).
LOG_ARTIFACT_CHARS = 200_000


def check_tracking(config: ResearchConfig) -> None:
    """Before anything is created: a tracker that is asked for can be built."""
    if config.tracking.mlflow and importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            "tracking.mlflow is set (or --mlflow given) but mlflow is not installed: "
            "pip install 'autoresearch[mlflow]'"
        )


def tracking_uri(value: str, layout: Layout) -> str:
    """The tracking URI of a ``tracking.mlflow`` value (``"local"``: the folder's store)."""
    if value == LOCAL:
        return f"sqlite:///{layout.mlflow_db}"
    return value


class MlflowTracker:
    """Logs each finished experiment of one session as an MLflow run."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        ledger: Ledger,
        metric: str,
        artifact_dir: Path | None,
        warn: Callable[[str], None],
    ) -> None:
        self.uri = uri
        self.experiment = experiment
        self.ledger = ledger
        self.metric = metric
        self.artifact_dir = artifact_dir
        self._warn = warn
        self._client: Any = None
        self._experiment_id: str | None = None
        self.failed = False

    def _connect(self) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.uri)
        found = self._client.get_experiment_by_name(self.experiment)
        if found is not None:
            self._experiment_id = found.experiment_id
            return
        location = self.artifact_dir.resolve().as_uri() if self.artifact_dir else None
        if self.artifact_dir:
            self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self._experiment_id = self._client.create_experiment(
            self.experiment, artifact_location=location
        )

    def experiment_done(self, record: ExperimentRecord) -> None:
        """Log ``record``; never raises (the first failure is told once, then no more)."""
        if self.failed:
            return
        try:
            if self._client is None:
                self._connect()
            self._log(record)
        except Exception as e:
            self.failed = True
            self._warn(
                f"tracking: MLflow logging failed ({type(e).__name__}: {e}); the run goes on "
                f"without it"
            )

    def _log(self, record: ExperimentRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = self._client
        tags = {
            "status": record.status.value,
            "commit": record.commit or "",
            "parent": record.parent_commit,
            "proposer": record.proposer,
            "kind": record.kind.value,
            "autoresearch.tag": record.tag,
            "autoresearch.experiment": str(record.id),
            "mlflow.runName": f"{record.id}: {record.description}"[:250],
        }
        if record.cause is not None:
            tags["cause"] = record.cause.value
        if record.reason:
            tags["reason"] = record.reason[:PARAM_CHARS]
        run = client.create_run(self._experiment_id, start_time=_ms(record.started_at))
        run_id = run.info.run_id
        params = {"description": record.description}
        knobs = record.meta.get("knobs") if isinstance(record.meta, dict) else None
        if isinstance(knobs, dict):
            params.update({_key(f"knob.{k}"): str(v) for k, v in knobs.items()})
        if record.hypothesis:
            params["hypothesis"] = record.hypothesis
        stamp = _ms(record.finished_at)
        metrics = []
        if record.value is not None:
            metrics.append(Metric(self.metric, record.value, stamp, 0))
        for name, value in record.secondary.items():
            metrics.append(Metric(_key(f"secondary.{name}"), float(value), stamp, 0))
        for name, value in record.holdout.items():
            metrics.append(Metric(_key(f"holdout.{name}"), float(value), stamp, 0))
        runs = self.ledger.runs(record.tag, record.id)
        step = 0
        for r in runs:
            if r.value is not None and r.kind != "incumbent":
                metrics.append(Metric(f"{self.metric}.runs", r.value, _ms(r.started_at), step))
                step += 1
        metrics.append(Metric("runs", float(len(runs)), stamp, 0))
        if record.cost_usd or record.tokens:
            metrics.append(Metric("tokens", float(record.tokens), stamp, 0))
            metrics.append(Metric("cost_usd", float(record.cost_usd), stamp, 0))
        client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, v[:PARAM_CHARS]) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        diff = self.ledger.diff(record.id)
        if diff:
            client.log_text(run_id, diff, "diff.patch")
        if record.log_path:
            text = _tail(Path(record.log_path), LOG_ARTIFACT_CHARS)
            if text is not None:
                client.log_text(run_id, text, "run.log")
        status = "FINISHED" if record.value is not None else "FAILED"
        client.set_terminated(run_id, status, end_time=_ms(record.finished_at))


def _key(name: str) -> str:
    """A name MLflow accepts as a param or metric key (letters, digits, ``_-. /``, at most
    250 characters): a proposer's odd knob name must not silence tracking for the night."""
    return re.sub(r"[^\w\-. /]", "_", name)[:250]


def _ms(t: float | None) -> int:
    """Milliseconds since the epoch, as MLflow counts them (now, for a missing time)."""
    return int((t if t is not None else time.time()) * 1000)


def _tail(path: Path, limit: int) -> str | None:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def make_tracker(
    config: ResearchConfig,
    domain_dir: Path,
    tag: str,
    ledger: Ledger,
    metric: str,
    emit: Callable[[Event], None],
) -> MlflowTracker | None:
    """The session's tracker, or None when none is configured."""
    value = config.tracking.mlflow
    if not value:
        return None
    layout = Layout(domain_dir)
    name = f"{config.name or domain_dir.name}/{tag}"
    artifacts = layout.mlflow_artifacts if value == LOCAL else None

    def warn(message: str) -> None:
        emit(Event("message", message=message))

    return MlflowTracker(tracking_uri(value, layout), name, ledger, metric, artifacts, warn)


__all__ = ["LOCAL", "MlflowTracker", "check_tracking", "make_tracker", "tracking_uri"]
