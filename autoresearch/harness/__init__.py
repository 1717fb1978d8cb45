"""The kit a domain's fixed files (its trusted evaluator) and its editable script use.

- settings: ``time_budget_s()``, ``seed()``, ``cache_dir()`` and typed getters for a domain's
  own variables (``env_int("GPT_SEQ_LEN", 256)``), with errors naming the variable;
- the summary block the engine parses: ``print_summary({"val_bpb": 1.23})``;
- the budget: ``budget = start_budget()`` right before the first budgeted step tells the engine
  that start-up is over (``AUTORESEARCH_BUDGET_FILE``) and gives ``budget.fraction`` etc.;
- isolated calls: ``call_isolated(path, "f", args)`` or a ``Worker`` that runs candidate code
  in a child interpreter and hands back JSON values and numpy arrays, never its prints.

Stdlib and numpy only (numpy when an array is sent), and nothing of the engine: this runs in
the sandbox, inside the domain's own processes.
"""

from autoresearch.harness._budget import BUDGET_FILE_VAR, Budget, budget_started, start_budget
from autoresearch.harness._isolated import (
    CANDIDATE_PREFIX,
    IsolatedCallError,
    Worker,
    call_isolated,
    candidate_lines,
)
from autoresearch.harness._settings import (
    SettingError,
    cache_dir,
    env_bool,
    env_float,
    env_int,
    env_str,
    seed,
    time_budget_s,
)
from autoresearch.harness._summary import format_summary, print_summary

__all__ = [
    "BUDGET_FILE_VAR",
    "CANDIDATE_PREFIX",
    "Budget",
    "IsolatedCallError",
    "SettingError",
    "Worker",
    "budget_started",
    "cache_dir",
    "call_isolated",
    "candidate_lines",
    "env_bool",
    "env_float",
    "env_int",
    "env_str",
    "format_summary",
    "print_summary",
    "seed",
    "start_budget",
    "time_budget_s",
]
