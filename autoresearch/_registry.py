"""Names for plug-ins: one registry per kind, built-ins as lazy ``"module:attr"`` entries,
extended by installed packages through entry points (the way pytest reads ``pytest11``), and
``import_path`` for the ``module:Class`` strings a config names."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import linecache
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from autoresearch._errors import ConfigError

if TYPE_CHECKING:
    from autoresearch._trusted import TrustedFiles

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


def import_path(path: str, field: str, domain: Path | TrustedFiles | None = None) -> Any:
    """Import ``module:attr``; a ConfigError names ``field`` if it cannot be found.

    With ``domain``, a plain module name that is a file of that folder (``objective:Cls``
    for ``DIR/objective.py``) is compiled from that file's bytes, under a name of its own;
    the modules it imports of the folder come from the same place. A ``TrustedFiles`` gives
    the bytes of a commit (what the engine passes: the run's base); a path, the folder's
    files as they are now. The folder is never put on ``sys.path``. Old
    ``objectives.<module>`` paths are read as ``autoresearch.objectives.<module>`` with a
    warning naming the new path.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{field}: {path!r} must look like 'module:Name'")
    module = None
    # Only a plain module name is looked up in the folder: a dotted one
    # (autoresearch.objectives.ml) is always the installed package, never a file planted
    # at DIR/autoresearch/objectives/ml.py.
    if domain is not None and "." not in module_name:
        from autoresearch._trusted import TrustedFiles

        files = domain if isinstance(domain, TrustedFiles) else TrustedFiles(domain.resolve(), None)
        module = _domain_module(files, module_name, field)
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


def _domain_module(files: TrustedFiles, module_name: str, field: str) -> ModuleType | None:
    found = _module_source(files, module_name)
    if found is None:
        return None
    rel, source = found
    filename = files.file_name(rel)
    digest = hashlib.sha1(str(filename).encode() + b"\0" + source).hexdigest()[:12]
    unique = f"_autoresearch_domain_{digest}_{module_name.replace('.', '_')}"
    if unique in sys.modules:
        return sys.modules[unique]
    module = ModuleType(unique)
    module.__file__ = str(filename)
    sys.modules[unique] = module
    try:
        with _imports_from(files):
            _exec_source(module, source, filename)
    except Exception as e:
        del sys.modules[unique]
        raise ConfigError(
            f"{field}: importing {rel} of {files.where} failed: {type(e).__name__}: {e}"
        ) from None
    return module


def _module_source(files: TrustedFiles, module_name: str) -> tuple[str, bytes] | None:
    """The domain-relative file of ``module_name`` (a module, or a package's __init__.py)
    and its bytes, from ``files``; None where it has neither."""
    base = module_name.replace(".", "/")
    for rel in (f"{base}.py", f"{base}/__init__.py"):
        data = files.read(rel)
        if data is not None:
            return rel, data
    return None


def _exec_source(module: ModuleType, source: bytes, filename: Path) -> None:
    """Run ``source`` as ``module``'s code. Its text goes into linecache under ``filename``,
    so a traceback shows the lines that ran, not whatever the checkout holds there now."""
    text = source.decode("utf-8", errors="replace")
    linecache.cache[str(filename)] = (len(text), None, text.splitlines(True), str(filename))
    code = compile(source, str(filename), "exec", dont_inherit=True)
    exec(code, module.__dict__)


class _DomainFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the modules a domain module imports of its own folder from ``files`` (the
    folder's place on ``sys.path`` in an ordinary import, without reading the checkout)."""

    def __init__(self, files: TrustedFiles) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        found = _module_source(self.files, fullname)
        if found is None:
            return None
        rel, _ = found
        package = rel.endswith("/__init__.py")
        spec = importlib.util.spec_from_loader(fullname, self, is_package=package)
        if spec is not None:
            spec.origin = str(self.files.file_name(rel))
            spec.has_location = True
            if package:
                spec.submodule_search_locations = []  # submodules come from here, too
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        found = _module_source(self.files, module.__name__)
        assert found is not None
        _exec_source(module, found[1], self.files.file_name(found[0]))


@contextlib.contextmanager
def _imports_from(files: TrustedFiles) -> Iterator[None]:
    finder = _DomainFinder(files)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)


def load_module_file(file: Path, module_name: str, field: str = "module") -> ModuleType:
    """Import ``file`` as ``module_name`` of its folder from the bytes it holds now, under a
    name of its own (one per file and content, so two domains' ``objective.py`` never
    clash). For tests and tools: the engine imports a domain's modules from the run's base
    commit, through ``import_path``."""
    from autoresearch._trusted import TrustedFiles

    file = file.resolve()
    depth = module_name.count(".") + (file.name == "__init__.py")
    module = _domain_module(TrustedFiles(file.parents[depth], None), module_name, field)
    if module is None:
        raise ConfigError(f"{field}: cannot import {file} as {module_name!r}")
    return module


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
