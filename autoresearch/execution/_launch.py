"""How one command of a run is started: the command line that puts it in its cgroups and its
namespaces, the network attached to a sandbox that has one, and the checked disk budget."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from autoresearch.execution import _bwrap
from autoresearch.execution._proc import MemoryCgroup, PidsCgroup

Role = Literal["command", "eval"]
# Seconds allowed for bubblewrap to set a sandbox up and for pasta to attach its network.
SETUP_TIMEOUT_S = 20.0
# Shortest pause between two measurements of the workdir's size, and how much longer than a
# measurement the pause is (a huge tree is measured less often, at a bounded cost).
DISK_POLL_S = 0.5
DISK_POLL_FACTOR = 20.0
# Most files and folders a run's folder may hold where disk_limit_mb is set.
MAX_FILES = 200_000


class SetupFailed(Exception):
    """bubblewrap exited before the command started (it may be retried: nothing ran)."""


@dataclass
class Launch:
    """A command ready to start: ``argv``/``env``/``pass_fds`` for Popen, then ``started``
    once it runs (attaches the network, lets it go on) and ``close`` after it ended."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    network: bool = False
    _info_r: int | None = None
    _block_w: int | None = None
    _ready: bytes | None = None
    _tmp: str | None = None
    _pasta: subprocess.Popen[bytes] | None = None
    _fds_to_close: list[int] = field(default_factory=list)

    def started(self, stdout_fd: int) -> str | None:
        """Called right after Popen. None when the command may run, else why it cannot;
        SetupFailed when the sandbox never started."""
        for fd in self._fds_to_close:  # the child's ends
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds_to_close.clear()
        if self._info_r is None or self._block_w is None:
            return None
        pid = _read_child_pid(self._info_r)
        if pid is None:
            raise SetupFailed("the sandbox did not start (bubblewrap reported no child)")
        if self.network:
            why = self._attach_network(pid)
            if why is not None:
                return why
        with contextlib.suppress(OSError):
            os.write(self._block_w, b"1")
        # Set-up (the loopback, the mounts) is done when the shell inside prints the nonce;
        # bubblewrap exits instead when it fails (it can, under load), before the command ran.
        if self._ready is not None:
            got = _read_exactly(stdout_fd, len(self._ready))
            if got != self._ready:
                raise SetupFailed(got.decode(errors="replace").strip() or "no output")
        return None

    def _attach_network(self, pid: int) -> str | None:
        """Start pasta in the foreground (it ends by itself when the namespace is gone, also
        when a killed driver's sandbox goes) and wait until it wrote its pid file: the
        network is then up."""
        assert self._tmp is not None
        pid_file = os.path.join(self._tmp, "pasta.pid")
        try:
            self._pasta = subprocess.Popen(
                _bwrap.pasta_argv(pid, pid_file),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            return f"network = true: pasta failed to start ({e})"
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while not _non_empty(pid_file):
            if self._pasta.poll() is not None:
                err = self._pasta.communicate()[1].decode(errors="replace").strip().splitlines()
                return f"network = true: pasta failed ({err[-1] if err else 'no message'})"
            if time.monotonic() > deadline:
                return "network = true: pasta did not come up in time"
            time.sleep(0.005)
        return _block_host_addresses(pid)

    def close(self) -> None:
        for fd in (*self._fds_to_close, self._info_r, self._block_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fds_to_close.clear()
        self._info_r = self._block_w = None
        if self._pasta is not None:
            # It ends by itself with the namespace; told to end now, it is reaped in the
            # background (waiting for it here would cost every run ~30 ms).
            pasta, self._pasta = self._pasta, None
            if pasta.poll() is None:
                pasta.terminate()
            threading.Thread(target=_reap, args=(pasta,), daemon=True).start()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def plain_launch(
    command: str,
    env: dict[str, str],
    memory: MemoryCgroup | None,
    pids: PidsCgroup | None,
    no_network: bool,
) -> Launch:
    """Without namespaces: the shell joins the cgroups and runs the command (``unshare -n``
    for no network, where permitted)."""
    argv = [*_join_cgroups(memory, pids), "/bin/sh", "-c", command]
    if no_network:
        argv = ["unshare", "-n", "--", *argv]
    return Launch(argv=argv, env=env)


def sandboxed_launch(
    command: str,
    env: dict[str, str],
    mounts: _bwrap.Mounts,
    memory: MemoryCgroup | None,
    pids: PidsCgroup | None,
    network: bool,
    role: Role,
) -> Launch:
    """In namespaces: the shell joins the cgroups, then execs bubblewrap, whose children
    inherit them and cannot leave (no writable cgroup file system inside)."""
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    nonce = f"autoresearch-sandbox-ready-{uuid.uuid4().hex}"
    # Inside: print the nonce (the set-up is done), then become the command.
    ready = f'printf "%s\\n" {nonce} && exec /bin/sh -c "$1"'
    argv = [
        *_join_cgroups(memory, pids),
        *_bwrap.bwrap_argv(mounts, info_fd=info_w, block_fd=block_r),
        "/bin/sh",
        "-c",
        ready,
        "autoresearch-run",
        command,
    ]
    return Launch(
        argv=argv,
        env=_bwrap.sandbox_env(env, role=role, devices=mounts.devices, network=network),
        pass_fds=(info_w, block_r),
        network=network,
        _info_r=info_r,
        _block_w=block_w,
        _ready=f"{nonce}\n".encode(),
        _tmp=tempfile.mkdtemp(prefix="autoresearch-launch-") if network else None,
        _fds_to_close=[info_w, block_r],
    )


def _join_cgroups(memory: MemoryCgroup | None, pids: PidsCgroup | None) -> list[str]:
    files = [str(memory.procs_file)] if memory is not None else []
    if pids is not None and pids.procs_file is not None:
        files.append(str(pids.procs_file))
    if not files:
        return []
    joins = " && ".join(f"echo $$ > {shlex.quote(f)}" for f in files)
    return ["/bin/sh", "-c", f'{joins} && exec "$@"', "autoresearch-run"]


def _read_exactly(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes: fewer at the end of the pipe or past the set-up time."""
    data = b""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _read_child_pid(fd: int) -> int | None:
    data = b""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while b"}" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        data += chunk
    try:
        return int(json.loads(data[: data.index(b"}") + 1])["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def _non_empty(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def fixed_file_binds(
    workdir: Path, fixed: Mapping[str, bytes], pristine: str | None
) -> dict[Path, Path]:
    """Each fixed file of the workdir, bound read-only over itself (the command cannot
    rewrite or replace it) or, for the evaluator, over it from the pristine copy."""
    binds: dict[Path, Path] = {}
    for rel in fixed:
        dest = workdir / rel
        if pristine is not None:
            binds[dest] = Path(pristine) / rel
        elif dest.is_file() and not dest.is_symlink():
            binds[dest] = dest
    return binds


class DiskBudget:
    """A checked budget for what the workdir (and the candidates' cache, which the run may
    write) holds: measured while the run goes (never more often than its cost allows) and
    once at its end."""

    def __init__(self, roots: list[Path], limit_mb: int | None) -> None:
        self.roots = roots
        self.limit_mb = limit_mb
        self._next = 0.0
        self.used_mb = 0.0

    def due(self) -> bool:
        return self.limit_mb is not None and time.monotonic() >= self._next

    def over(self) -> str | None:
        """Measure now; the reason when the workdir holds more than the limit (in MB, or in
        files: a million empty files take no blocks but minutes to delete)."""
        if self.limit_mb is None:
            return None
        start = time.monotonic()
        usage = [tree_usage(root) for root in self.roots]
        self.used_mb, files = sum(u[0] for u in usage), sum(u[1] for u in usage)
        cost = time.monotonic() - start
        self._next = time.monotonic() + max(DISK_POLL_S, cost * DISK_POLL_FACTOR)
        if self.used_mb > self.limit_mb:
            return (
                f"the workdir and the candidates' cache hold {self.used_mb:.0f} MB > "
                f"disk_limit_mb={self.limit_mb}"
            )
        if files > MAX_FILES:
            return (
                f"the workdir and the candidates' cache hold {files} files and folders "
                f"(at most {MAX_FILES})"
            )
        return None


def tree_usage(root: Path) -> tuple[float, int]:
    """Disk space the files under ``root`` take (MB of allocated blocks; symlinks not
    followed), and how many entries there are."""
    total = count = 0
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += st.st_blocks * 512
                count += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total / (1024 * 1024), count


@functools.cache
def can_unshare_net() -> str | None:
    """None if ``unshare -n`` works here, else why not."""
    exe = shutil.which("unshare")
    if exe is None:
        return "the 'unshare' tool is not installed"
    try:
        res = subprocess.run([exe, "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare failed: {e}"
    if res.returncode != 0:
        return f"unshare -n is not permitted here ({res.stderr.decode(errors='replace').strip()})"
    return None


def timeout_reason(
    timeout_s: float, signalled_at: float | None, start: float, after_signal_s: float | None
) -> str:
    if signalled_at is not None and after_signal_s is not None:
        return (
            f"ran past budget + grace ({after_signal_s:g} s after it signalled the start of "
            f"its budget at {signalled_at - start:.1f} s); raise time_budget_s or grace_s"
        )
    return (
        f"exceeded the hard limit of {timeout_s:g} s (start-up allowance + budget + grace) "
        "without finishing; a slow start needs startup_allowance_s raised (or the command "
        "should call autoresearch.harness.budget_started())"
    )


def trim_cache(cache: Path | None, limit_mb: int | None) -> bool:
    """Empty the candidates' shared cache when it holds more than half the disk budget (a
    run that filled it must not leave the next one without room). Returns whether it did."""
    if cache is None or limit_mb is None or not cache.is_dir():
        return False
    used_mb, files = tree_usage(cache)
    if used_mb <= limit_mb / 2 and files <= MAX_FILES // 2:
        return False
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    return True


def host_addresses() -> list[str]:
    """Every address of this machine's interfaces (a bridge, a VPN, one added to lo): through
    pasta, a connection to any of them would reach the host's services bound to 0.0.0.0."""
    try:
        out = subprocess.run(
            ["ip", "-j", "addr"], capture_output=True, text=True, timeout=SETUP_TIMEOUT_S
        ).stdout
        interfaces = json.loads(out)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    found = []
    for interface in interfaces if isinstance(interfaces, list) else []:
        for info in interface.get("addr_info", []):
            if info.get("family") in ("inet", "inet6") and isinstance(info.get("local"), str):
                found.append(info["local"])
    return found


def _block_host_addresses(pid: int) -> str | None:
    """Inside the sandbox's network namespace, a route to each host address is unreachable;
    its own addresses (pasta copies the host's main one) stay local, and it cannot change
    routes (no capability in its namespace). None when done, else why not."""
    lines = []
    for address in host_addresses():
        lines.append(f"route add unreachable {address}/{128 if ':' in address else 32}\n")
    if not lines:
        return None
    try:
        res = subprocess.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-force", "-batch", "-"],
            input="".join(lines),
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"network = true: cannot fence off the host's addresses ({e})"
    # -force goes on past an address that is already a route (link-local ones); a failure of
    # every line means the namespace was not reached.
    if res.returncode != 0 and res.stderr.count("\n") >= len(lines):
        return f"network = true: cannot fence off the host's addresses ({res.stderr.strip()})"
    return None
