"""Bundled domains: found in the wheel (``autoresearch/_bundled_domains``) or, in a source
checkout, in the repository's ``domains/`` folder; copied into a working folder to run."""

from __future__ import annotations

import shutil
from pathlib import Path

from autoresearch._config import CONFIG_NAME, read_raw
from autoresearch._errors import ConfigError
from autoresearch._git import init_repo
from autoresearch._layout import STATE_DIRNAME

_HERE = Path(__file__).resolve().parent


def bundled_root() -> Path | None:
    for candidate in (_HERE / "_bundled_domains", _HERE.parent / "domains"):
        if candidate.is_dir():
            return candidate
    return None


def bundled_domains() -> dict[str, str]:
    """Name -> one-line description of every bundled domain."""
    root = bundled_root()
    out: dict[str, str] = {}
    if root is None:
        return out
    for d in sorted(root.iterdir()):
        if (d / CONFIG_NAME).is_file():
            try:
                out[d.name] = str(read_raw(d / CONFIG_NAME).get("description", ""))
            except ConfigError as e:
                out[d.name] = f"(broken config: {e})"
    return out


def resolve_domain(target: str, workdir: Path | None = None) -> tuple[Path, str | None]:
    """The folder to run for ``target``: a folder with an autoresearch.toml, or the name of a
    bundled domain, copied into ``workdir`` (default ``./<name>``) on first use.
    Returns the folder and a message for the user (None if there is nothing to say)."""
    path = Path(target).expanduser()
    if (path / CONFIG_NAME).is_file():
        return path.resolve(), None
    names = bundled_domains()
    if path.exists() or target not in names:
        if path.is_dir():
            raise ConfigError(
                f"{path}: no {CONFIG_NAME} here. Create one with `autoresearch init {path} ...`"
            )
        known = ", ".join(names) or "none installed"
        raise ConfigError(
            f"{target!r} is neither a folder with an {CONFIG_NAME} nor a bundled domain "
            f"(bundled: {known})"
        )
    dest = (workdir or Path.cwd() / target).resolve()
    if (dest / CONFIG_NAME).is_file():
        return dest, f"using the working folder {dest} (a copy of the bundled {target!r})"
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest} exists and is not a copy of {target!r}; pass another --workdir")
    root = bundled_root()
    assert root is not None
    shutil.copytree(
        root / target,
        dest,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(STATE_DIRNAME, "__pycache__", "results.tsv"),
    )
    # Its own repository, even inside another one: the research branch lives there.
    init_repo(dest)
    return dest, f"copied the bundled domain {target!r} to {dest} (a git repository of its own)"
