"""`autoresearch init`: write a valid autoresearch.toml into an existing folder."""

from __future__ import annotations

import json
from pathlib import Path

from autoresearch._config import CONFIG_NAME, load_config
from autoresearch._errors import ConfigError


def _toml_str(value: str) -> str:
    # A JSON string is a valid TOML basic string (non-ASCII kept as is: TOML rejects the
    # surrogate-pair escapes JSON would use).
    return json.dumps(value, ensure_ascii=False)


def write_config(
    folder: Path,
    *,
    editable: list[str],
    fixed: list[str],
    command: str,
    metric: str,
    direction: str,
    metric_source: str = "summary",
    time_budget_s: float = 300.0,
    timeout_s: float | None = None,
    memory_limit_mb: int | None = None,
    force: bool = False,
) -> Path:
    """Write the config, validate it by loading it back; on any error nothing is left behind."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not an existing folder")
    path = folder / CONFIG_NAME
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it")
    missing = [g for g in editable if not any(folder.glob(g))]
    if missing:
        raise ConfigError(f"--editable {missing[0]!r} matches no file in {folder}")
    lines = [
        f"name = {_toml_str(folder.resolve().name)}",
        f"editable = [{', '.join(_toml_str(g) for g in editable)}]",
        f"fixed = [{', '.join(_toml_str(g) for g in fixed)}]",
        f"command = {_toml_str(command)}",
        f"time_budget_s = {time_budget_s:g}",
    ]
    if timeout_s is not None:
        lines.append(f"timeout_s = {timeout_s:g}")
    if memory_limit_mb is not None:
        lines.append(f"memory_limit_mb = {memory_limit_mb}")
    lines += [
        "",
        "[objective]",
        f"metric = {_toml_str(metric)}",
        f"source = {_toml_str(metric_source)}",
        f"direction = {_toml_str(direction)}",
        "",
        "[acceptance]",
        'policy = "greedy"',
        "min_delta = 0.0",
        "",
    ]
    old = path.read_text() if path.exists() else None
    tmp = path.with_name(f".{CONFIG_NAME}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)
    try:
        load_config(folder)
    except ConfigError:
        if old is None:
            path.unlink()
        else:
            path.write_text(old)
        raise
    return path
