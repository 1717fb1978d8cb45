"""Sandbox: run a candidate's commands with a wall-clock budget, a memory cap, a scrubbed
environment, whole-tree kill and a capped log."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

from autoresearch._types import RunResult, Status
from autoresearch.execution import _bwrap
from autoresearch.execution._gpu import gpu_devices
from autoresearch.execution._launch import (
    DISK_POLL_S,
    DiskBudget,
    Launch,
    Role,
    SetupFailed,
    can_unshare_net,
    fixed_file_binds,
    plain_launch,
    sandboxed_launch,
    timeout_reason,
    trim_cache,
)
from autoresearch.execution._pristine import (
    BUDGET_FILE_VAR,
    eval_environment,
    fixed_files_intact,
    pristine_copy,
)
from autoresearch.execution._proc import (
    GIT_LOCATION_VARS,
    MARKER_VAR,
    CappedLog,
    MemoryCgroup,
    PidsCgroup,
    kill_tree,
    new_marker,
    pids_with_marker,
    rss_mb,
    scrub_env,
)
from autoresearch.execution._spec import RunSpec, Sandbox

Isolation = Literal["auto", "namespaces", "none"]

# Tries to set a sandbox up before the run counts as a crash (bubblewrap can fail to set up a
# namespace's loopback under heavy load, before anything of the command ran).
SETUP_ATTEMPTS = 3
# Seconds between SIGTERM and SIGKILL when a run is ended.
KILL_GRACE_S = 3.0
# How often the RSS of a run is sampled where no cgroup enforces the memory cap.
RSS_POLL_S = 0.1
# Seconds to wait for the log pump after the run's processes are gone.
LOG_DRAIN_S = 5.0
# How often the sandbox looks for the command's "budget started" signal.
SIGNAL_POLL_S = 0.2


class LocalSandbox(Sandbox):
    """Runs commands on this machine.

    Isolation (``isolation="auto"``: where bubblewrap works; ``"namespaces"``: required;
    ``"none"``: off): each command runs in namespaces of its own (_bwrap.py), the evaluator in
    fresh ones after every process of the command is gone, with the fixed files bound from a
    pristine copy and the evaluator-only data that the command never saw.

    Containment: every process of the run carries a marker in its environment and, where
    cgroups are writable, sits in a memory cgroup and a pids cgroup of its own; the kill on
    timeout, cancel or exit reaches all of them (grandchildren, and processes that called
    setsid). The memory cap is the cgroup's (the kernel's OOM killer) or, without cgroups, a
    poll of the tree's RSS. RLIMIT_AS is never used: it breaks CUDA.
    """

    def __init__(self, isolation: Isolation = "auto") -> None:
        self._cancel = threading.Event()
        self._wake = threading.Event()
        self._warnings: list[str] = []
        if isolation not in ("auto", "namespaces", "none"):
            raise ValueError(f"isolation={isolation!r}: use 'auto', 'namespaces' or 'none'")
        why = None if isolation == "none" else _bwrap.isolation_unavailable()
        if isolation == "namespaces" and why is not None:
            raise RuntimeError(f"isolation='namespaces' is not possible here: {why}")
        self._isolated = isolation != "none" and why is None
        self.isolation_problem = why if isolation == "auto" else None

    @property
    def isolated(self) -> bool:
        return self._isolated

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    def cancel(self) -> None:
        self._cancel.set()
        self._wake.set()

    def run(self, spec: RunSpec) -> RunResult:
        try:
            return self._run(spec)
        finally:
            # A cancel is consumed by the run it ended (or, if it came before, the next one).
            self._cancel.clear()

    def _run(self, spec: RunSpec) -> RunResult:
        env = self._environment(spec)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        for folder in (spec.cache_dir, spec.eval_cache_dir):
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
        command_env = dict(env)
        if trim_cache(spec.cache_dir, spec.disk_limit_mb):
            self._note("the candidates' cache outgrew half of disk_limit_mb and was emptied")
        if spec.cache_dir is not None:
            command_env["AUTORESEARCH_CACHE_DIR"] = str(spec.cache_dir)
        status, reason, code, wall, peak = self._run_one(
            spec, spec.command, spec.log_path, spec.timeout_s, command_env, spec.after_signal_s
        )
        eval_code = None
        if status is None and spec.eval_command and fixed_files_intact(spec):
            assert spec.eval_log_path is not None
            eval_env = {**env, **spec.eval_env}
            if spec.eval_cache_dir is not None:
                eval_env["AUTORESEARCH_CACHE_DIR"] = str(spec.eval_cache_dir)
            with pristine_copy(spec.fixed_files) as pristine:
                e_status, e_reason, eval_code, e_wall, e_peak = self._run_one(
                    spec,
                    spec.eval_command,
                    spec.eval_log_path,
                    spec.eval_timeout_s or spec.timeout_s,
                    eval_environment(eval_env, pristine),
                    role="eval",
                    pristine=pristine,
                )
            wall += e_wall
            peak = max(peak, e_peak)
            if e_status is not None:
                status, reason = e_status, f"eval_command: {e_reason}"
        return RunResult(
            workdir=spec.workdir,
            log_path=spec.log_path,
            exit_code=code,
            wall_s=wall,
            peak_memory_mb=peak,
            seed=spec.seed,
            failure=status,
            reason=reason,
            eval_log_path=spec.eval_log_path if spec.eval_command else None,
            eval_exit_code=eval_code,
        )

    def _environment(self, spec: RunSpec) -> dict[str, str]:
        env = scrub_env(dict(os.environ), spec.env_allow, spec.env_deny)
        for name in GIT_LOCATION_VARS:  # a candidate's git must not reach the user's repository
            env.pop(name, None)
        env.update(spec.env)
        # The interpreter running the harness comes first on PATH, so `python` in a command
        # is the one with the project's packages even when no venv is activated.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["AUTORESEARCH_TIME_BUDGET_S"] = f"{spec.time_budget_s:g}"
        env["AUTORESEARCH_SEED"] = str(spec.seed)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("VIRTUAL_ENV_PROMPT", None)
        if spec.gpu_ids is not None:
            env["CUDA_VISIBLE_DEVICES"] = spec.gpu_ids
        return env

    def _run_one(
        self,
        spec: RunSpec,
        command: str,
        log_path: Path,
        timeout_s: float,
        base_env: dict[str, str],
        after_signal_s: float | None = None,
        role: Role = "command",
        pristine: str | None = None,
    ) -> tuple[Status | None, str, int | None, float, float]:
        marker = new_marker(spec.marker_prefix)
        env = dict(base_env)
        env[MARKER_VAR] = marker
        signal_dir = None
        if after_signal_s is not None:
            signal_dir = tempfile.mkdtemp(prefix="autoresearch-signal-")
            env[BUDGET_FILE_VAR] = os.path.join(signal_dir, "budget-started")
        try:
            return self._run_proc(
                spec, command, log_path, timeout_s, env, marker, after_signal_s, role, pristine
            )
        finally:
            if signal_dir is not None:
                shutil.rmtree(signal_dir, ignore_errors=True)

    def _launch(
        self,
        spec: RunSpec,
        command: str,
        env: dict[str, str],
        memory: MemoryCgroup | None,
        pids: PidsCgroup | None,
        role: Role,
        pristine: str | None,
        signal_dir: str | None,
    ) -> Launch:
        if not self._isolated:
            no_net = not spec.network and can_unshare_net() is None
            if not spec.network and not no_net:
                self._note(f"network=false not enforced: {can_unshare_net()}")
            return plain_launch(command, env, memory, pids, no_net)
        readable = list(spec.data_dirs)
        writable = [*spec.rw_dirs] if role == "command" else []
        cache = spec.cache_dir if role == "command" else spec.eval_cache_dir
        if cache is not None:
            writable.append(cache)
        if signal_dir is not None:
            writable.append(Path(signal_dir))
        if role == "eval":
            readable += spec.eval_data_dirs
            if pristine is not None:
                readable.append(Path(pristine))
        mounts = _bwrap.Mounts(
            workdir=spec.workdir,
            read_only_files=fixed_file_binds(spec.workdir, spec.fixed_files, pristine),
            read_only_dirs=tuple(readable),
            writable_dirs=tuple(writable),
            devices=gpu_devices(spec.gpu_ids),
            tmp_limit_mb=spec.disk_limit_mb,
            nested=role == "eval",
        )
        return sandboxed_launch(command, env, mounts, memory, pids, spec.network, role)

    def _run_proc(
        self,
        spec: RunSpec,
        command: str,
        log_path: Path,
        timeout_s: float,
        env: dict[str, str],
        marker: str,
        after_signal_s: float | None,
        role: Role = "command",
        pristine: str | None = None,
    ) -> tuple[Status | None, str, int | None, float, float]:
        name = marker.replace(":", "-")
        cgroup = MemoryCgroup.create(name, spec.memory_limit_mb)
        if spec.memory_limit_mb is not None and cgroup is None:
            self._note("memory cap enforced by polling RSS (cgroups not writable here)")
        pids = None
        if spec.pids_limit is not None:
            pids = PidsCgroup.create(name, spec.pids_limit, cgroup)
            if pids is None:
                self._note("pids_limit not enforced (no writable pids cgroup here)")

        def find_pids() -> list[int]:
            # The cgroup lists every process of the run (it cannot be left); without one,
            # the environment marker finds them, also after setsid() or a double fork.
            return cgroup.pids() if cgroup is not None else pids_with_marker(marker)

        def remove_cgroups() -> None:
            for group in (cgroup, pids):
                if group is not None:
                    group.remove()

        if self._cancel.is_set():  # cancelled before it started: do not start it
            remove_cgroups()
            return Status.INTERRUPTED, "interrupted", None, 0.0, 0.0
        budget_file = env.get(BUDGET_FILE_VAR) if after_signal_s is not None else None
        signal_dir = os.path.dirname(budget_file) if budget_file else None
        roots = [spec.workdir, *([spec.cache_dir] if spec.cache_dir is not None else [])]
        disk = DiskBudget(roots, spec.disk_limit_mb if role == "command" else None)
        log_limit = int(spec.log_limit_mb * 1024 * 1024)
        self._wake.clear()
        start = time.monotonic()
        setup_error: str | None = None
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            launch = self._launch(spec, command, env, cgroup, pids, role, pristine, signal_dir)
            try:
                proc = subprocess.Popen(
                    launch.argv,
                    cwd=spec.workdir,
                    env=launch.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=launch.pass_fds,
                )
            except OSError as e:
                launch.close()
                remove_cgroups()
                return Status.CRASH, f"could not start: {e}", None, 0.0, 0.0
            try:
                assert proc.stdout is not None
                setup_error = launch.started(proc.stdout.fileno())
                break
            except SetupFailed as e:
                # Nothing of the command ran (it waits for the go-ahead): say why, try again.
                try:
                    out, _ = proc.communicate(timeout=KILL_GRACE_S * 10)
                except subprocess.TimeoutExpired:
                    kill_tree(find_pids, proc.pid, KILL_GRACE_S)
                    out, _ = proc.communicate()
                launch.close()
                why = out.decode(errors="replace").strip()[-300:] or str(e)
                if attempt == SETUP_ATTEMPTS:
                    remove_cgroups()
                    return Status.CRASH, f"the sandbox did not start: {why}", None, 0.0, 0.0
                self._note(f"the sandbox failed to start and was started again ({why})")
                time.sleep(0.1 * attempt)
        assert proc.stdout is not None
        log = CappedLog(proc.stdout, log_path, log_limit)

        def wait_then_wake() -> None:
            proc.wait()
            self._wake.set()

        threading.Thread(target=wait_then_wake, daemon=True).start()
        deadline = start + timeout_s
        signalled_at: float | None = None
        poll_rss = cgroup is None
        peak = 0.0
        failure: Status | None = None
        reason = ""
        if setup_error is not None:
            failure, reason = Status.CRASH, setup_error
        while failure is None and proc.poll() is None:
            if budget_file is not None and signalled_at is None and os.path.exists(budget_file):
                assert after_signal_s is not None
                signalled_at = time.monotonic()
                deadline = min(deadline, signalled_at + after_signal_s)
            remaining = deadline - time.monotonic()
            if self._cancel.is_set():
                failure, reason = Status.INTERRUPTED, "interrupted"
                break
            if remaining <= 0:
                failure, reason = (
                    Status.TIMEOUT,
                    timeout_reason(timeout_s, signalled_at, start, after_signal_s),
                )
                break
            if disk.due():
                over = disk.over()
                if over is not None:
                    failure, reason = Status.CRASH, over
                    break
            wait = remaining
            if poll_rss:
                wait = min(wait, RSS_POLL_S)
            if budget_file is not None and signalled_at is None:
                wait = min(wait, SIGNAL_POLL_S)
            if disk.limit_mb is not None:
                wait = min(wait, DISK_POLL_S)
            self._wake.wait(wait)
            self._wake.clear()
            if poll_rss:
                peak = max(peak, rss_mb(find_pids()))
                if spec.memory_limit_mb is not None and peak > spec.memory_limit_mb:
                    failure = Status.OOM
                    reason = (
                        f"process tree RSS {peak:.0f} MB > memory_limit_mb={spec.memory_limit_mb}"
                    )
                    break
        # End the whole tree: on failure, and also strays left behind by a clean exit.
        kill_tree(find_pids, proc.pid, KILL_GRACE_S if failure else 0.2)
        code = proc.wait()
        wall = time.monotonic() - start
        launch.close()
        if not log.join(LOG_DRAIN_S):
            self._note("a process outside the run's reach kept its output open (it may still run)")
        if failure is None:
            over = disk.over()
            if over is not None:
                failure, reason = Status.CRASH, over
        if cgroup is not None:
            peak = max(peak, cgroup.peak_mb())
            if failure is None and cgroup.oom_killed():
                failure = Status.OOM
                reason = f"killed by the kernel at memory_limit_mb={spec.memory_limit_mb}"
        if failure is None and code != 0 and pids is not None and pids.hit_limit():
            failure = Status.CRASH
            reason = f"exit code {code}; it reached pids_limit={spec.pids_limit}"
        remove_cgroups()
        if self._cancel.is_set():
            # Also when Ctrl-C reached the child itself (it shares the terminal's group until
            # it calls setsid): the run was interrupted, not a crash.
            failure, reason = Status.INTERRUPTED, "interrupted"
        elif failure is None and code != 0:
            failure = Status.CRASH
            reason = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
        return failure, reason, code, wall, peak

    def _note(self, message: str) -> None:
        if message not in self._warnings:
            self._warnings.append(message)


def end_strays(marker_prefix: str) -> int:
    """End every process whose run marker starts with ``marker_prefix`` (e.g. runs of a
    driver that died). Returns how many were found."""
    return kill_tree(lambda: pids_with_marker(marker_prefix), None, KILL_GRACE_S)
