"""SandboxContract: the Sandbox contract as a test suite to inherit."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from autoresearch._types import RunResult, Status
from autoresearch.execution._sandbox import RunSpec, Sandbox


class SandboxContract:
    """The :class:`~autoresearch.Sandbox` contract (see its docstring) as a test suite.

    Override :meth:`make_sandbox`. The specs carry the shell commands below; a sandbox that
    runs something else overrides them with commands that mean the same. Checks: a clean
    run writes its log and passes the seed and folder through; a failing command is a CRASH,
    never an exception; the eval command runs after a clean run only, into its own log; a
    run past its limit is a TIMEOUT; ``cancel()`` from another thread ends a run as
    INTERRUPTED, and a cancel before a run ends only the next one; ``warnings`` are strings.
    """

    #: A command that exits 0 after printing ``ok_output``.
    ok_command: str = "echo hello"
    ok_output: str = "hello\n"
    #: A command that prints ``failing_output`` and exits non-zero.
    failing_command: str = "echo before; exit 3"
    failing_output: str = "before\n"
    #: A command that runs until it is ended.
    endless_command: str = "sleep 120"
    #: An eval command and what it prints.
    eval_command: str = "echo evaluated"
    eval_output: str = "evaluated\n"
    #: The limit (seconds) given to the endless command when a TIMEOUT is expected.
    short_timeout_s: float = 1.0
    #: Seconds after which a run the contract expects to end early counts as hung.
    max_wait_s: float = 30.0
    #: Seconds into an endless run at which another thread calls cancel().
    cancel_after_s: float = 0.3

    def make_sandbox(self) -> Sandbox:
        """Build the sandbox under test."""
        raise NotImplementedError("override make_sandbox() in your test class")

    def spec(self, tmp_path: Path, command: str, **changes: Any) -> RunSpec:
        """A spec for ``command`` with a folder and logs under ``tmp_path``."""
        workdir = tmp_path / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        logs = tmp_path / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        fields: dict[str, Any] = {
            "workdir": workdir,
            "command": command,
            "log_path": logs / "run.log",
            "time_budget_s": self.max_wait_s,
            "timeout_s": self.max_wait_s,
            "seed": 7,
        }
        fields.update(changes)
        return RunSpec(**fields)

    # -- the checks ----------------------------------------------------------------------
    def test_a_clean_run_writes_its_log(self, tmp_path: Path) -> None:
        spec = self.spec(tmp_path, self.ok_command)
        r = self.make_sandbox().run(spec)
        assert isinstance(r, RunResult), f"run() returned {type(r).__name__}"
        assert r.ok and r.failure is None, f"a clean run failed: {r.failure}: {r.reason}"
        assert r.log_path == spec.log_path, "the result names another log than the spec"
        assert r.log_text().strip() == self.ok_output.strip(), (
            f"the log holds {r.log_text()!r}, not what the command printed"
        )
        assert (r.seed, r.workdir) == (spec.seed, spec.workdir), "seed or folder not passed on"
        assert r.eval_log_path is None, "no eval command, yet an eval log"

    def test_a_failing_command_is_a_crash_not_an_exception(self, tmp_path: Path) -> None:
        r = self.make_sandbox().run(self.spec(tmp_path, self.failing_command))
        assert r.failure is Status.CRASH, f"a failing command gave {r.failure}, not a crash"
        assert r.reason, "a failure needs a reason"
        assert self.failing_output.strip() in r.log_text(), "a failed run's output is kept"

    def test_the_eval_command_runs_after_a_clean_run(self, tmp_path: Path) -> None:
        eval_log = tmp_path / "logs" / "eval.log"
        spec = self.spec(
            tmp_path, self.ok_command, eval_command=self.eval_command, eval_log_path=eval_log
        )
        r = self.make_sandbox().run(spec)
        assert r.ok, f"{r.failure}: {r.reason}"
        assert r.eval_log_path == eval_log and eval_log.is_file(), "the eval log is missing"
        assert r.trusted_output().strip() == self.eval_output.strip(), (
            "the trusted output must be the eval command's"
        )
        assert r.log_text().strip() == self.ok_output.strip(), "the command's log is its own"

    def test_no_eval_after_a_failed_command(self, tmp_path: Path) -> None:
        eval_log = tmp_path / "logs" / "eval.log"
        spec = self.spec(
            tmp_path, self.failing_command, eval_command=self.eval_command, eval_log_path=eval_log
        )
        r = self.make_sandbox().run(spec)
        assert r.failure is Status.CRASH, f"{r.failure}: {r.reason}"
        assert not eval_log.exists() or not eval_log.read_text().strip(), (
            "the eval command ran after the command failed"
        )

    def test_a_run_past_its_limit_is_a_timeout(self, tmp_path: Path) -> None:
        spec = self.spec(
            tmp_path,
            self.endless_command,
            time_budget_s=self.short_timeout_s,
            timeout_s=self.short_timeout_s,
        )
        started = time.monotonic()
        r = self.make_sandbox().run(spec)
        assert r.failure is Status.TIMEOUT, f"gave {r.failure}: {r.reason}"
        assert r.reason, "a timeout needs a reason"
        assert time.monotonic() - started < self.max_wait_s, "the run was not ended in time"

    def test_cancel_from_another_thread_interrupts(self, tmp_path: Path) -> None:
        sandbox = self.make_sandbox()
        timer = threading.Timer(self.cancel_after_s, sandbox.cancel)
        started = time.monotonic()
        timer.start()
        try:
            r = sandbox.run(self.spec(tmp_path, self.endless_command))
        finally:
            timer.cancel()
        assert r.failure is Status.INTERRUPTED, f"a cancelled run gave {r.failure}: {r.reason}"
        assert time.monotonic() - started < self.max_wait_s, "cancel() did not end the run"

    def test_a_cancel_before_a_run_ends_only_the_next_one(self, tmp_path: Path) -> None:
        sandbox = self.make_sandbox()
        sandbox.cancel()
        first = sandbox.run(self.spec(tmp_path, self.ok_command))
        assert first.failure is Status.INTERRUPTED, f"gave {first.failure}: {first.reason}"
        second = sandbox.run(self.spec(tmp_path, self.ok_command))
        assert second.ok, f"the cancel reached a later run too: {second.failure}"

    def test_warnings_are_strings(self, tmp_path: Path) -> None:
        sandbox = self.make_sandbox()
        sandbox.run(self.spec(tmp_path, self.ok_command, network=False))
        warnings = sandbox.warnings
        assert isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)


__all__ = ["SandboxContract"]
