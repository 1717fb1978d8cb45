"""``gate_command``: the commands (tests, a type check, lint) a candidate must pass before a
keep, run in its worktree through the same sandbox as every run, after the metric decided for
it. Their time is never part of the metric.

A gate command's exit code alone is not enough: a candidate that makes the suite skip, or
collect fewer tests, exits 0 too. Where a command prints a test summary this module can read
(pytest's last line, or a plain ``N passed, N failed`` line), its counts are compared with the
unmodified code's, taken once before the first candidate: fewer tests collected or passed
fails the gate. That reference check also proves the suite passes at all on the unmodified
code; a suite that does not stops the run before any candidate is judged by it.

What a gate can and cannot stop: it refuses the lazy and accidental ways past a suite (a
skip or deselection the candidate caused, an edited test, a new ``conftest.py``, a ``.pth``,
a test configuration, package metadata with a plugin, a new module shadowing the test
runner or the standard library). It cannot stop candidate code that attacks the runner it
is imported into: code a test imports runs in the test runner's process, where it can patch
pytest itself or print a forged summary and exit 0. Against a proposer that would do that,
put the check in a fixed harness that runs the candidate's code in a child and compares its
outputs in the trusted parent (``domains/sim_speed/harness.py`` does), or in an Objective's
``gate``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from autoresearch._layout import RunFiles, reserve_run_files
from autoresearch._types import RunResult, Status
from autoresearch.execution._sandbox import RunSpec, Sandbox

# Chars of a failed gate's output handed to the proposer (and quoted in the stop message).
GATE_TAIL_CHARS = 3000

# Files a gate's runner loads on its own when they appear in the tree: a candidate that
# adds one (a conftest.py that skips every test, a .pth that patches the interpreter, a
# pytest or linter config that deselects) changes the gate, not the code. Refused whenever
# a gate_command is set, even where an editable glob admits them.
_LOADER_NAMES = frozenset(
    {
        "conftest.py",
        "sitecustomize.py",
        "usercustomize.py",
        "pytest.ini",
        ".pytest.ini",
        "pytest.toml",  # pytest 9
        ".pytest.toml",
        "tox.ini",
        "setup.cfg",
        "pyproject.toml",
        "mypy.ini",
        ".mypy.ini",
        "ruff.toml",
        ".ruff.toml",
        ".flake8",
        ".coveragerc",
        "noxfile.py",
    }
)
_LOADER_SUFFIXES = (".pth",)

# Counts a test summary may hold. pytest: "=== 3 failed, 10 passed, 1 skipped in 0.5s ===",
# "no tests ran"; a plain runner: "12 passed, 0 failed".
_COUNT = re.compile(
    r"(\d+)\s+(passed|failed|skipped|deselected|errors?|xfailed|xpassed|warnings?)\b"
)
_SUMMARY_KINDS = ("passed", "failed", "skipped", "deselected", "error", "xfailed", "xpassed")


# A folder of this kind is package metadata: a ``*.dist-info`` with an ``entry_points.txt``
# naming a ``pytest11`` plugin is loaded by ``python -m pytest`` from the working folder.
_METADATA_DIRS = (".dist-info", ".egg-info", ".egg-link")


def loader_files(paths: Iterable[str]) -> list[str]:
    """The paths (domain-relative, posix) a gate's runner would load on its own. Names are
    compared without case: a case-insensitive file system (macOS, Windows) loads
    ``Conftest.py`` as ``conftest.py``."""
    out = []
    for path in paths:
        parts = path.lower().split("/")
        name = parts[-1]
        if (
            name in _LOADER_NAMES
            or name.endswith(_LOADER_SUFFIXES)
            or any(p.endswith(_METADATA_DIRS) for p in parts)
        ):
            out.append(path)
    return out


def shadowing_modules(created: Iterable[str]) -> list[str]:
    """New files (domain-relative, posix) that would be imported in place of a module of the
    standard library or of an installed distribution (``pytest.py``, ``_pytest/__init__.py``,
    ``json.py``): ``python -m pytest`` puts the working folder first on ``sys.path``, so a
    planted ``pytest.py`` would be the test runner. Only new files count: a repository's own
    package may well be installed (an editable install) and is edited in place."""
    out = []
    for path in created:
        parts = path.split("/")
        leaf = parts[-1]
        if leaf == "__init__.py" and len(parts) > 1:
            module = parts[-2]
        elif leaf.endswith((".py", ".pyc", ".so", ".pyd")):
            module = leaf.split(".", 1)[0]
        else:
            continue
        if module in _importable_names():
            out.append(path)
    return out


@functools.cache
def _importable_names() -> frozenset[str]:
    """Read once per driver: scanning every installed distribution's metadata is not free,
    and the set does not change during a run."""
    import importlib.metadata
    import sys

    try:
        installed = set(importlib.metadata.packages_distributions())
    except Exception:  # a broken distribution's metadata must not stop the check
        installed = set()
    return frozenset({*sys.stdlib_module_names, *installed, "pytest", "_pytest", "pluggy"})


@dataclass(frozen=True)
class TestCounts:
    """A test summary's counts (``passed``, ``failed``, ...); ``collected`` is their sum,
    deselected tests included (pytest collects them first)."""

    counts: Mapping[str, int]

    @property
    def passed(self) -> int:
        return self.counts.get("passed", 0)

    @property
    def collected(self) -> int:
        return sum(self.counts.get(k, 0) for k in _SUMMARY_KINDS)

    def describe(self) -> str:
        return ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()) if v)


def parse_test_counts(text: str) -> TestCounts | None:
    """The counts of the last test summary line of ``text``, or None when it has none."""
    for line in reversed(text.splitlines()):
        low = line.lower()
        if "no tests ran" in low:
            return TestCounts({})
        found = _COUNT.findall(low)
        kinds = {k.rstrip("s") if k.startswith(("error", "warning")) else k for _, k in found}
        if not found or not kinds & {"passed", "failed"}:
            continue
        counts: dict[str, int] = {}
        for n, kind in found:
            kind = "error" if kind.startswith("error") else kind
            if kind.startswith("warning"):
                continue
            counts[kind] = counts.get(kind, 0) + int(n)
        return TestCounts(counts)
    return None


def fewer_tests(now: TestCounts, reference: Mapping[str, int]) -> str | None:
    """Why ``now`` counts fewer tests than the unmodified code's ``reference``, or None."""
    ref = TestCounts(reference)
    if now.collected < ref.collected:
        return (
            f"collected {now.collected} tests, fewer than the unmodified code's "
            f"{ref.collected} ({now.describe() or 'none'} vs {ref.describe()})"
        )
    if now.passed < ref.passed:
        return (
            f"{now.passed} tests passed, fewer than the unmodified code's {ref.passed} "
            f"({now.describe()} vs {ref.describe()})"
        )
    return None


@dataclass(frozen=True)
class GateOutcome:
    """What the gate commands came to: passed or not, why, the failing output's tail, and
    each command's test counts (index -> counts; only commands that printed a summary)."""

    passed: bool
    reason: str
    tail: str = ""
    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    interrupted: bool = False


class GateRunner:
    """Runs a config's gate commands in a folder through a sandbox. ``base_spec(domain,
    files)`` is the spec of an ordinary run there (same limits, environment and namespaces,
    the fixed files bound read-only); only the command, its log and its timeout change.
    ``fixed_changed()`` names the fixed files a gate run changed, a failure (where no
    namespaces bind them read-only)."""

    def __init__(
        self,
        commands: tuple[str, ...],
        timeout_s: float,
        retries: int,
        sandbox: Sandbox,
        base_spec: Callable[[Path, RunFiles], RunSpec],
        fixed_changed: Callable[[], list[str]] = list,
    ) -> None:
        self.fixed_changed = fixed_changed
        self.commands = commands
        self.timeout_s = timeout_s
        self.retries = retries
        self.sandbox = sandbox
        self.base_spec = base_spec

    def run(
        self,
        domain: Path,
        folder: Path,
        reference: Mapping[str, Mapping[str, int]] | None,
        on_attempt: Callable[[str], None] = lambda what: None,
    ) -> GateOutcome:
        """Every command in order (the first failure ends it), each tried up to
        ``1 + retries`` times; with ``reference`` (the unmodified code's counts) a summary
        with fewer tests fails the gate like a non-zero exit."""
        counts: dict[str, dict[str, int]] = {}
        passed_notes = []
        for i, command in enumerate(self.commands):
            attempts = 1 + self.retries
            for attempt in range(1, attempts + 1):
                try_note = f" (attempt {attempt} of {attempts})" if attempts > 1 else ""
                on_attempt(f"gate command {i + 1} of {len(self.commands)}{try_note}: {command}")
                run = self._run_one(domain, folder, command)
                if run.failure is Status.INTERRUPTED:
                    return GateOutcome(False, "interrupted", interrupted=True)
                why = self._failure(run, str(i), reference, counts)
                if why is None:
                    break
            if why is not None:
                tried = f" after {attempts} attempts" if attempts > 1 else ""
                tail = run.log_tail(GATE_TAIL_CHARS)
                return GateOutcome(False, f"{command!r}{tried}: {why}", tail, counts)
            if str(i) in counts:
                passed_notes.append(TestCounts(counts[str(i)]).describe())
        summary = "; ".join(n for n in passed_notes if n)
        return GateOutcome(True, f"gate_command passed ({summary})" if summary else "", "", counts)

    def _failure(
        self,
        run: RunResult,
        key: str,
        reference: Mapping[str, Mapping[str, int]] | None,
        counts: dict[str, dict[str, int]],
    ) -> str | None:
        found = parse_test_counts(run.log_text())
        if found is not None:
            counts[key] = dict(found.counts)
        changed = self.fixed_changed()
        if changed:  # where the sandbox could not bind them read-only (no namespaces)
            return f"the gate run changed fixed files: {', '.join(changed[:5])}"
        if run.failure is not None:
            code = f", exit code {run.exit_code}" if run.exit_code is not None else ""
            return f"{run.failure.value}{code}: {run.reason}"
        ref = None if reference is None else reference.get(key)
        if ref is not None:
            if found is None:
                return "printed no test summary, where the unmodified code's printed one"
            return fewer_tests(found, ref)
        return None

    def _run_one(self, domain: Path, folder: Path, command: str) -> RunResult:
        files = reserve_run_files(folder, "gate-run")
        spec = dataclasses.replace(
            self.base_spec(domain, files),
            command=command,
            eval_command=None,
            eval_log_path=None,
            time_budget_s=self.timeout_s,
            timeout_s=self.timeout_s,
            after_signal_s=None,
        )
        return self.sandbox.run(spec)


__all__ = [
    "GATE_TAIL_CHARS",
    "GateOutcome",
    "GateRunner",
    "TestCounts",
    "fewer_tests",
    "loader_files",
    "parse_test_counts",
    "shadowing_modules",
]
