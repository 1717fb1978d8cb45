"""Plays a workload on a simulator for the fixed harness, in a sandboxed process of its own.

Fixed file. ``harness.py`` copies this file and one simulator (the candidate's ``sim.py``, or
``reference_sim.py`` under the name ``sim.py``) into a fresh folder that holds nothing else,
and starts ``python -I -B runner.py`` there: in a nested sandbox of its own where the engine
provides one (no /proc, no worktree, no cache, no network), as the first process (pid 1) of
its own pid namespace. It reads the workload on stdin (each episode's seed and actions,
drawn afresh by the harness for every run) and forks the process that imports ``sim`` and
plays it, streaming each episode's trajectory on the pipe named by ``SIM_TRAJECTORY_FD``:
``E seed`` and the observation after ``reset``, then one line per step: the observation, the
reward, terminated and truncated (all integers). The harness compares the lines with the
reference simulator's on the same workload; nothing this process says about its own speed is
read. From the moment ``sim`` is imported, the forked process is the candidate's.

This process never imports ``sim``. As pid 1 of its namespace it outlives everything the
candidate starts: once the simulator's process has exited it kills and reaps whatever is left
(so the kernel counts every process's CPU time into the harness's), then checks that the
simulator started no thread or process (the rules forbid them; a process that is not waited
for takes its CPU time with it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback

FD_VAR = "SIM_TRAJECTORY_FD"
INIT_VAR = "SIM_RUNNER_INIT"  # "1": the harness made this process pid 1 of its namespace
EXTRA_TASKS = 86  # exit code: the simulator started a thread or a process
_PR_SET_DUMPABLE = 4


def _ints(values: object) -> str:
    return " ".join(str(int(v)) for v in values)  # type: ignore[attr-defined]


def play(work: dict, out: object) -> None:
    """The simulator's side: ``import sim``, then every episode of ``work``."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sim

    write = out.write  # type: ignore[attr-defined]
    env = sim.ForageEnv()
    for episode in work["episodes"]:
        seed = episode["seed"]
        obs, _ = env.reset(seed=seed)
        write(f"E {seed} {_ints(obs)}\n")
        for action in episode["actions"]:
            obs, reward, terminated, truncated, _ = env.step(action)
            write(f"{_ints(obs)} {int(reward)} {int(bool(terminated))} {int(bool(truncated))}\n")
            if terminated or truncated:
                break
    if work.get("check_env"):
        from gymnasium.utils.env_checker import check_env

        check_env(sim.ForageEnv(), skip_render_check=True)
        write("check_env ok\n")


def _simulator(work: dict, fd: int) -> int:
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            play(work, out)
    except BaseException:  # SystemExit too: a simulator that exits has not played
        traceback.print_exc()
        return 1
    return 0


def _end_all() -> None:
    # As pid 1: every other process of the namespace is killed and reaped by us.
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main() -> int:
    work = json.loads(sys.stdin.readline())
    fd = int(os.environ[FD_VAR])
    init = os.environ.get(INIT_VAR) == "1" and os.getpid() == 1
    # Pid 1 gets only the signals it handles: none from the candidate's processes.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = _simulator(work, fd)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    code = code if code >= 0 else 128 - code
    if init:
        _end_all()
        # Pids of a fresh namespace are handed out in order (after a wrap, from 300 on):
        # the next one is ours + 1 only if no thread or process was made in between.
        probe = os.fork()
        if probe == 0:
            os._exit(0)
        os.waitpid(probe, 0)
        if code == 0 and probe != pid + 1:
            return EXTRA_TASKS
    return code


if __name__ == "__main__":
    sys.exit(main())
