"""Process-tree containment: credential scrubbing, a memory cgroup, finding and killing every
process a run started (also those that left its process group or session), capped logs."""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import os
import select
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import IO

# Every process of a run inherits this variable; it is how strays are found, even after
# setsid() or a double fork, and by a resumed driver after the old driver died.
MARKER_VAR = "AUTORESEARCH_RUN_MARKER"
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
CGROUP_V2 = Path("/sys/fs/cgroup")
CGROUP_V1_PIDS = Path("/sys/fs/cgroup/pids")
# Credential-looking variable names; AUTORESEARCH_* and a few harmless ones are kept.
_SECRET_SUBSTRINGS = ("KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
_SECRET_SUFFIXES = ("TOKEN", "_PAT", "_AUTH")
_SECRET_GLOBS = (
    "AWS_*",
    "AZURE_*",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GCLOUD_*",
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "GPG_AGENT_INFO",
    "*_API_BASE",
    "HF_TOKEN*",
    "NETRC",
)
# Set by git hooks, `git rebase --exec` and friends; inherited, they would point git commands
# (the engine's and a candidate's) at the user's own index or repository.
GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)
_ALWAYS_KEEP = ("PATH", "HOME", "LANG", "LC_*", "TERM", "TMPDIR", "USER", "SHELL", "PWD")


def is_credential(name: str) -> bool:
    upper = name.upper()
    if any(fnmatch.fnmatchcase(upper, g) for g in _ALWAYS_KEEP):
        return False
    if any(s in upper for s in _SECRET_SUBSTRINGS) or upper.endswith(_SECRET_SUFFIXES):
        return True
    return any(fnmatch.fnmatchcase(upper, g) for g in _SECRET_GLOBS)


def scrub_env(
    env: dict[str, str],
    allow: list[str] | tuple[str, ...] = (),
    deny: list[str] | tuple[str, ...] = (),
) -> dict[str, str]:
    """A copy of ``env`` without credentials; ``allow`` globs keep, ``deny`` globs remove."""
    out = {}
    for name, value in env.items():
        if any(fnmatch.fnmatchcase(name, g) for g in deny):
            continue
        if is_credential(name) and not any(fnmatch.fnmatchcase(name, g) for g in allow):
            continue
        out[name] = value
    return out


def new_marker(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex[:12]}"


def pids_with_marker(marker_prefix: str) -> list[int]:
    """Pids whose environment has MARKER_VAR starting with ``marker_prefix``."""
    needle = f"{MARKER_VAR}={marker_prefix}".encode()
    found = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                data = f.read()
        except OSError:
            continue
        for item in data.split(b"\0"):
            if item.startswith(needle):
                found.append(pid)
                break
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def kill_tree(find_pids: object, pgid: int | None, grace_s: float) -> int:
    """SIGTERM everything ``find_pids()`` returns (and the process group), wait up to
    ``grace_s``, then SIGKILL what is left. Returns how many processes were signalled."""
    assert callable(find_pids)
    pids: list[int] = find_pids()
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        pids = [p for p in find_pids() if _alive(p)]
        if not pids:
            break
        time.sleep(0.05)
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    leftovers = [p for p in find_pids() if _alive(p)]
    _signal_all(leftovers, signal.SIGKILL)
    return len(pids)


class MemoryCgroup:
    """A cgroup (v1 memory controller, or v2) for one run: a hard memory cap, the list of
    every process in it, the peak usage and whether the kernel OOM-killed anything.
    ``create`` returns None where cgroups are not writable (then the sandbox polls RSS)."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @classmethod
    def create(cls, name: str, limit_mb: int | None) -> MemoryCgroup | None:
        for version, root in ((1, CGROUP_V1_MEMORY), (2, CGROUP_V2)):
            if version == 2 and not (root / "cgroup.controllers").exists():
                continue
            if version == 1 and not (root / "memory.limit_in_bytes").exists():
                continue
            parent = root / _own_cgroup(version).lstrip("/")
            for base in (parent, root):
                path = base / f"autoresearch-{name}"
                try:
                    path.mkdir()
                    cg = cls(path, version)
                    if limit_mb is not None:
                        cg._set_limit(limit_mb)
                    return cg
                except OSError:
                    with contextlib.suppress(OSError):
                        path.rmdir()
        return None

    def _set_limit(self, limit_mb: int) -> None:
        limit = str(limit_mb * 1024 * 1024)
        if self.version == 1:
            (self.path / "memory.limit_in_bytes").write_text(limit)
            # Also cap swap so the limit is real where swap exists.
            with contextlib.suppress(OSError):
                (self.path / "memory.memsw.limit_in_bytes").write_text(limit)
        else:
            (self.path / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (self.path / "memory.swap.max").write_text("0")

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self.procs_file.read_text().split()]
        except OSError:
            return []

    def peak_mb(self) -> float:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int((self.path / name).read_text()) / (1024 * 1024)
        except (OSError, ValueError):
            return 0.0

    def oom_killed(self) -> bool:
        try:
            if self.version == 1:
                text = (self.path / "memory.oom_control").read_text()
                for line in text.splitlines():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1]) > 0
                return int((self.path / "memory.failcnt").read_text()) > 0
            text = (self.path / "memory.events").read_text()
            return any(
                line.split()[0] == "oom_kill" and int(line.split()[1]) > 0
                for line in text.splitlines()
            )
        except (OSError, ValueError, IndexError):
            return False

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


class PidsCgroup:
    """A cgroup (v1 pids controller, or the run's v2 group) capping how many processes of
    the run live at once: a fork bomb fails with EAGAIN inside the run, not on the machine.
    ``create`` returns None where the controller is not writable here."""

    def __init__(self, path: Path, own: bool) -> None:
        self.path = path
        self._own = own  # a v1 group of its own (removed), or the v2 memory group (not)

    @classmethod
    def create(cls, name: str, limit: int, memory: MemoryCgroup | None) -> PidsCgroup | None:
        if memory is not None and memory.version == 2:
            try:
                (memory.path / "pids.max").write_text(str(limit))
                return cls(memory.path, own=False)
            except OSError:
                return None
        root = CGROUP_V1_PIDS
        if not (root / "cgroup.procs").exists():
            return None
        for base in (root / _own_cgroup(1, "pids").lstrip("/"), root):
            path = base / f"autoresearch-{name}"
            try:
                path.mkdir()
                (path / "pids.max").write_text(str(limit))
                return cls(path, own=True)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return None

    @property
    def procs_file(self) -> Path | None:
        return self.path / "cgroup.procs" if self._own else None

    def hit_limit(self) -> bool:
        try:
            return int((self.path / "pids.events").read_text().split()[-1]) > 0
        except (OSError, ValueError, IndexError):
            return False

    def remove(self) -> None:
        if self._own:
            MemoryCgroup(self.path, 1).remove()


def remove_stale_cgroups(marker_prefix: str) -> int:
    """Remove empty cgroups of runs whose driver died (they are named after the run marker)."""
    removed = 0
    name = f"autoresearch-{marker_prefix}-"
    roots = ((1, CGROUP_V1_MEMORY, "memory"), (1, CGROUP_V1_PIDS, "pids"), (2, CGROUP_V2, ""))
    for version, root, controller in roots:
        for base in {root / _own_cgroup(version, controller or "memory").lstrip("/"), root}:
            try:
                stale = [p for p in base.iterdir() if p.name.startswith(name)]
            except OSError:
                continue
            for path in stale:
                with contextlib.suppress(OSError):
                    path.rmdir()
                    removed += 1
    return removed


def _own_cgroup(version: int, controller: str = "memory") -> str:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hier, controllers, path = line.split(":", 2)
            if version == 1 and controller in controllers.split(","):
                return path
            if version == 2 and hier == "0":
                return path
    except OSError:
        pass
    return "/"


def rss_mb(pids: list[int]) -> float:
    page_kb = os.sysconf("SC_PAGE_SIZE") / 1024
    total_kb = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total_kb += int(f.read().split()[1]) * page_kb
        except (OSError, IndexError, ValueError):
            continue
    return total_kb / 1024


class CappedLog:
    """Copies a pipe into a file, keeping at most ``limit_bytes``: the head is written as it
    arrives, the tail is held in memory and written at the end, with a marker between.
    A log flood cannot fill the disk, and the summary at the end is still there."""

    CHUNK = 65536
    # How often the pump checks whether it was told to stop (a stray process may hold the
    # pipe open forever).
    POLL_S = 0.2

    def __init__(self, source: IO[bytes], path: Path, limit_bytes: int) -> None:
        self.source = source
        self._stop = threading.Event()
        self.path = path
        self.head_limit = limit_bytes // 2
        self.tail_limit = limit_bytes - self.head_limit
        self.total = 0
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        written = 0
        with open(self.path, "wb") as out:
            fd = self.source.fileno()
            while True:
                ready, _, _ = select.select([fd], [], [], self.POLL_S)
                if not ready:
                    if self._stop.is_set():
                        break
                    continue
                chunk = os.read(fd, self.CHUNK)
                if not chunk:
                    break
                self.total += len(chunk)
                if written < self.head_limit:
                    part = chunk[: self.head_limit - written]
                    out.write(part)
                    out.flush()
                    written += len(part)
                    chunk = chunk[len(part) :]
                if chunk:
                    self._tail.append(chunk)
                    self._tail_size += len(chunk)
                    while self._tail_size - len(self._tail[0]) >= self.tail_limit:
                        self._tail_size -= len(self._tail.popleft())
            tail = b"".join(self._tail)[-self.tail_limit :] if self._tail else b""
            omitted = self.total - written - len(tail)
            if omitted > 0:
                out.write(f"\n[... autoresearch: {omitted} bytes of log omitted ...]\n".encode())
            out.write(tail)

    def join(self, timeout_s: float) -> bool:
        """Wait for the end of the output; past ``timeout_s`` (the pipe is held open by a
        process that escaped the kill), stop reading and still write the tail. Returns
        whether the output ended by itself."""
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            return True
        self._stop.set()
        self._thread.join()
        return False
