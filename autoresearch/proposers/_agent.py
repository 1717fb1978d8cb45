"""Agent: lets an external coding agent (Claude Code, Codex, aider, ...) edit a
scratch copy of the domain, and takes its file changes as the candidate.

It is a proposer, not an experiment: the agent runs outside the experiment sandbox, in a
temporary copy (the domain's tracked files with the editable ones set to the current best),
with a time limit and an environment stripped of credentials except those
``[proposer.agent] env_allow`` names. Every file it changes, creates or deletes becomes an
edit; the loop's scope check rejects a candidate that touches a file outside the editable
globs, so the agent cannot change the harness.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from autoresearch._config import ResearchConfig
from autoresearch._errors import ConfigError, ProposalError
from autoresearch._layout import Layout
from autoresearch._types import Candidate, Context, Edit
from autoresearch.execution._proc import (
    MARKER_VAR,
    CappedLog,
    kill_tree,
    new_marker,
    pids_with_marker,
    scrub_env,
)
from autoresearch.proposers._agent_config import AgentConfig
from autoresearch.proposers._base import (
    Proposer,
    ProposerOptions,
    ProposerSettings,
    require_program,
)
from autoresearch.proposers._prompt import render_context

# The agent may write its description and hypothesis here; it is not part of the edit.
PROPOSAL_FILE = ".autoresearch-proposal.json"
PROMPT_PLACEHOLDER = "{prompt_file}"
KILL_GRACE_S = 5.0
AGENT_LOG_LIMIT_BYTES = 2 * 1024 * 1024
LOG_TAIL_CHARS = 1500
LOG_DRAIN_S = 5.0
# Linux refuses one argv string over 128 KiB (MAX_ARG_STRLEN); stay well under it.
MAX_ARG_PROMPT_BYTES = 100_000
# The scratch copy is a git repository (some agents refuse to run elsewhere); its .git is
# never part of the edit.
SCRATCH_GIT_IGNORE = ".git/*"
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "autoresearch",
    "GIT_AUTHOR_EMAIL": "autoresearch@localhost",
    "GIT_COMMITTER_NAME": "autoresearch",
    "GIT_COMMITTER_EMAIL": "autoresearch@localhost",
}

AGENT_INSTRUCTIONS = f"""\
# Your task
You are in a scratch copy of a research folder. Make ONE focused change to the editable
files to improve the metric, editing the files in place. Do not run long experiments: the
harness runs and measures your change after you finish. Do not touch other files.
When done, write a file named {PROPOSAL_FILE} holding a JSON object:
{{"description": "<one line: what you changed>", "hypothesis": "<why it should help>"}}
"""


class Agent(Proposer):
    """Runs ``[proposer.agent] command`` once per proposal in a scratch copy of the domain."""

    name = "agent"
    Config = AgentConfig

    def __init__(self, config: AgentConfig, domain_dir: Path, log_dir: Path | None = None) -> None:
        """``log_dir`` (default: set by ``start`` to the run's ``agent-logs/``) keeps each
        proposal's transcript."""
        if not config.command or not shlex.split(config.command):
            raise ConfigError(
                "agent proposer: no command. Set [proposer.agent] command in autoresearch.toml, "
                'e.g. command = "claude -p --permission-mode acceptEdits".'
            )
        self.config = config
        self.domain_dir = domain_dir
        self.log_dir = log_dir or Layout(domain_dir).agent_logs
        self._log_dir_given = log_dir is not None
        self._base_files: dict[str, str] = {}  # set by start: the base commit's files

    @classmethod
    def from_config(
        cls, config: ResearchConfig, domain_dir: Path, options: ProposerOptions
    ) -> Agent:
        return cls(config.proposer.agent, domain_dir)

    def check_files(self, config: ResearchConfig, read: Callable[[str], str | None]) -> None:
        require_program(config, read, "agent")

    def start(self, settings: ProposerSettings) -> None:
        self._base_files = dict(settings.base_files)
        if not self._log_dir_given:
            self.log_dir = Layout(settings.domain_dir).agent_logs

    def propose(self, context: Context) -> Candidate:
        scratch = Path(tempfile.mkdtemp(prefix="autoresearch-agent-"))
        try:
            work = scratch / "domain"
            before = self._materialize(work, context.files)
            prompt = render_context(context) + "\n" + AGENT_INSTRUCTIONS
            prompt_file = scratch / "prompt.md"
            prompt_file.write_text(prompt, encoding="utf-8")
            log_path = self.log_dir / f"agent-{context.experiment_id}.log"
            self._run(work, prompt, prompt_file, log_path)
            after = _snapshot(work, self._ignore)
            edits = _diff(before, after)
            if not edits:
                raise ProposalError(
                    f"the agent command changed no files (its log: {log_path}):\n" + _tail(log_path)
                )
            description, hypothesis = _proposal(work / PROPOSAL_FILE, log_path, edits)
            return Candidate(
                description=description,
                edits=edits,
                hypothesis=hypothesis,
                meta={"agent_log": str(log_path)},
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _materialize(self, work: Path, files: Mapping[str, str]) -> dict[str, bytes]:
        """The folder as the agent sees it: the base commit's files (read by the driver from
        git, never the live checkout), with the incumbent's editable files over them."""
        work.mkdir(parents=True)
        for rel, text in {**self._base_files, **files}.items():
            dst = work / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text, encoding="utf-8")
        _git_init(work)
        return _snapshot(work, self._ignore)

    @property
    def _ignore(self) -> list[str]:
        return [*self.config.ignore, SCRATCH_GIT_IGNORE]

    def _run(self, work: Path, prompt: str, prompt_file: Path, log_path: Path) -> None:
        words = shlex.split(self.config.command or "")
        argv = [w.replace(PROMPT_PLACEHOLDER, str(prompt_file)) for w in words]
        if self.config.prompt_via == "arg" and not any(PROMPT_PLACEHOLDER in w for w in words):
            if len(prompt.encode("utf-8")) > MAX_ARG_PROMPT_BYTES:
                raise ProposalError(
                    f"the prompt ({len(prompt.encode('utf-8'))} bytes) is too long to pass as a "
                    f'command-line argument; set [proposer.agent] prompt_via = "stdin", or put '
                    f"{PROMPT_PLACEHOLDER} in the command to pass a file name"
                )
            argv.append(prompt)
        marker = new_marker("autoresearch-agent")
        env = scrub_env(dict(os.environ), allow=self.config.env_allow)
        env[MARKER_VAR] = marker
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=work,
                env=env,
                stdin=subprocess.PIPE if self.config.prompt_via == "stdin" else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            raise ProposalError(f"the agent command {argv[0]!r} could not start: {e}") from None
        assert proc.stdout is not None
        pump = CappedLog(proc.stdout, log_path, AGENT_LOG_LIMIT_BYTES)
        code: int | None = None
        try:
            if proc.stdin is not None:
                # From a thread: a prompt larger than the pipe buffer blocks the write until
                # the agent reads it, and the time limit must hold meanwhile.
                threading.Thread(
                    target=_feed, args=(proc.stdin, prompt.encode("utf-8")), daemon=True
                ).start()
            try:
                code = proc.wait(timeout=max(0.0, self.config.timeout_s - _since(started)))
            except subprocess.TimeoutExpired:
                code = None
        finally:
            # Whatever the outcome (Ctrl-C and SIGTERM included), nothing the agent started
            # may outlive the proposal or write into the scratch folder once it is deleted.
            kill_tree(lambda: pids_with_marker(marker), proc.pid, KILL_GRACE_S)
            proc.wait()
            pump.join(LOG_DRAIN_S)
        if code is None:
            raise ProposalError(
                f"the agent command did not finish within {self.config.timeout_s:.0f} s "
                f"([proposer.agent] timeout_s) and was stopped after "
                f"{_since(started):.0f} s; its log ({log_path}) ends with:\n" + _tail(log_path)
            )
        if code != 0:
            raise ProposalError(
                f"the agent command exited with code {code}; its log ({log_path}) ends with:\n"
                + _tail(log_path)
            )


def _since(started: float) -> float:
    return time.monotonic() - started


def _feed(stdin: IO[bytes], data: bytes) -> None:
    try:
        stdin.write(data)
        stdin.close()
    except (BrokenPipeError, ValueError, OSError):
        pass


def _git_init(work: Path) -> None:
    """Make the scratch copy a one-commit git repository; best effort (no git, no repo)."""
    # No GIT_DIR or GIT_WORK_TREE from the driver's environment: they would point git elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | _GIT_IDENTITY
    for argv in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "--no-verify", "--no-gpg-sign", "-m", "autoresearch: base"],
    ):
        try:
            subprocess.run(argv, cwd=work, env=env, capture_output=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return


def _snapshot(work: Path, ignore: list[str]) -> dict[str, bytes]:
    out = {}
    for root, _dirs, names in os.walk(work):
        for name in names:
            path = Path(root, name)
            rel = path.relative_to(work).as_posix()
            if rel == PROPOSAL_FILE or any(fnmatch.fnmatchcase(rel, g) for g in ignore):
                continue
            if path.is_file() and not path.is_symlink():
                out[rel] = path.read_bytes()
    return out


def _diff(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> tuple[Edit, ...]:
    edits = []
    for rel in sorted(set(before) | set(after)):
        old, new = before.get(rel), after.get(rel)
        if old == new:
            continue
        if new is None:
            edits.append(Edit(rel, delete=True))
            continue
        try:
            edits.append(Edit(rel, content=new.decode("utf-8")))
        except UnicodeDecodeError:
            raise ProposalError(
                f"the agent wrote {rel}, which is not UTF-8 text; only text edits can be "
                "recorded (add it to [proposer.agent] ignore if it is a by-product)"
            ) from None
    return tuple(edits)


def _proposal(path: Path, log_path: Path, edits: tuple[Edit, ...]) -> tuple[str, str]:
    """Description and hypothesis: from the proposal file, else DESCRIPTION:/HYPOTHESIS:
    lines in the agent's output, else a description naming the changed files."""
    description = hypothesis = ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            description = str(data.get("description") or "")
            hypothesis = str(data.get("hypothesis") or "")
    except (OSError, ValueError):
        pass
    if not description:
        for line in _tail(log_path, 20000).splitlines():
            head, _, rest = line.strip().partition(":")
            if head.upper() == "DESCRIPTION" and rest.strip():
                description = rest.strip()
            elif head.upper() == "HYPOTHESIS" and rest.strip():
                hypothesis = hypothesis or rest.strip()
    if not description:
        description = "agent edit of " + ", ".join(e.path for e in edits)
    return description, hypothesis


def _tail(log_path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"
