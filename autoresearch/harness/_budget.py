"""The time budget, and the signal that budgeted work has begun.

The engine's hard limit on a command is a start-up allowance, then the budget, then a grace
period. The allowance ends when the command signals: the sandbox names a file in
``AUTORESEARCH_BUDGET_FILE`` and the command creates it (holding ``time.time()``) right before
its first budgeted step, after imports, data loading and model building. A slow start-up on a
loaded machine then cannot kill a run that keeps to its budget. The engine should trust only
when the file appeared, not what it says: the candidate writes it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from autoresearch.harness._settings import time_budget_s

BUDGET_FILE_VAR = "AUTORESEARCH_BUDGET_FILE"
# Set in the environment of every isolated child (see _isolated.py): code imported there must
# not start budgeted work, e.g. a train.py whose training is not under `if __name__ == ...`.
ISOLATED_VAR = "AUTORESEARCH_ISOLATED_CALL"
_warned: set[str] = set()  # paths already warned about: one warning, not one per call


def _refuse_in_isolated_call() -> None:
    if os.environ.get(ISOLATED_VAR):
        raise RuntimeError(
            "budgeted work started while the evaluator imported this file in an isolated "
            'process: keep training under `if __name__ == "__main__":`'
        )


def budget_started() -> None:
    """Tell the engine that budgeted work begins now (once; later calls do nothing).

    Does nothing when ``AUTORESEARCH_BUDGET_FILE`` is unset (a run by hand). Never raises for
    an unwritable path: it prints one warning to stderr and the run goes on under the engine's
    plain limit.
    """
    _refuse_in_isolated_call()
    path = os.environ.get(BUDGET_FILE_VAR)
    if not path or path in _warned or os.path.exists(path):
        return
    try:
        # Written beside the target and renamed: the engine never sees half a file.
        fd, tmp = tempfile.mkstemp(prefix=".budget-", dir=os.path.dirname(path) or ".")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{time.time():.6f}\n")
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        print(f"warning: could not signal the budget start to {path}: {e}", file=sys.stderr)
        _warned.add(path)


class Budget:
    """Seconds of a budget that started at construction (``time.monotonic``).

    ``fraction`` is elapsed / budget, capped at 1: a learning-rate schedule that follows it
    ends where the budget ends, however fast the machine is.
    """

    def __init__(self, budget_s: float) -> None:
        if not budget_s > 0:
            raise ValueError(f"budget_s must be positive, got {budget_s!r}")
        self.budget_s = float(budget_s)
        self.started_at = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.budget_s - self.elapsed_s)

    @property
    def fraction(self) -> float:
        return min(1.0, self.elapsed_s / self.budget_s)

    @property
    def done(self) -> bool:
        return self.elapsed_s >= self.budget_s

    def __repr__(self) -> str:
        return f"Budget(budget_s={self.budget_s:g}, elapsed_s={self.elapsed_s:.1f})"


def start_budget(budget_s: float | None = None) -> Budget:
    """Signal the start (:func:`budget_started`) and return the running budget.

    ``budget_s`` defaults to the engine's ``AUTORESEARCH_TIME_BUDGET_S``.
    """
    _refuse_in_isolated_call()  # before reading the budget, which is not set there
    budget = Budget(time_budget_s() if budget_s is None else budget_s)
    budget_started()
    return budget
