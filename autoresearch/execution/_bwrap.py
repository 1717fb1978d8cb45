"""The namespaces a run lives in: bubblewrap (Debian's ``bubblewrap``) and, for ``network =
true``, a user-mode network stack (``pasta``, Debian's ``passt``).

A candidate's command sees its workdir read-write; the fixed files over it read-only; the
system, the interpreter and its packages read-only; the data it is allowed read-only; its own
empty ``/tmp`` and ``$HOME`` (a size-limited tmpfs); a fresh ``/proc`` of its own pid namespace
(the driver is not in it); a ``/dev`` with only the basic nodes (and the slot's GPUs). It does
not see the repository's ``.git``, the ``.autoresearch`` state, the user's home, the evaluator's
data or ``/sys``. It runs as an unprivileged user of its own user namespace with every
capability dropped and cannot make another user namespace, so it cannot remount, unmount or
leave what it was given. It always has a network namespace of its own: with no network, only
its own loopback; with network, ``pasta`` gives it outbound access with the host's loopback
unmapped, so a local model server, a dashboard or a Ray head on the driver's loopback is out
of reach.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The unprivileged identity a run has inside its user namespace (Debian's "nobody").
SANDBOX_UID = 65534
SANDBOX_GID = 65534
SANDBOX_HOME = "/tmp/home"
# Top-level system folders: bound read-only where they are folders, recreated where the host
# has them as symlinks (/bin -> usr/bin on merged-/usr systems).
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Secrets in /etc that root can read: inside the sandbox the user maps to the driver's uid,
# so these are covered (files by an empty file, folders by an empty tmpfs).
_HIDDEN_FILES = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/machine-id",
)
_HIDDEN_DIRS = ("/etc/ssh", "/etc/ssl/private", "/etc/sudoers.d", "/etc/security")
# A minimal /dev: the data nodes and the standard streams (no terminals, no /dev/full);
# cheaper to set up than bubblewrap's --dev, and nothing a run needs is missing.
_DEV_ARGS = (
    "--size",
    str(1 << 20),
    "--tmpfs",
    "/dev",
    *(
        a
        for node in ("null", "zero", "random", "urandom")
        for a in ("--dev-bind", f"/dev/{node}", f"/dev/{node}")
    ),
    *("--symlink", "/proc/self/fd", "/dev/fd"),
    *(
        a
        for i, name in enumerate(("stdin", "stdout", "stderr"))
        for a in ("--symlink", f"/proc/self/fd/{i}", f"/dev/{name}")
    ),
)
# Files of the host's /proc a sandbox without its own /proc may see (no pid-specific ones).
_PROC_SAFE = ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat")
# Set for the run: which sandbox it is in ("command" or "eval").
ISOLATION_VAR = "AUTORESEARCH_ISOLATION"
# Set for an evaluator: the JSON command-line start of a sandbox for its isolated calls
# (autoresearch.harness reads it; it imports nothing of the engine).
ISOLATED_CALL_VAR = "AUTORESEARCH_ISOLATED_CALL_SANDBOX"
PASTA_FLAGS = (
    "--config-net",  # the addresses and routes of the host, inside the namespace
    "--no-map-gw",  # the gateway address does not lead to the host's loopback
    "-T",
    "none",  # no port forwarding in either direction
    "-U",
    "none",
    "-t",
    "none",
    "-u",
    "none",
    "-q",
    # pasta joins the namespace from outside; the namespace belongs to a user namespace the
    # driver (root) created, so it needs the driver's identity to join it. It then confines
    # itself (its own namespaces and seccomp); the candidate cannot signal or trace it.
    "--runas",
    "0",
)


@dataclass(frozen=True)
class Mounts:
    """What one sandbox sees. Paths are absolute and appear at the same place inside."""

    workdir: Path
    # Destination -> source, bound read-only over the workdir's files (the fixed files, or
    # the evaluator's pristine copies of them).
    read_only_files: Mapping[Path, Path]
    read_only_dirs: tuple[Path, ...] = ()
    writable_dirs: tuple[Path, ...] = ()
    devices: tuple[str, ...] = ()
    tmp_limit_mb: int | None = None
    # Whether the sandbox may create user namespaces (the evaluator, whose isolated calls
    # nest a sandbox of their own); a candidate's command may not.
    nested: bool = False
    # A fresh /proc of its own pid namespace; False: no /proc (only a few host-wide files).
    proc: bool = True
    # A network namespace of its own. Only an isolated call inside an evaluator with no
    # network goes without one: it then shares the evaluator's, which has no way out either
    # (and bubblewrap's loopback set-up, which can fail under load, is not repeated).
    own_network: bool = True
    # Cover /etc's secrets. Off only for an isolated call inside an evaluator's sandbox,
    # whose /etc already has them covered (and where the driver's empty folder is not).
    hide_secrets: bool = True


@functools.cache
def isolation_unavailable() -> str | None:
    """None if bubblewrap can make the namespaces here, else why not (for messages)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap is not installed (Debian: apt-get install -y bubblewrap)"
    probe = Mounts(workdir=Path("/"), read_only_files={})
    argv = [exe, *_namespace_args(probe), *_system_args(), "--proc", "/proc", "--", "true"]
    try:
        res = subprocess.run(argv, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap failed to start: {e}"
    if res.returncode != 0:
        why = res.stderr.decode(errors="replace").strip() or f"exit code {res.returncode}"
        return f"bubblewrap cannot make namespaces here ({why})"
    return None


@functools.cache
def network_stack_unavailable() -> str | None:
    """None if pasta can give a sandbox outbound network, else why not."""
    if shutil.which("pasta") is None:
        return "pasta is not installed (Debian: apt-get install -y passt)"
    return None


def bwrap_argv(m: Mounts, *, info_fd: int | None = None, block_fd: int | None = None) -> list[str]:
    """The bubblewrap command line for ``m`` (the command to run follows it)."""
    fds: list[str] = []
    if info_fd is not None:
        fds += ["--info-fd", str(info_fd)]
    if block_fd is not None:
        fds += ["--block-fd", str(block_fd)]
    argv = _base_argv(m, fds)
    argv += ["--bind", str(m.workdir), str(m.workdir)]
    for dest, src in sorted(m.read_only_files.items()):
        argv += ["--ro-bind", str(src), str(dest)]
    # The sandbox's own root (a tmpfs holding the mount points) read-only last: what a run
    # writes goes to its folder, /tmp, /dev/shm or its caches, each of them limited.
    argv += ["--remount-ro", "/", "--chdir", str(m.workdir), "--"]
    return argv


def isolated_call_prefix(devices: tuple[str, ...], network: bool) -> list[str]:
    """The start of the command line for the harness kit's isolated calls made inside an
    evaluator's sandbox: a sandbox of their own, with no /proc (they cannot see the evaluator),
    no data and no network; the kit adds the folders the call may import, its working folder
    (``--bind``) and ``--chdir DIR --``."""
    m = Mounts(
        workdir=Path("/"),
        read_only_files={},
        devices=devices,
        proc=False,
        own_network=network,
        hide_secrets=False,
    )
    return _base_argv(m)


def _base_argv(m: Mounts, fds: Sequence[str] = ()) -> list[str]:
    exe = shutil.which("bwrap") or "bwrap"
    argv = [exe, *_namespace_args(m), *fds]
    argv += _system_args(hide=m.hide_secrets)
    # The fresh file systems first, the binds after: a checkout, a venv or a run's folder
    # under /tmp is bound on top of the sandbox's own /tmp, never hidden by it.
    argv += ["--proc", "/proc"] if m.proc else _proc_files()
    argv += _DEV_ARGS
    size = [] if m.tmp_limit_mb is None else ["--size", str(m.tmp_limit_mb * 1024 * 1024)]
    argv += [*size, "--tmpfs", "/tmp", "--dir", SANDBOX_HOME]
    argv += [*size, "--tmpfs", "/dev/shm"]
    for dev in m.devices:
        argv += ["--dev-bind", dev, dev]
    if m.devices:  # the NVIDIA driver reads its PCI devices there
        argv += ["--ro-bind", "/sys", "/sys"]
    for path in interpreter_paths():
        argv += ["--ro-bind", str(path), str(path)]
    # "-try": a data path that does not exist (yet) is simply not there for the run.
    for path in m.read_only_dirs:
        argv += ["--ro-bind-try", str(path), str(path)]
    for path in m.writable_dirs:
        argv += ["--bind-try", str(path), str(path)]
    return argv


def _namespace_args(m: Mounts) -> list[str]:
    args = [
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--unshare-pid",
        *(["--unshare-net"] if m.own_network else []),
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    if not m.nested:
        args.append("--disable-userns")
    return args


@functools.cache
def _system_args(hide: bool = True) -> tuple[str, ...]:
    args: list[str] = []
    for top in _SYSTEM:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    if not hide:
        return tuple(args)
    for path in _HIDDEN_FILES:
        if os.path.isfile(path):
            args += ["--ro-bind", "/dev/null", path]
    empty = _empty_dir()
    for path in _HIDDEN_DIRS:
        if os.path.isdir(path):
            args += ["--ro-bind", empty, path]
    return tuple(args)


@functools.cache
def _empty_dir() -> str:
    """An empty folder of the driver's, bound read-only over the folders a run must not see
    (one mount each, where a tmpfs made read-only takes two)."""
    path = tempfile.mkdtemp(prefix="autoresearch-empty-")
    atexit.register(_remove_empty_dir, path)
    return path


def _remove_empty_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _proc_files() -> list[str]:
    args = ["--dir", "/proc"]
    for path in _PROC_SAFE:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


@functools.cache
def interpreter_paths() -> tuple[Path, ...]:
    """What the sandbox needs of this interpreter, read-only: its prefixes (a venv and the
    Python it was made from), its packages, and the source folders of editable installs —
    only their importable packages and modules, never a whole repository (its ``.git``, its
    state folders)."""
    found: list[Path] = []

    def add(path: Path) -> None:
        if path.exists() and not any(_within(path, f) for f in found):
            found[:] = [f for f in found if not _within(f, path)]
            found.append(path)

    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        add(Path(prefix).resolve())
    add(Path(sys.executable).resolve().parent)
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        add(Path(sysconfig.get_paths()[key]).resolve())
    for entry in _clean_sys_path():
        if not entry or not os.path.isdir(entry):
            continue
        path = Path(entry).resolve()
        if any(_within(path, f) for f in found) or _is_system(path):
            continue
        for part in _importable_parts(path):
            add(part)
    return tuple(found)


def _clean_sys_path() -> list[str]:
    """``sys.path`` as a fresh ``python`` of this interpreter has it (its prefixes, and the
    folders its site-packages' .pth files add: editable installs), not this process's (a test
    runner's folders, the current folder)."""
    probe = "import json, sys; print(json.dumps(sys.path))"
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60
        ).stdout
        paths = json.loads(out)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    return [p for p in paths if isinstance(p, str)]


def _importable_parts(folder: Path) -> list[Path]:
    """A ``sys.path`` folder outside the prefixes (an editable install's source root): its
    packages and modules, each resolved (a package may be a symlink to a sibling folder)."""
    parts = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir() and (path / "__init__.py").is_file():
            parts.append(path.resolve())
            # Symlinked subpackages (autoresearch/objectives -> ../objectives) point outside.
            for sub in path.iterdir():
                if sub.is_symlink() and sub.is_dir():
                    parts.append(sub.resolve())
        elif entry.is_file() and entry.name.endswith((".py", ".pth", ".so")):
            parts.append(path.resolve())
    return parts


def _is_system(path: Path) -> bool:
    return any(_within(path, Path(top)) for top in _SYSTEM)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def sandbox_env(
    env: Mapping[str, str], *, role: str, devices: tuple[str, ...] = (), network: bool = False
) -> dict[str, str]:
    """The run's environment as the sandbox shows it: its own home and temp folder."""
    out = dict(env)
    out["HOME"] = SANDBOX_HOME
    out["TMPDIR"] = "/tmp"
    out["USER"] = out["LOGNAME"] = "nobody"
    out[ISOLATION_VAR] = role
    if devices:  # the slot's indices are PCI bus order (gpu_devices)
        out["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    if role == "eval":
        out[ISOLATED_CALL_VAR] = json.dumps(isolated_call_prefix(devices, network))
    else:
        out.pop(ISOLATED_CALL_VAR, None)
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
        out.pop(name, None)
    return out


def pasta_argv(child_pid: int, pid_file: str) -> list[str]:
    """Attach a user-mode network to the namespace of ``child_pid``, in the foreground; it
    writes ``pid_file`` once the network is up and ends when the namespace is gone."""
    exe = shutil.which("pasta") or "pasta"
    return [exe, "-f", *PASTA_FLAGS, "-P", pid_file, "--netns", f"/proc/{child_pid}/ns/net"]


def exposed_without_isolation() -> Sequence[str]:
    """What a candidate can reach when it runs without namespaces (shown to the user)."""
    return (
        "the whole file system as the driver's user: the repository's .git, the ledger and "
        "state under .autoresearch/, your home folder, the evaluator's data",
        "every process of this user, the driver's included (/proc/<pid>/environ holds the "
        "API keys the driver was started with)",
        "the network and every service on this machine's loopback",
    )
