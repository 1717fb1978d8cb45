"""Settings a domain's process reads from its environment: the engine's and the domain's own.

The engine's sandbox sets ``AUTORESEARCH_TIME_BUDGET_S`` and ``AUTORESEARCH_SEED``; a domain's
own variables come from the ``[env]`` table of its ``autoresearch.toml``. A value that does not
parse is an error naming the variable, the value and what is expected; unset or blank means the
default.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

BUDGET_VAR = "AUTORESEARCH_TIME_BUDGET_S"
SEED_VAR = "AUTORESEARCH_SEED"
CACHE_VAR = "AUTORESEARCH_CACHE_DIR"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingError(ValueError):
    """An environment variable holds a value the domain cannot use; the message names it."""


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None or not value.strip() else value.strip()


def _bad(name: str, raw: str, expected: str) -> SettingError:
    return SettingError(
        f"{name}={raw!r} is not {expected}; fix it in the [env] table of autoresearch.toml "
        "(or in the environment)"
    )


def env_str(name: str, default: str) -> str:
    """``name``'s value, stripped; ``default`` when unset or blank."""
    raw = _raw(name)
    return default if raw is None else raw


def env_int(name: str, default: int) -> int:
    """``name`` as an int; integral float spellings such as ``2e9`` are accepted."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, raw, "an integer") from None
    if not value.is_integer():
        raise _bad(name, raw, "an integer")
    return int(value)


def env_float(name: str, default: float) -> float:
    """``name`` as a finite float."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, raw, "a number") from None
    if not math.isfinite(value):
        raise _bad(name, raw, "a finite number")
    return value


def env_bool(name: str, default: bool) -> bool:
    """``name`` as a bool: 1/true/yes/on or 0/false/no/off, in any case."""
    raw = _raw(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise _bad(name, raw, f"a boolean ({'/'.join(_TRUE)} or {'/'.join(_FALSE)})")


def time_budget_s() -> float:
    """The experiment's time budget in seconds, as the engine set it (never the domain's pick)."""
    if _raw(BUDGET_VAR) is None:
        raise SettingError(
            f"{BUDGET_VAR} is not set: the engine sets it for every run. "
            f"By hand: {BUDGET_VAR}=60 python train.py"
        )
    budget_s = env_float(BUDGET_VAR, 0.0)
    if budget_s <= 0:
        raise _bad(BUDGET_VAR, os.environ[BUDGET_VAR], "a positive number of seconds")
    return budget_s


def seed() -> int:
    """The run's seed (0 when unset): repeats of a candidate get different seeds."""
    return env_int(SEED_VAR, 0)


def cache_dir() -> Path:
    """Where a domain keeps data it may rebuild (tokenized corpora, compiled kernels).

    ``AUTORESEARCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/autoresearch``, else
    ``~/.cache/autoresearch``. Not created here.
    """
    explicit = _raw(CACHE_VAR)
    if explicit is not None:
        return Path(explicit).expanduser()
    xdg = _raw("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "autoresearch"
