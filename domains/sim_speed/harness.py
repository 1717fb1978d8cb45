"""The fixed harness of sim_speed: the benchmark and the correctness gate.

    python harness.py check        the experiment's command: sim.py compiles (nothing of it
                                   runs: candidate code runs only in the children below)
    python harness.py bench        the benchmark: steps/s of the candidate's sim.py on fresh
                                   episodes, its trajectories compared with the reference's
    python harness.py gate         the correctness gate: fresh episodes against the reference
                                   simulator, 12 fixed ones against reference.json, and
                                   gymnasium's check_env
    python harness.py regenerate   rewrite reference.json from reference_sim.py

The candidate's code never runs in this process. Each simulation runs in a fresh child whose
folder holds only a copy of the simulator, as ``sim.py``, and ``runner.py``: ``python -I``
with a minimal environment (nothing of the engine's: no seed, no cache), inside an evaluator
in a nested sandbox of its own (the engine's, as the kit's isolated calls get it: no /proc,
so not ours; no worktree, no cache, no network; its folder read-only). Nothing a run leaves
behind reaches the next one, and nothing the untimed command did can be replayed: that
command never imports sim.py.

Every benchmark and gate run draws its episodes afresh from ``os.urandom``: the seeds and the
action sequences. ``reference_sim.py`` (a frozen copy of the unmodified sim.py) plays the same
episodes in a child of its own, untimed, before the candidate does; the candidate's
trajectories (observations, rewards, terminations, all integers) must equal it line for line.
A simulator that knows the answers to some fixed set of episodes gains nothing.

The benchmark times the candidate's child by CPU time (user + system, from the kernel's
rusage of the child and of every process under it, counted when it is reaped), not wall time:
on a shared machine the wall clock also counts the time other processes held the CPU, while
CPU time of single-threaded code is much steadier. The child's start-up (Python, numpy and
gymnasium imports) is counted too, so no work can hide before the timed part. A process
nobody waits for takes its CPU time with it, so nothing may escape the reaping: in the
nested sandbox runner.py is pid 1 of its namespace, kills and reaps everything left when the
simulator is done, and fails a simulator that started a thread or a process (the rules
forbid them); a plain child's leftovers are reparented to this process (a subreaper), which
kills and reaps them.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.harness import candidate_lines, env_int

HERE = Path(__file__).resolve().parent
SIM = "sim.py"  # the candidate's
REFERENCE_SIM = "reference_sim.py"  # the unmodified simulator, frozen (a fixed file)
RUNNER = "runner.py"
REFERENCE = "reference.json"  # hashes of the fixed episodes, from reference_sim.py
BENCH_EPISODES = env_int("SIM_BENCH_EPISODES", 4)  # fresh episodes per benchmark run
GATE_EPISODES = env_int("SIM_GATE_EPISODES", 12)  # fresh episodes per gate run
FIXED_SEEDS = list(range(12))  # reference.json's episodes, with the fixed action sequence
STEPS = 100  # steps per episode at most (sim.MAX_STEPS truncates first)
N_ACTIONS = 5  # stay, north, east, south, west
CHILD_TIMEOUT_S = 300.0
LEFTOVER_S = 10.0  # how long ending what a child left behind may take
MAX_SIM_BYTES = 16 * 2**20
MAX_STREAM_BYTES = 32 * 2**20  # trajectory bytes one child may send (a 24-episode gate: ~0.1 MB)
TAIL_LINES = 40  # lines of the child's own output kept for error messages
LINE_CHARS = 1000
# Set by the engine in an evaluator's sandbox: the start of a nested sandbox's command line
# (autoresearch.harness documents it; its isolated calls use it the same way).
SANDBOX_PREFIX_VAR = "AUTORESEARCH_ISOLATED_CALL_SANDBOX"
# The child's whole environment, from ours: nothing of the engine's (no seed, no cache).
ENV_ALLOW = ("PATH", "HOME", "LANG", "TMPDIR", "TZ", "LD_LIBRARY_PATH", "AUTORESEARCH_RUN_MARKER")
# numpy's BLAS would start threads otherwise; the rules allow none.
THREADS_ONE = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EXTRA_TASKS = 86  # runner.py's exit code: the simulator started a thread or a process
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_DUMPABLE = 4


class HarnessError(Exception):
    """The run cannot be judged; the message says why."""


def fixed_action(seed: int, t: int) -> int:
    """reference.json's action sequence (its hashes depend on it)."""
    return (seed * 7 + t * 3 + (t // 11)) % N_ACTIONS


def fixed_episodes() -> list[dict]:
    return [{"seed": s, "actions": [fixed_action(s, t) for t in range(STEPS)]} for s in FIXED_SEEDS]


def fresh_episodes(n: int) -> list[dict]:
    """``n`` episodes no file holds: seeds and actions from os.urandom."""
    rng = random.SystemRandom()
    return [
        {"seed": rng.getrandbits(63), "actions": [rng.randrange(N_ACTIONS) for _ in range(STEPS)]}
        for _ in range(n)
    ]


# -- the children -------------------------------------------------------------------------


def _subreaper() -> None:
    # Where no nested sandbox holds the child, orphans of the child (a worker it forked and
    # left) become ours: their CPU time is counted when we reap them, and we end them.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _protect() -> None:
    # Non-dumpable: a plain child (the gate's) cannot open our /proc files (environ, fds).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _pin() -> None:
    # This process and, inherited, every child: one CPU, the last one it may use.
    if hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})


def _my_children() -> list[int]:
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(text.rsplit(")", 1)[1].split()[1]) == me:
                out.append(int(entry))
    return out


def _end_leftovers() -> None:
    """Kill and reap every process a child left behind (they were reparented to us)."""
    deadline = time.monotonic() + LEFTOVER_S
    while True:
        left = _my_children()
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if not left:
            return
        if time.monotonic() > deadline:
            raise HarnessError(f"processes the simulator left behind would not end: {left}")
        time.sleep(0.01)


def _simulator(path: Path) -> Path:
    try:
        st = os.lstat(path)
    except OSError as e:
        raise HarnessError(f"cannot read {path.name}: {e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise HarnessError(f"{path.name} is not a regular file")
    if st.st_size > MAX_SIM_BYTES:
        raise HarnessError(f"{path.name} is {st.st_size} bytes, more than {MAX_SIM_BYTES}")
    return path


@dataclass
class Played:
    """What one child did: its trajectories, whether check_env passed, CPU and wall seconds
    of it and of every process under it."""

    episodes: list[list[str]]
    check_env: bool
    stray: int  # lines outside any episode
    cpu_s: float
    wall_s: float


def _child_env(nested: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOW or k.startswith("LC_")}
    env.update(THREADS_ONE)
    if nested:
        env["SIM_RUNNER_INIT"] = "1"
    return env


def _argv(folder: Path) -> tuple[list[str], bool]:
    """The child's command line: inside an evaluator, in a nested sandbox of its own (the
    engine's start for one: no /proc, no data, no network), its folder read-only, the runner
    as pid 1 of its namespace. Elsewhere (no engine sandbox, or a candidate's: the gate's),
    a plain child; the subreaper catches what it leaves."""
    argv = [sys.executable, "-I", "-B", str(folder / RUNNER)]
    raw = os.environ.get(SANDBOX_PREFIX_VAR)
    if not raw:
        return argv, False
    try:
        prefix = json.loads(raw)
    except ValueError:
        prefix = None
    if not isinstance(prefix, list) or not all(isinstance(a, str) for a in prefix):
        raise HarnessError(f"{SANDBOX_PREFIX_VAR} is not the engine's JSON list")
    own = ["--ro-bind", str(folder), str(folder), "--as-pid-1", "--chdir", str(folder), "--"]
    return [*prefix, *own, *argv], True


def _drain(fd: int, keep: Callable[[bytes], None]) -> None:
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            keep(chunk)


def play(simulator: Path, workload: dict) -> Played:
    """``workload`` on ``simulator`` in a child whose folder holds only copies of it (as
    sim.py) and of runner.py. HarnessError where the child failed."""
    folder = Path(tempfile.mkdtemp(prefix="sim-speed-"))
    try:
        shutil.copyfile(_simulator(simulator), folder / SIM)
        shutil.copyfile(HERE / RUNNER, folder / RUNNER)
        argv, nested = _argv(folder)
        return _run(argv, folder, _child_env(nested), workload)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(argv: list[str], folder: Path, env: dict[str, str], workload: dict) -> Played:
    stream = bytearray()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    partial = [b""]

    def keep_stream(chunk: bytes) -> None:
        if len(stream) < MAX_STREAM_BYTES:
            stream.extend(chunk)

    def keep_output(chunk: bytes) -> None:
        *lines, partial[0] = (partial[0] + chunk).split(b"\n")
        partial[0] = partial[0][-LINE_CHARS:]
        for line in lines:
            tail.extend(candidate_lines(line.decode("utf-8", "replace")))

    traj_r, traj_w = os.pipe()
    out_r, out_w = os.pipe()
    env["SIM_TRAJECTORY_FD"] = str(traj_w)
    _end_leftovers()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=folder,
            env=env,
            stdin=subprocess.PIPE,
            stdout=out_w,
            stderr=out_w,
            pass_fds=(traj_w,),
            start_new_session=True,
        )
    except OSError as e:
        for fd in (traj_r, traj_w, out_r, out_w):
            os.close(fd)
        raise HarnessError(f"could not start the simulator's process: {e}") from None
    os.close(traj_w)
    os.close(out_w)
    readers = [
        threading.Thread(target=_drain, args=(traj_r, keep_stream), daemon=True),
        threading.Thread(target=_drain, args=(out_r, keep_output), daemon=True),
    ]
    for reader in readers:
        reader.start()
    assert proc.stdin is not None
    with contextlib.suppress(OSError):  # a child that is gone already says so by its code
        proc.stdin.write((json.dumps(workload) + "\n").encode())
        proc.stdin.close()
    timed_out = False
    try:
        code = proc.wait(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
    _end_leftovers()  # what a plain child left behind: its CPU time is the child's too
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for reader in readers:
        reader.join(LEFTOVER_S)
    if partial[0]:
        tail.extend(candidate_lines(partial[0].decode("utf-8", "replace")))
    output = "\n".join(["its output ends:", *tail]) if tail else "it printed nothing"
    if timed_out:
        raise HarnessError(f"the simulator did not finish within {CHILD_TIMEOUT_S:g} s; {output}")
    if code == EXTRA_TASKS:
        raise HarnessError(
            "the simulator started a thread or a process: the rules forbid them (the CPU "
            "time of a process nobody waits for is not counted)"
        )
    if code != 0:
        raise HarnessError(f"the simulator's process failed (exit code {code}); {output}")
    if len(stream) >= MAX_STREAM_BYTES:
        raise HarnessError(f"the simulator wrote more than {MAX_STREAM_BYTES} bytes of trajectory")
    episodes: list[list[str]] = []
    check_env, stray = False, 0
    for line in stream.decode("utf-8", "replace").split("\n")[:-1]:
        if line.startswith("E "):
            episodes.append([line])
        elif line == "check_env ok":
            check_env = True
        elif episodes:
            episodes[-1].append(line)
        else:
            stray += 1
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Played(episodes, check_env, stray, cpu, wall)


def reference_play(episodes: list[dict]) -> list[list[str]]:
    try:
        played = play(HERE / REFERENCE_SIM, {"episodes": episodes})
    except HarnessError as e:
        raise HarnessError(f"the reference simulator failed: {e}") from None
    if len(played.episodes) != len(episodes) or played.stray:
        raise HarnessError("the reference simulator's trajectories are malformed")
    return played.episodes


def first_difference(got: Played, want: list[list[str]], what: str) -> str | None:
    """Where ``got`` first differs from the reference's ``want`` (None: nowhere)."""
    if got.stray:
        return f"{what}: the simulator wrote {got.stray} line(s) before its first episode"
    if len(got.episodes) != len(want):
        return f"{what}: the simulator played {len(got.episodes)} episodes, not {len(want)}"
    for i, (mine, ref) in enumerate(zip(got.episodes, want, strict=True)):
        if mine == ref:
            continue
        seed = ref[0].split()[1]
        for t in range(max(len(mine), len(ref))):
            a = mine[t] if t < len(mine) else "(no line)"
            b = ref[t] if t < len(ref) else "(no line)"
            if a != b:
                at = "after reset" if t == 0 else f"at step {t}"
                return (
                    f"{what}: episode {i + 1} of {len(want)} (seed {seed}) differs from the "
                    f"reference simulator's {at}: got {a[:200]!r}, want {b[:200]!r}"
                )
    return None


def steps(episodes: list[list[str]]) -> int:
    return sum(len(lines) - 1 for lines in episodes)


def digest(lines: list[str]) -> str:
    return hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()


# -- the modes ------------------------------------------------------------------------------


def check() -> None:
    """The experiment's command: sim.py compiles. Nothing of it runs here."""
    path = _simulator(HERE / SIM)
    try:
        compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise HarnessError(f"sim.py does not compile: {type(e).__name__}: {e}") from None
    print("check: sim.py compiles; the benchmark runs it in a sandboxed child of its own")


def bench() -> None:
    episodes = fresh_episodes(BENCH_EPISODES)
    want = reference_play(episodes)  # first: nothing of the candidate's is running then
    try:
        got = play(HERE / SIM, {"episodes": episodes})
    except HarnessError as e:
        raise HarnessError(f"the candidate's sim.py: {e}") from None
    wrong = first_difference(got, want, "benchmark")
    if wrong:
        print(wrong)
    n = steps(want)
    print("---")
    print(f"steps_per_s: {n / max(got.cpu_s, 1e-9):.3f}")
    print(f"cpu_s: {got.cpu_s:.4f}")
    print(f"child_wall_s: {got.wall_s:.4f}")
    print(f"steps: {n}")
    # 1: the timed run played the reference's trajectories, on episodes drawn for it alone
    # (the objective does not measure a run without it).
    print(f"trajectory_ok: {0 if wrong else 1}")


def gate() -> None:
    fixed, fresh = fixed_episodes(), fresh_episodes(GATE_EPISODES)
    want = reference_play(fresh)
    try:
        got = play(HERE / SIM, {"episodes": fixed + fresh, "check_env": True})
    except HarnessError as e:
        raise HarnessError(f"the candidate's sim.py: {e}") from None
    if got.stray or len(got.episodes) != len(fixed) + len(fresh):
        raise HarnessError(
            f"the simulator played {len(got.episodes)} episodes, not {len(fixed) + len(fresh)}"
        )
    played_fresh = Played(got.episodes[len(fixed) :], got.check_env, 0, got.cpu_s, got.wall_s)
    wrong = first_difference(played_fresh, want, f"{len(fresh)} fresh episodes")
    if wrong:
        raise HarnessError(f"{wrong}: the candidate changes what the simulation does")
    hashes = reference()["gate"]["episodes"]
    bad = [
        str(seed)
        for seed, lines in zip(FIXED_SEEDS, got.episodes, strict=False)
        if digest(lines) != hashes[str(seed)]
    ]
    if bad:
        raise HarnessError(
            f"trajectory hash differs from {REFERENCE} for seed(s) {', '.join(bad)} of "
            f"{len(FIXED_SEEDS)} fixed episodes: the candidate changes what the simulation "
            "does, not only how fast"
        )
    if not got.check_env:
        raise HarnessError("gymnasium's check_env did not pass")
    print(
        f"gate: {len(fresh)} fresh episodes match the reference simulator, {len(fixed)} fixed "
        f"ones match {REFERENCE} ({steps(got.episodes)} steps); check_env passed"
    )


def reference() -> dict:
    return json.loads((HERE / REFERENCE).read_text(encoding="utf-8"))


def regenerate() -> None:
    episodes = reference_play(fixed_episodes())
    out = {
        "regenerate": "python harness.py regenerate (plays reference_sim.py)",
        "gate": {
            "steps": STEPS,
            "episodes": {
                str(s): digest(lines) for s, lines in zip(FIXED_SEEDS, episodes, strict=True)
            },
        },
    }
    (HERE / REFERENCE).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {HERE / REFERENCE}")


def main(argv: list[str]) -> int:
    modes = {"check": check, "bench": bench, "gate": gate, "regenerate": regenerate}
    if len(argv) != 2 or argv[1] not in modes:
        print(f"usage: python harness.py {{{','.join(modes)}}}", file=sys.stderr)
        return 2
    for name, value in (
        ("SIM_BENCH_EPISODES", BENCH_EPISODES),
        ("SIM_GATE_EPISODES", GATE_EPISODES),
    ):
        if value < 1:
            print(f"{name}={value}: at least 1 episode", file=sys.stderr)
            return 2
    _subreaper()
    _protect()
    _pin()
    try:
        modes[argv[1]]()
    except HarnessError as e:
        print(f"{argv[1]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
