"""Names for plug-ins: one registry per kind, built-ins as lazy ``"module:attr"`` entries,
extended by installed packages through entry points (the way pytest reads ``pytest11``), and
``import_path`` for the ``module:Class`` strings a config names."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from autoresearch._errors import ConfigError

# Entry-point groups a package may declare, e.g. in its pyproject.toml:
# [project.entry-points."autoresearch.proposers"] mine = "mypkg.proposer:Mine"
PROPOSERS_GROUP = "autoresearch.proposers"
ACCEPTANCE_GROUP = "autoresearch.acceptance"
EXECUTORS_GROUP = "autoresearch.executors"

# The top-level package the reusable objectives had before they moved under autoresearch.
_OLD_OBJECTIVES = "objectives"
# Objectives that moved into the one domain whose file layout they read.
_MOVED_TO_DOMAIN = {"objectives.trading": "the trading_sharpe domain's objective.py"}


class Registry:
    """Name -> class for one kind of plug-in (``kind`` names it in messages).

    Built-ins are ``"module:attr"`` strings imported only when chosen, so ``import autoresearch``
    stays light. Entry points of ``group`` are read once, on the first look-up; a built-in name
    wins over an entry point of the same name.
    """

    def __init__(self, kind: str, group: str, builtins: Mapping[str, str]) -> None:
        self.kind = kind
        self.group = group
        self._builtins = dict(builtins)
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None

    def _eps(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._entry_points is None:
            found = importlib.metadata.entry_points(group=self.group)
            self._entry_points = {ep.name: ep for ep in found if ep.name not in self._builtins}
        return self._entry_points

    def names(self) -> list[str]:
        return sorted({*self._builtins, *self._eps()})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._builtins or name in self._eps())

    def get(self, name: str, field: str) -> Any:
        """The class registered as ``name``; a ConfigError naming ``field`` if there is none."""
        if name in self._builtins:
            return import_path(self._builtins[name], field)
        ep = self._eps().get(name)
        if ep is None:
            raise ConfigError(
                f"{field}: unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            )
        try:
            return ep.load()
        except Exception as e:  # a broken third-party package names itself
            raise ConfigError(
                f"{field}: the {self.kind} {name!r} (entry point {ep.value}) failed to load: "
                f"{type(e).__name__}: {e}"
            ) from None


def import_path(path: str, field: str, domain_dir: Path | None = None) -> Any:
    """Import ``module:attr``; a ConfigError names ``field`` if it cannot be found.

    With ``domain_dir``, a plain module name that is a file of that folder (``objective:Cls``
    for ``DIR/objective.py``) is imported from that file, under a name of its own, and the folder
    is on ``sys.path`` only while it is imported. Old ``objectives.<module>`` paths are
    read as ``autoresearch.objectives.<module>`` with a warning naming the new path.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{field}: {path!r} must look like 'module:Name'")
    module = None
    # Only a plain module name is looked up in the folder: a dotted one
    # (autoresearch.objectives.ml) is always the installed package, never a file planted
    # at DIR/autoresearch/objectives/ml.py.
    if domain_dir is not None and "." not in module_name:
        module = _domain_module(domain_dir, module_name, field)
    if module is None:
        module_name = _renamed(module_name, attr, field)
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(
                f"{field}: cannot import {module_name!r} ({e}). "
                "Is the package (or its extra) installed?"
            ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{field}: {module_name!r} has no {attr!r}") from None


def _renamed(module_name: str, attr: str, field: str) -> str:
    if module_name in _MOVED_TO_DOMAIN:
        raise ConfigError(
            f"{field}: {module_name}:{attr} moved into {_MOVED_TO_DOMAIN[module_name]}; "
            f"name it as 'objective:{attr}' from that folder"
        )
    if module_name == _OLD_OBJECTIVES or module_name.startswith(_OLD_OBJECTIVES + "."):
        new = "autoresearch." + module_name
        warnings.warn(
            f"{field}: '{module_name}:{attr}' is deprecated; use '{new}:{attr}'",
            FutureWarning,
            stacklevel=3,
        )
        return new
    return module_name


def domain_module_file(domain_dir: Path, module_name: str) -> Path | None:
    """The file of ``module_name`` inside ``domain_dir`` (a module or a package), if any."""
    base = domain_dir.joinpath(*module_name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _domain_module(domain_dir: Path, module_name: str, field: str) -> ModuleType | None:
    file = domain_module_file(domain_dir, module_name)
    if file is None:
        return None
    return load_module_file(file, module_name, field)


def load_module_file(file: Path, module_name: str, field: str = "module") -> ModuleType:
    """Import ``file`` as a module of its own name (one per folder and file, so two domains'
    ``objective.py`` never clash), with its folder importable only while it runs."""
    file = file.resolve()
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:12]
    unique = f"_autoresearch_domain_{digest}_{module_name.replace('.', '_')}"
    if unique in sys.modules:
        return sys.modules[unique]
    spec = importlib.util.spec_from_file_location(unique, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{field}: cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    root = file.parent if file.name != "__init__.py" else file.parent.parent
    try:
        with _on_path(root):
            spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[unique]
        raise ConfigError(f"{field}: importing {file} failed: {type(e).__name__}: {e}") from None
    return module


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def publish(namespace: Mapping[str, object], names: Sequence[str], module: str) -> None:
    """Show public classes and functions under their public path (``autoresearch.Loop``,
    not ``autoresearch._loop.Loop``) in reprs, tracebacks and docs, as httpx does. Called at
    the end of each public ``__init__``; the top-level package runs last and wins."""
    for name in names:
        obj = namespace.get(name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            with contextlib.suppress(AttributeError, TypeError):
                obj.__module__ = module


__all__ = [
    "ACCEPTANCE_GROUP",
    "EXECUTORS_GROUP",
    "PROPOSERS_GROUP",
    "Registry",
    "import_path",
    "publish",
]
