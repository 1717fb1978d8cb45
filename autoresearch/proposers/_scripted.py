"""The scripted proposer: replays candidates from a JSONL file, one object a line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoresearch._config import ResearchConfig
from autoresearch._errors import ConfigError
from autoresearch._types import Candidate, Context, Edit, ExperimentRecord
from autoresearch.proposers._base import Proposer, ProposerOptions


class ScriptError(ValueError):
    """A line of the script is malformed; the message names the file and the line."""


def parse_candidate(obj: Any, where: str) -> Candidate:
    """A Candidate from one script object:
    ``{"description", "hypothesis"?, "edits": [{"path", "content"} | {"path", "search",
    "replace"} | {"path", "delete": true}]}``."""
    if not isinstance(obj, dict):
        raise ScriptError(f"{where}: expected a JSON object")
    unknown = set(obj) - {"description", "hypothesis", "edits"}
    if unknown:
        raise ScriptError(f"{where}: unknown keys {sorted(unknown)}")
    desc = obj.get("description")
    if not isinstance(desc, str) or not desc.strip():
        raise ScriptError(f"{where}: 'description' (a non-empty string) is required")
    raw_edits = obj.get("edits", [])
    if not isinstance(raw_edits, list):
        raise ScriptError(f"{where}: 'edits' must be a list")
    edits = []
    for i, e in enumerate(raw_edits):
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise ScriptError(f"{where}: edits[{i}] needs a 'path' string")
        extra = set(e) - {"path", "content", "search", "replace", "delete"}
        if extra:
            raise ScriptError(f"{where}: edits[{i}] has unknown keys {sorted(extra)}")
        try:
            edits.append(
                Edit(
                    e["path"],
                    content=e.get("content"),
                    search=e.get("search"),
                    replace=e.get("replace"),
                    delete=bool(e.get("delete", False)),
                )
            )
        except ValueError as err:
            raise ScriptError(f"{where}: edits[{i}]: {err}") from None
    return Candidate(
        description=desc, edits=tuple(edits), hypothesis=str(obj.get("hypothesis", ""))
    )


def load_script(path: Path) -> list[Candidate]:
    """Every candidate of a JSONL script (blank lines skipped); errors name the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScriptError(f"{path}: no such script file") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ScriptError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        cand = parse_candidate(obj, f"{path}:{n}")
        out.append(Candidate(cand.description, cand.edits, cand.hypothesis, meta={"line": n}))
    return out


class Scripted(Proposer):
    """Returns the script's candidates in order; ends the loop when they run out. A resumed
    run continues after the last recorded line."""

    name = "scripted"

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self._queue = list(candidates)
        self._next = 0

    @classmethod
    def from_file(cls, path: Path) -> Scripted:
        return cls(load_script(path))

    @classmethod
    def from_config(
        cls, config: ResearchConfig, domain_dir: Path, options: ProposerOptions
    ) -> Scripted:
        script = options.script or config.proposer.script
        if not script:
            raise ConfigError(
                "proposer 'scripted' needs a script: pass --script FILE or set proposer.script"
            )
        path = Path(script)
        if not path.is_absolute():
            cwd_path = Path.cwd() / path
            path = cwd_path if cwd_path.exists() else domain_dir / path
        try:
            return cls.from_file(path)
        except ScriptError as e:
            raise ConfigError(str(e)) from None

    def restore(self, history: Sequence[ExperimentRecord]) -> None:
        done = [r.meta.get("line") for r in history if r.proposer == self.name]
        lines = [d for d in done if isinstance(d, int)]
        if lines:
            last = max(lines)
            self._next = next(
                (i for i, c in enumerate(self._queue) if int(str(c.meta.get("line", 0))) > last),
                len(self._queue),
            )

    def propose(self, context: Context) -> Candidate | None:
        if self._next >= len(self._queue):
            return None
        cand = self._queue[self._next]
        self._next += 1
        return cand
