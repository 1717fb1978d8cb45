"""Calling candidate code from a trusted evaluator, in a child interpreter it cannot reach out of.

The child is ``python -I -P -B`` (no PYTHON* variables, no user site, neither the script's folder
nor the working folder on sys.path), started in a fresh empty folder with a fixed, minimal
environment and stdin closed, as the leader of its own process group. Only the named folders
are importable there. Arguments and results travel over a private pair of pipes (_wire.py):
JSON values and numpy arrays in .npy format, never pickles, every reply checked. What the child
prints never reaches the caller's stdout: it is passed on to stderr with every line prefixed
``[candidate] ``, kept privately for error messages, or dropped. A call past its time limit
kills the child's whole process group.

Security model: from the moment it loads the module, the child belongs to the candidate, who
has read this file. The caller trusts nothing the child sends. Not covered here: a process
that leaves the process group with setsid() (the engine's sandbox finds those by its run
marker or cgroup), and files the child can reach by path (the sandbox's namespaces). On Linux
the calling process is made non-dumpable, so a same-user child cannot open its /proc files
(its stdout, its memory) from outside.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from autoresearch.harness import _wire
from autoresearch.harness._budget import ISOLATED_VAR
from autoresearch.harness._summary import OUTPUT_LOCK

CANDIDATE_PREFIX = "[candidate] "
# Set by the engine in an evaluator's sandbox (autoresearch.execution._bwrap.ISOLATED_CALL_VAR).
SANDBOX_PREFIX_VAR = "AUTORESEARCH_ISOLATED_CALL_SANDBOX"
# The child's whole environment, from the caller's (plus what the caller passes as `env`): no
# credentials, no data locations, no engine paths. The run marker lets the engine's sandbox
# find the child should it outlive its caller (autoresearch.execution._proc.MARKER_VAR).
ENV_ALLOW = (
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "TZ",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "AUTORESEARCH_RUN_MARKER",
)
_CHILD = Path(__file__).with_name("_child.py")
DEFAULT_MAX_REPLY_MB = 1024.0  # arrays in one reply; more is refused before it is allocated
CLOSE_GRACE_S = 5.0  # a closed child may finish (exit hooks) this long before it is killed
DRAIN_JOIN_S = 2.0  # wait for the child's last output lines after it is gone
TAIL_LINES = 40  # lines of the child's output kept for error messages ("tail" mode)
STREAM_LINES = 200  # lines per child passed on to stderr ("stream" mode); the rest are counted
LINE_CHARS = 1000  # a longer output line is cut: each one goes out in one atomic write
_PIPE_BYTES = 2**20  # larger pipe buffers for replies: fewer system calls per large array
_F_SETPIPE_SZ = 1031  # Linux fcntl command (fcntl.F_SETPIPE_SZ on Python >= 3.10)
_PR_SET_DUMPABLE = 4

Output = Literal["stream", "tail", "drop"]


class IsolatedCallError(Exception):
    """The isolated call failed: it raised, died, timed out or broke the protocol.

    ``message`` is the caller's own text; ``details`` are lines from the child (its traceback's
    end; in "tail" mode also its output), each prefixed ``[candidate] ``. ``exception_type`` is
    the name of what the child raised, when it raised.
    """

    def __init__(
        self,
        message: str,
        details: Sequence[str] = (),
        exception_type: str | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)
        self.exception_type = exception_type
        self.timed_out = timed_out

    def __str__(self) -> str:
        return "\n".join([self.message, *self.details])


def candidate_lines(text: str) -> list[str]:
    """``text`` as lines that cannot pass for anything but the candidate's: every line break
    (``str.splitlines`` knows more than ``\\n``) starts a prefixed line, control characters
    become ``?`` and long lines are cut."""
    out = []
    for piece in text.splitlines() or [""]:
        clean = "".join(c if c.isprintable() or c == "\t" else "?" for c in piece[:LINE_CHARS])
        out.append(CANDIDATE_PREFIX + clean)
    return out


_protected = False


def _protect_caller() -> None:
    # Non-dumpable: /proc/<this pid>/fd, /mem and /environ are closed to same-user processes.
    global _protected
    if _protected or not sys.platform.startswith("linux"):
        return
    _protected = True
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Worker:
    """A module loaded once in an isolated child, then called any number of times.

    ``with Worker(path, timeout_s=60) as w: w.call("f", x)`` runs ``f(x)`` from the module at
    ``path`` in the child and returns what it returned. Arguments and return values are JSON
    values (tuples arrive as lists) and numpy arrays, nested as you like.

    - ``importable``: the folders on the child's sys.path, besides the interpreter's own
      (default: the module's folder; ``()`` for none).
    - ``cwd``: the child's working folder (default: a fresh empty one, removed on close).
    - ``env``: variables added to the minimal environment (``ENV_ALLOW``).
    - ``timeout_s``: limit on loading the module and on each call; past it the child's process
      group is killed and the worker is closed.
    - ``output``: what happens to the child's stdout/stderr: "stream" (to stderr, prefixed),
      "tail" (kept, shown only in errors, prefixed) or "drop".
    - ``max_reply_mb``: the most array data one reply may carry.

    An exception raised by a call leaves the worker usable; any other failure closes it. Module
    state lives on between calls: start a fresh worker where calls must not share anything.
    Not thread-safe; one worker per thread.
    """

    def __init__(
        self,
        module_path: str | os.PathLike[str],
        *,
        timeout_s: float,
        importable: Sequence[str | os.PathLike[str]] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        output: Output = "stream",
        max_reply_mb: float = DEFAULT_MAX_REPLY_MB,
    ) -> None:
        path = Path(module_path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no module to load at {path}")
        if output not in ("stream", "tail", "drop"):
            raise ValueError(f"output must be 'stream', 'tail' or 'drop', got {output!r}")
        self.module_path = path
        self.timeout_s = float(timeout_s)
        self.output = output
        self.max_reply_bytes = max_reply_mb * 2**20
        self.exit_code: int | None = None
        self._closed = False
        self._lock = threading.Lock()  # the output tail and counters, shared with the drain
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._streamed = self._suppressed = 0
        self._muted = False  # set on close: nothing more of the child reaches stderr
        self._own_cwd = cwd is None
        self._cwd = Path(tempfile.mkdtemp(prefix="isolated-")) if cwd is None else Path(cwd)
        folders = [path.parent] if importable is None else [Path(p) for p in importable]
        child_env = {k: v for k, v in os.environ.items() if k in ENV_ALLOW or k.startswith("LC_")}
        child_env.update(env or {})
        child_env[ISOLATED_VAR] = "1"
        _protect_caller()

        request_r, self._request_w = os.pipe()
        self._reply_r, reply_w = os.pipe()
        output_r, output_w = os.pipe()
        for fd in (self._request_w, self._reply_r):
            os.set_blocking(fd, False)
        with contextlib.suppress(OSError):
            import fcntl

            fcntl.fcntl(self._reply_r, _F_SETPIPE_SZ, _PIPE_BYTES)
        argv = [
            sys.executable,
            "-I",
            "-P",
            "-B",
            "-u",  # unbuffered: what it printed before it failed is not lost
            str(_CHILD),
            str(request_r),
            str(reply_w),
            str(path),
            path.stem,
            json.dumps([str(Path(p).resolve()) for p in folders]),
        ]
        argv = _in_own_sandbox(argv, self._cwd, self._own_cwd, [*folders, path.parent])
        try:
            self._proc = subprocess.Popen(
                argv,
                cwd=self._cwd,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=output_w,
                stderr=output_w,
                pass_fds=(request_r, reply_w),
                start_new_session=True,  # its own process group: one kill ends all it started
            )
        except OSError as e:
            for fd in (self._request_w, self._reply_r, output_r):
                os.close(fd)
            self._remove_cwd()
            raise IsolatedCallError(f"could not start the isolated child: {e}") from None
        finally:
            for fd in (request_r, reply_w, output_w):
                os.close(fd)
        self._finalizer = weakref.finalize(self, _kill_group, self._proc)
        self._drain = threading.Thread(target=self._drain_output, args=(output_r,), daemon=True)
        self._drain.start()
        try:
            self._receive(f"loading {path.name}")
        except BaseException:
            self._shutdown(CLOSE_GRACE_S)
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, function: str, /, *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in the child; its return value, or IsolatedCallError."""
        if self._closed:
            raise IsolatedCallError(f"{function}(): the isolated worker is closed")
        deadline = time.monotonic() + self.timeout_s
        request = {"function": function, "args": list(args), "kwargs": kwargs}
        try:
            _wire.send(_wire.Pipe(self._request_w, deadline), request)
        except _wire.ChannelTimeout:
            self._shutdown(0.0)
            raise self._error(f"{function}() did not take its arguments in time", True) from None
        except _wire.ChannelClosed:
            self._shutdown(0.0)
            raise self._error(f"the isolated child was gone before {function}()") from None
        return self._receive(f"{function}()", deadline)

    def _receive(self, what: str, deadline: float | None = None) -> Any:
        pipe = _wire.Pipe(self._reply_r, deadline or time.monotonic() + self.timeout_s)
        try:
            reply = _wire.receive(pipe, self.max_reply_bytes)
        except _wire.ChannelTimeout:
            self._shutdown(0.0)
            raise self._error(
                f"{what} did not finish within timeout_s={self.timeout_s:g}; "
                "the child's process group was killed",
                timed_out=True,
            ) from None
        except _wire.ChannelClosed:
            self._shutdown(DRAIN_JOIN_S)
            raise self._error(
                f"the isolated child ended during {what} (exit code {self.exit_code})"
            ) from None
        except _wire.ChannelError as e:
            self._shutdown(0.0)
            raise self._error(f"the isolated child sent {e} during {what}") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            self._shutdown(0.0)
            raise self._error(f"the isolated child sent a malformed reply during {what}")
        if reply["ok"]:
            return reply.get("value")
        kind = reply.get("type")
        kind = kind if isinstance(kind, str) and kind.isidentifier() else None
        lines = reply.get("traceback")
        text = "\n".join(x for x in lines if isinstance(x, str)) if isinstance(lines, list) else ""
        raise self._error(
            f"{what} raised {kind or 'an exception'}", details=candidate_lines(text), kind=kind
        )

    def _error(
        self,
        message: str,
        timed_out: bool = False,
        details: Sequence[str] = (),
        kind: str | None = None,
    ) -> IsolatedCallError:
        lines = list(details)
        with self._lock:
            tail = list(self._tail) if self.output == "tail" else []
        if tail:
            lines += ["its output ends:", *tail]
        return IsolatedCallError(message, lines, exception_type=kind, timed_out=timed_out)

    def close(self) -> int | None:
        """End the child: it may exit on its own within CLOSE_GRACE_S, then its process group
        is killed. Returns its exit code, None when it had to be killed. Idempotent."""
        self._shutdown(CLOSE_GRACE_S)
        return self.exit_code

    def _shutdown(self, grace_s: float) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._request_w)  # end of requests: the child's loop returns
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.exit_code = self._proc.wait(timeout=grace_s) if grace_s else None
        _kill_group(self._proc)  # also what it left running
        self._finalizer.detach()
        self._drain.join(DRAIN_JOIN_S)  # its last lines, unless a runaway holds the pipe
        with self._lock:
            self._muted = True
            suppressed = self._suppressed
        os.close(self._reply_r)
        if suppressed:
            self._write(f"{CANDIDATE_PREFIX}({suppressed} more lines not shown)")
        self._remove_cwd()

    def _remove_cwd(self) -> None:
        if self._own_cwd:
            shutil.rmtree(self._cwd, ignore_errors=True)

    def _drain_output(self, fd: int) -> None:
        pending = b""
        try:
            while chunk := os.read(fd, 65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > LINE_CHARS * 4:  # a line without end: pass on a cut piece
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self._emit(line)
            if pending:
                self._emit(pending)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _emit(self, raw: bytes) -> None:
        if self.output == "drop":
            return
        for line in candidate_lines(raw.decode("utf-8", "replace")):
            with self._lock:
                self._tail.append(line)
                if self.output != "stream" or self._muted:
                    continue
                if self._streamed >= STREAM_LINES:
                    self._suppressed += 1
                    continue
                self._streamed += 1
            self._write(line)

    @staticmethod
    def _write(line: str) -> None:
        with OUTPUT_LOCK:  # whole lines, never inside a summary block being printed
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def _in_own_sandbox(
    argv: list[str], cwd: Path, own_cwd: bool, readable: Sequence[Path]
) -> list[str]:
    """Inside an engine sandbox that allows it (an evaluator's), the child gets a sandbox of
    its own: the engine's command-line start for it (no /proc, so not the evaluator's; no
    data; no network), plus read-only the folders it imports from, and its working folder
    (writable if it is the child's own fresh one, else read-only: the caller's files).
    Elsewhere (no sandbox, or a candidate's own, where nothing is the evaluator's): as is."""
    raw = os.environ.get(SANDBOX_PREFIX_VAR)
    if not raw:
        return argv
    try:
        prefix = json.loads(raw)
    except ValueError:
        raise IsolatedCallError(f"{SANDBOX_PREFIX_VAR} is not the engine's JSON") from None
    if not isinstance(prefix, list) or not all(isinstance(a, str) for a in prefix):
        raise IsolatedCallError(f"{SANDBOX_PREFIX_VAR} is not the engine's JSON list")
    binds: list[str] = []
    for folder in dict.fromkeys(str(Path(p).resolve()) for p in readable):
        if os.path.isdir(folder):
            binds += ["--ro-bind", folder, folder]
    binds += ["--ro-bind", str(_CHILD.parent), str(_CHILD.parent)]
    binds += ["--bind" if own_cwd else "--ro-bind", str(cwd), str(cwd), "--chdir", str(cwd), "--"]
    return [*prefix, *binds, *argv]


def call_isolated(
    module_path: str | os.PathLike[str],
    function: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    timeout_s: float,
    importable: Sequence[str | os.PathLike[str]] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    output: Output = "stream",
    max_reply_mb: float = DEFAULT_MAX_REPLY_MB,
) -> Any:
    """One call in a fresh :class:`Worker`: the module is loaded, ``function(*args, **kwargs)``
    runs, and the child must then exit cleanly (code 0, within CLOSE_GRACE_S), else
    IsolatedCallError: an exit hook that fails the process fails the call."""
    worker = Worker(
        module_path,
        timeout_s=timeout_s,
        importable=importable,
        cwd=cwd,
        env=env,
        output=output,
        max_reply_mb=max_reply_mb,
    )
    try:
        value = worker.call(function, *args, **dict(kwargs or {}))
    finally:
        code = worker.close()
    if code != 0:
        ending = f"exited with code {code}" if code is not None else "did not exit"
        raise worker._error(f"{function}() returned, but its process then {ending}")
    return value
