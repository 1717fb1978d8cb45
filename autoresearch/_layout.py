"""Every path the engine writes under a domain folder, in one place.

```
DIR/results.tsv                              regenerated from the ledger
DIR/.autoresearch/ledger.sqlite              experiments, runs, tags (and Optuna studies)
DIR/.autoresearch/driver.lock                one driver per folder
DIR/.autoresearch/worktrees/                 one git worktree per measured commit
DIR/.autoresearch/runs/<tag>/config.json     resolved config of each session (config-N.json)
DIR/.autoresearch/runs/<tag>/<id>/           an experiment: diff.patch and its runs' files
DIR/.autoresearch/runs/<tag>/calibration-<n>/  the incumbent's calibration runs
DIR/.autoresearch/local-model.log            a local model server's output
DIR/.autoresearch/agent-logs/                an agent proposer's transcripts
DIR/.autoresearch/mlflow.sqlite              the local MLflow store (`run --mlflow`)
DIR/.autoresearch/mlflow-artifacts/          its artifacts (each experiment's diff and log)
DIR/.autoresearch/runs/<tag>/confirm-<n>/    a `confirm`'s runs (baseline/, best/)
DIR/.autoresearch/runs/<tag>/progress.png    `report` (with report.md, report.html)
```

A run's files are named by why it ran and how many such runs the folder already holds
(``run.log``, ``run-2.log``, ``incumbent-run.log``, ...); a name is reserved by creating its
log exclusively, so two runs can never share one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE_DIRNAME = ".autoresearch"
RESULTS_NAME = "results.tsv"
CONFIG_NAME = "autoresearch.toml"
LEDGER_NAME = "ledger.sqlite"
LOCK_NAME = "driver.lock"
# Upper bound on runs of one kind in one folder: far above any policy's repeats.
_MAX_RUNS_PER_FOLDER = 10_000


@dataclass(frozen=True)
class RunFiles:
    """The files of one sandbox run, reserved in its folder."""

    log: Path
    eval_log: Path
    measurement: Path


@dataclass(frozen=True)
class Layout:
    """Paths of one domain folder's state."""

    domain_dir: Path

    @property
    def state_dir(self) -> Path:
        return self.domain_dir / STATE_DIRNAME

    @property
    def results_tsv(self) -> Path:
        return self.domain_dir / RESULTS_NAME

    @property
    def ledger(self) -> Path:
        return self.state_dir / LEDGER_NAME

    @property
    def lock(self) -> Path:
        return self.state_dir / LOCK_NAME

    @property
    def worktrees(self) -> Path:
        return self.state_dir / "worktrees"

    @property
    def local_model_log(self) -> Path:
        return self.state_dir / "local-model.log"

    @property
    def agent_logs(self) -> Path:
        return self.state_dir / "agent-logs"

    @property
    def mlflow_db(self) -> Path:
        return self.state_dir / "mlflow.sqlite"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.state_dir / "mlflow-artifacts"

    def tag_dir(self, tag: str) -> Path:
        return self.state_dir / "runs" / tag

    def experiment_dir(self, tag: str, experiment_id: int) -> Path:
        return self._made(self.tag_dir(tag) / str(experiment_id))

    def calibration_dir(self, tag: str, candidates_done: int) -> Path:
        return self._made(self.tag_dir(tag) / f"calibration-{candidates_done}")

    def new_config_json(self, tag: str) -> Path:
        """``config.json``, or ``config-N.json`` for a later session of the same tag."""
        folder = self._made(self.tag_dir(tag))
        path, n = folder / "config.json", 1
        while path.exists():
            n += 1
            path = folder / f"config-{n}.json"
        return path

    @staticmethod
    def _made(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def reserve_run_files(folder: Path, stem: str = "run") -> RunFiles:
    """The next free ``<stem>[-N]`` names in ``folder`` (``stem`` ends in "run": ``run``,
    ``incumbent-run``), reserved by creating the log file exclusively (``O_EXCL``): no two
    runs, whatever their kind, write the same files."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, _MAX_RUNS_PER_FOLDER):
        name = stem if n == 1 else f"{stem}-{n}"
        # "run" -> eval.log, measurement.json; "incumbent-run" -> incumbent-eval.log, ...
        suffix = name[len(stem) :]
        lead = stem.removesuffix("run")
        files = RunFiles(
            log=folder / f"{name}.log",
            eval_log=folder / f"{lead}eval{suffix}.log",
            measurement=folder / f"{lead}measurement{suffix}.json",
        )
        if _create_all(files.log, files.eval_log, files.measurement):
            return files
    raise RuntimeError(f"{folder}: more than {_MAX_RUNS_PER_FOLDER} runs named {stem!r}")


def _create_all(*paths: Path) -> bool:
    """Create every path as a new empty file, following no link; False (and none left
    created) if any already exists in any form: a file, a link, a FIFO planted there."""
    made: list[Path] = []
    for path in paths:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            for m in made:
                m.unlink()
            return False
        os.close(fd)
        made.append(path)
    return True


__all__ = ["CONFIG_NAME", "LEDGER_NAME", "RESULTS_NAME", "STATE_DIRNAME", "Layout", "RunFiles"]
