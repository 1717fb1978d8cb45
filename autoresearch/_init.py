"""`autoresearch init`: write a valid autoresearch.toml into an existing folder."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from autoresearch._config import CONFIG_NAME, load_config
from autoresearch._errors import ConfigError
from autoresearch._layout import Layout
from autoresearch._ledger import Ledger
from autoresearch._types import ExperimentKind, Status


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
    startup_allowance_s: float | None = None,
    grace_s: float | None = None,
    gate_command: list[str] | None = None,
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
    if startup_allowance_s is not None:
        lines.append(f"startup_allowance_s = {startup_allowance_s:g}")
    if grace_s is not None:
        lines.append(f"grace_s = {grace_s:g}")
    if timeout_s is not None:
        lines.append(f"timeout_s = {timeout_s:g}")
    if memory_limit_mb is not None:
        lines.append(f"memory_limit_mb = {memory_limit_mb}")
    if gate_command:
        # Must pass before a keep, in the candidate's worktree (its test files stay fixed).
        gates = [_toml_str(g) for g in gate_command]
        value = gates[0] if len(gates) == 1 else f"[{', '.join(gates)}]"
        lines.append(f"gate_command = {value}")
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


# -- `autoresearch new` --------------------------------------------------------------------
TEMPLATES_DIR = Path(__file__).resolve().parent / "_templates"


def templates() -> list[str]:
    return sorted(p.name for p in TEMPLATES_DIR.iterdir() if (p / CONFIG_NAME).is_file())


def new_domain(dest: Path, template: str = "minimal") -> Path:
    """Write the ``template`` domain into ``dest`` (a new or empty folder), named after it,
    and check that its config loads. On any error nothing is left behind."""
    if template not in templates():
        raise ConfigError(f"--template {template!r}: unknown; known: {', '.join(templates())}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest} exists and is not empty; choose a new folder")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        for src in sorted((TEMPLATES_DIR / template).iterdir()):
            if src.is_file() and src.suffix in (".py", ".md", ".toml"):
                text = src.read_text(encoding="utf-8").replace("{name}", dest.resolve().name)
                (dest / src.name).write_text(text, encoding="utf-8")
        load_config(dest)
    except BaseException:
        for child in dest.iterdir():
            child.unlink()
        if created:
            dest.rmdir()
        raise
    return dest


# -- `autoresearch init --from-upstream` ---------------------------------------------------
# The upstream layout (karpathy/autoresearch): train.py is edited, prepare.py is fixed, the
# summary block carries val_bpb, each run gets 5 minutes of training and is killed at 10.
UPSTREAM_FILES = ("train.py", "prepare.py", "program.md")
UPSTREAM_BUDGET_S = 300.0
UPSTREAM_KILL_S = 600.0
# How the 10 minutes split: start-up (data, compile) before the budget, then some grace
# for the evaluation that follows it.
UPSTREAM_STARTUP_S = 180.0
UPSTREAM_GRACE_S = UPSTREAM_KILL_S - UPSTREAM_BUDGET_S - UPSTREAM_STARTUP_S
UPSTREAM_COLUMNS = ("commit", "val_bpb", "memory_gb", "status", "description")
# A results.tsv past these is not an upstream night's (126 experiments in a real one).
MAX_IMPORTED_ROWS = 100_000
MAX_DESCRIPTION_CHARS = 500
_SHORT_SHA = re.compile(r"[0-9a-f]{7,64}")


def write_upstream_config(folder: Path, force: bool = False) -> Path:
    """Configure an upstream-style folder for the loop, its files unmodified."""
    missing = [f for f in UPSTREAM_FILES if not (folder / f).is_file()]
    if missing:
        raise ConfigError(
            f"{folder}: not an upstream-style folder; missing {', '.join(missing)} "
            f"(expected {', '.join(UPSTREAM_FILES)})"
        )
    path = write_config(
        folder,
        editable=["train.py"],
        fixed=["prepare.py"],
        command="python train.py",
        metric="val_bpb",
        direction="minimize",
        time_budget_s=UPSTREAM_BUDGET_S,
        timeout_s=UPSTREAM_KILL_S,
        startup_allowance_s=UPSTREAM_STARTUP_S,
        grace_s=UPSTREAM_GRACE_S,
        force=force,
    )
    return path


def read_upstream_results(path: Path) -> list[dict[str, str]]:
    """The rows of an upstream ``results.tsv`` (commit, val_bpb, memory_gb, status,
    description), checked: a malformed line is an error naming the file and the line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    if tuple(header[: len(UPSTREAM_COLUMNS)]) != UPSTREAM_COLUMNS:
        raise ConfigError(
            f"{path}:1: expected the upstream columns {', '.join(UPSTREAM_COLUMNS)}, "
            f"got {', '.join(header)}"
        )
    if len(lines) - 1 > MAX_IMPORTED_ROWS:
        raise ConfigError(
            f"{path}: {len(lines) - 1} rows; at most {MAX_IMPORTED_ROWS} are imported"
        )
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < len(UPSTREAM_COLUMNS):
            raise ConfigError(f"{path}:{n}: {len(cells)} columns, expected {len(header)}")
        row = dict(zip(header, cells, strict=False))
        if not _SHORT_SHA.fullmatch(row["commit"]):
            raise ConfigError(f"{path}:{n}: commit {row['commit'][:60]!r} is not a git hash")
        try:
            values = (float(row["val_bpb"]), float(row["memory_gb"] or 0))
        except ValueError:
            raise ConfigError(f"{path}:{n}: val_bpb and memory_gb must be numbers") from None
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ConfigError(f"{path}:{n}: val_bpb and memory_gb must be finite, not negative")
        # The description is shown in prompts, tables and terminals: text, one line, bounded.
        text = "".join(c if c.isprintable() else " " for c in row["description"])
        row["description"] = " ".join(text.split())[:MAX_DESCRIPTION_CHARS]
        rows.append(row)
    return rows


IMPORT_TAG = "upstream"
_UPSTREAM_STATUS = {"keep": Status.KEEP, "discard": Status.DISCARD, "crash": Status.CRASH}


def import_upstream_results(folder: Path) -> int:
    """Import the folder's upstream ``results.tsv`` into the ledger as history (tag
    ``upstream``, kind ``imported``), so the engine's regenerated results.tsv keeps every row
    and a proposer sees them. Returns the number of rows imported (0 without a file)."""
    layout = Layout(folder)
    path = layout.results_tsv
    if not path.is_file():
        return 0
    rows = read_upstream_results(path)
    bad = [r["status"] for r in rows if r["status"] not in _UPSTREAM_STATUS]
    if bad:
        raise ConfigError(f"{path}: unknown status {bad[0]!r} (expected keep, discard or crash)")
    ledger = Ledger(layout.ledger)
    try:
        if ledger.tag_info(IMPORT_TAG) is not None:
            raise ConfigError(f"{layout.ledger}: {path.name} was imported already")
        base = rows[0]["commit"] if rows else ""
        ledger.create_tag(IMPORT_TAG, "", base, None, "val_bpb", "minimize", {}, {})
        for r in rows:
            status = _UPSTREAM_STATUS[r["status"]]
            value = float(r["val_bpb"])
            exp = ledger.begin(
                IMPORT_TAG,
                r["commit"],
                r["description"] or "-",
                "upstream",
                kind=ExperimentKind.IMPORTED,
            )
            ledger.finish(
                exp,
                status,
                f"imported from {path.name}",
                commit_sha=r["commit"],
                value=None if status is Status.CRASH else value,
                memory_gb=float(r["memory_gb"] or 0),
            )
        ledger.set_tag_state(IMPORT_TAG, "imported")
        ledger.write_results_tsv(path, "val_bpb")
    finally:
        ledger.close()
    return len(rows)
