"""What a sandbox is asked to run (RunSpec) and the contract every sandbox keeps (Sandbox)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch._types import RunResult


@dataclass(frozen=True)
class RunSpec:
    """One sandbox run: ``command`` then, if it succeeded, the fixed ``eval_command``.

    ``timeout_s`` is the command's hard limit (start-up allowance + budget + grace). When
    ``after_signal_s`` is set, the command may signal that budgeted work began by creating the
    file named in ``AUTORESEARCH_BUDGET_FILE``; the deadline then becomes the signal's time
    plus ``after_signal_s`` (budget + grace), if that is sooner. Load at start-up cannot kill a
    command that signals, and one that never signals gains no more than the allowance.
    """

    workdir: Path
    command: str
    log_path: Path
    time_budget_s: float
    timeout_s: float
    seed: int = 0
    eval_command: str | None = None
    eval_log_path: Path | None = None
    eval_timeout_s: float | None = None
    memory_limit_mb: int | None = None
    log_limit_mb: float = 10.0
    network: bool = True
    env: Mapping[str, str] = field(default_factory=dict)
    env_allow: tuple[str, ...] = ()
    env_deny: tuple[str, ...] = ()
    marker_prefix: str = "autoresearch"
    gpu_ids: str | None = None
    after_signal_s: float | None = None
    # The fixed files' bytes as they were before ``command`` ran (workdir-relative paths).
    # ``eval_command`` then runs only if they are still so, with their folders importable
    # from a pristine copy and the workdir off ``sys.path``.
    fixed_files: Mapping[str, bytes] = field(default_factory=dict)
    # Folders the run sees read-only (command and evaluator): e.g. a domain's training data.
    data_dirs: tuple[Path, ...] = ()
    # Folders only ``eval_command`` sees (read-only): validation/holdout data, full histories.
    eval_data_dirs: tuple[Path, ...] = ()
    # Folders the command may write besides the workdir (a trusted prepare step's outputs).
    rw_dirs: tuple[Path, ...] = ()
    # Variables set for ``eval_command`` only (never for ``command``): the data-candidate keys.
    eval_env: Mapping[str, str] = field(default_factory=dict)
    # A persistent cache the command may write (``AUTORESEARCH_CACHE_DIR``) and the
    # evaluator's own (it never sees the command's, which a candidate may have poisoned).
    cache_dir: Path | None = None
    eval_cache_dir: Path | None = None
    # Most processes alive at once in the run, and most MB the workdir, /tmp and $HOME may
    # hold (None: no limit).
    pids_limit: int | None = None
    disk_limit_mb: int | None = None


class Sandbox(abc.ABC):
    """Runs the commands of one candidate and reports what happened.

    Contract:
    - ``run(spec)`` blocks until every process the run started has ended, and never raises
      for a failing command: failures come back as ``RunResult.failure`` (CRASH, TIMEOUT, OOM,
      INTERRUPTED) with a reason. It writes the logs named in the spec.
    - ``cancel()`` may be called from another thread or a signal handler; the current run
      ends as INTERRUPTED. A cancel before ``run`` starts affects only the next run.
    - Nothing the candidate prints is trusted by the sandbox beyond the log it writes.
    """

    @abc.abstractmethod
    def run(self, spec: RunSpec) -> RunResult: ...

    def cancel(self) -> None:  # noqa: B027
        """End the current run as INTERRUPTED. Default: nothing."""

    @property
    def warnings(self) -> list[str]:
        """Limits asked for that this sandbox cannot enforce here (e.g. no network isolation)."""
        return []

    @property
    def isolated(self) -> bool:
        """Whether a run lives in namespaces of its own (it cannot see the driver, the
        repository, the state folder or the evaluator's data). Default: False."""
        return False
