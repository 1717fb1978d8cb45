"""The evaluator's pristine copy of the fixed files, and the environment that imports from it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping

from autoresearch.execution._spec import RunSpec

# The variable naming the file a command creates when budgeted work begins.
BUDGET_FILE_VAR = "AUTORESEARCH_BUDGET_FILE"


def fixed_files_intact(spec: RunSpec) -> bool:
    """Whether the fixed files are what they were before the command ran. If not, the
    evaluator does not run (the engine's own check then records which file changed)."""
    for rel, data in spec.fixed_files.items():
        path = spec.workdir / rel
        try:
            if path.is_symlink() or path.read_bytes() != data:
                return False
        except OSError:
            return False
    return True


@contextlib.contextmanager
def pristine_copy(files: Mapping[str, bytes]) -> Iterator[str | None]:
    """The fixed files, copied from the driver's memory into a folder of their own."""
    if not files:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="autoresearch-fixed-")
    try:
        for rel, data in files.items():
            target = os.path.join(folder, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def eval_environment(env: dict[str, str], pristine: str | None) -> dict[str, str]:
    """The evaluator's environment: the workdir (where a candidate may have planted a
    json.py) off sys.path (PYTHONSAFEPATH, no user site), its own modules importable from the
    pristine copy of the fixed files instead."""
    out = dict(env)
    out.pop(BUDGET_FILE_VAR, None)
    if pristine is None:  # a spec without the fixed files' bytes: the command's own paths
        return out
    out["PYTHONSAFEPATH"] = "1"
    out["PYTHONNOUSERSITE"] = "1"
    # Each folder of a fixed module stands in for the script folder PYTHONSAFEPATH drops,
    # so an evaluator still imports its own sibling modules (from the copy).
    out["PYTHONPATH"] = os.pathsep.join(module_folders(pristine))
    return out


def module_folders(root: str) -> list[str]:
    """Every folder of the pristine copy that holds a module, the top first."""
    found = [root]
    for dirpath, _dirs, files in os.walk(root):
        if dirpath != root and any(f.endswith(".py") for f in files):
            found.append(dirpath)
    return found
