"""A domain's data: built once by its trusted ``prepare_command``, checksummed, and verified
before every run, so no run scores on data that changed behind the engine's back.

```
<cache>/data/<name>-<key>/shared/    what `command` may read (read-only): training data
<cache>/data/<name>-<key>/eval/      what only `eval_command` may read: validation, holdout
<cache>/data/<name>-<key>/manifest.json   every file's path, size and sha256 at build time
<cache>/data/.<name>-prepare-cache/  the prepare step's own cache (downloads), for every key
```

``<cache>`` is the driver's cache folder (``AUTORESEARCH_CACHE_DIR``, else the XDG cache):
no worktree holds it, and an isolated candidate sees only ``shared/``. ``<key>`` hashes what
the data is made from (the command, the variables, the fixed files, the drawn seed), so a
change makes a new folder instead of reusing a stale one. The manifest is also kept in the
ledger (the driver's state folder, which no candidate sees); the ledger's copy is the one
checked against.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from autoresearch._config import ResearchConfig
from autoresearch._errors import DataError
from autoresearch._ledger import Ledger
from autoresearch._scope import glob_match
from autoresearch.execution._sandbox import RunSpec, Sandbox

DATA_VAR = "AUTORESEARCH_DATA_DIR"
EVAL_DATA_VAR = "AUTORESEARCH_EVAL_DATA_DIR"
CACHE_VAR = "AUTORESEARCH_CACHE_DIR"
SHARED, EVAL = "shared", "eval"
MANIFEST_NAME = "manifest.json"
# Eval data up to this size is hashed in full around every run (~0.3 s at the limit). Larger
# eval data (a GPU preset's validation tokens) is hashed when the session starts and checked
# by size, mtime, ctime and inode around each run: a write in place or a swapped file changes
# those (ctime cannot be set back, unlike mtime), and a candidate's processes are gone before
# the evaluator starts, so bytes put back before the command ends are what it reads.
HASH_EVERY_RUN_MB = 64
HASH_CHUNK_BYTES = 1 << 20
# Seeds drawn for data_seed_env: far too many to try one by one in a time budget.
SEED_BITS = 63
# Chars of a failed prepare step's log shown in the error.
PREPARE_TAIL_CHARS = 3000

# (size, mtime_ns, ctime_ns, inode) of a file, for the cheap check around each run.
Stat = tuple[int, int, int, int]


@dataclass(frozen=True)
class DataDirs:
    """The two folders of one prepared data set."""

    root: Path

    @property
    def shared(self) -> Path:
        return self.root / SHARED

    @property
    def eval(self) -> Path:
        return self.root / EVAL

    @property
    def prepare_cache(self) -> Path:
        """The prepare step's own cache (a download), one per domain name: a new key (an
        edited prepare.py) tokenizes again but does not download again."""
        name = self.root.name.rsplit("-", 1)[0]
        return self.root.parent / f".{name}-prepare-cache"


class DataGuard:
    """The prepared data of one session, verified by hash when the session starts; ``check``
    verifies it again around each run and raises :class:`DataError` naming the file."""

    def __init__(self, dirs: DataDirs, manifest: dict[str, dict[str, object]]) -> None:
        self.dirs = dirs
        self.manifest = manifest
        when = "when the session started"
        _same_files(dirs, manifest, when)
        verify_hashes(dirs, manifest, manifest, when)
        self._stats = {rel: _stat(dirs.root / rel) for rel in manifest}
        eval_bytes = sum(int(str(e["size"])) for r, e in manifest.items() if _is_eval(r))
        self._hash_eval = eval_bytes <= HASH_EVERY_RUN_MB * 2**20

    @property
    def env(self) -> dict[str, str]:
        """Variables of both commands: where the shared data is."""
        return {DATA_VAR: str(self.dirs.shared)}

    @property
    def eval_env(self) -> dict[str, str]:
        """Variables of eval_command only: where the evaluator's own data is."""
        return {EVAL_DATA_VAR: str(self.dirs.eval)}

    def check(self, when: str, *, rehash: bool = True) -> None:
        """Every file as it was built: no file missing, added or changed (the eval files by
        hash when they are small, everything by size, mtime, ctime and inode). ``rehash=False``
        skips the hashes: before a run, the previous run's after-check already hashed them and
        nothing ran since (any write since would show in the ctime)."""
        _same_files(self.dirs, self.manifest, when)
        for rel, expected in self._stats.items():
            if _stat(self.dirs.root / rel) != expected:
                raise _changed(self.dirs, rel, when, "its size, mtime, ctime or inode changed")
        if self._hash_eval and rehash:
            evals = [r for r in self.manifest if _is_eval(r)]
            verify_hashes(self.dirs, self.manifest, evals, when)


def ensure_data(
    config: ResearchConfig,
    domain_dir: Path,
    sandbox: Sandbox,
    ledger: Ledger,
    fixed_files: Mapping[str, bytes],
    marker_prefix: str,
    log_path: Path,
) -> DataGuard | None:
    """The session's data, prepared first if its folder is missing (None: the domain has no
    ``prepare_command``). Verified by hash against the ledger's manifest before it is used."""
    if config.prepare_command is None:
        return None
    name = _safe_name(config.name or domain_dir.name)
    seed = _data_seed(config, ledger, name)
    dirs = DataDirs(cache_root() / "data" / f"{name}-{data_key(config, fixed_files, seed)}")
    meta_key = f"data_manifest:{dirs.root.name}"
    manifest = ledger.meta(meta_key)
    if not dirs.root.exists():
        env = _prepare_env(config, seed)
        manifest = prepare(config, dirs, sandbox, fixed_files, env, marker_prefix, log_path)
        ledger.set_meta(meta_key, manifest)
    elif manifest is None:  # built by another folder's driver: adopt its manifest
        manifest = _read_manifest(dirs)
        ledger.set_meta(meta_key, manifest)
    return DataGuard(dirs, manifest)


def prepare(
    config: ResearchConfig,
    dirs: DataDirs,
    sandbox: Sandbox,
    fixed_files: Mapping[str, bytes],
    env: Mapping[str, str],
    marker_prefix: str,
    log_path: Path,
) -> dict[str, dict[str, object]]:
    """Run ``prepare_command`` in a fresh copy of the fixed files, into a build folder that
    becomes ``dirs.root`` by one rename: a crash never leaves half a data set behind."""
    assert config.prepare_command is not None
    dirs.root.parent.mkdir(parents=True, exist_ok=True)
    build = DataDirs(Path(tempfile.mkdtemp(prefix=f".{dirs.root.name}.", dir=dirs.root.parent)))
    try:
        work = build.root / "work"
        _write_files(work, fixed_files)
        build.shared.mkdir()
        build.eval.mkdir()
        spec = RunSpec(
            workdir=work,
            command=config.prepare_command,
            log_path=log_path,
            time_budget_s=config.prepare_timeout_s,
            timeout_s=config.prepare_timeout_s,
            network=config.prepare_network,
            env={**env, DATA_VAR: str(build.shared), EVAL_DATA_VAR: str(build.eval)},
            env_allow=tuple(config.env_allow),
            env_deny=tuple(config.env_deny),
            marker_prefix=marker_prefix,
            data_dirs=(*config.readable_paths(), *_expand(config.prepare_readable)),
            rw_dirs=(build.shared, build.eval),
            cache_dir=dirs.prepare_cache,
        )
        run = sandbox.run(spec)
        if run.failure is not None:
            raise DataError(
                f"prepare_command {config.prepare_command!r} failed ({run.failure.value}: "
                f"{run.reason}); fix it and run again. Its log: {log_path}\n"
                f"{run.log_tail(PREPARE_TAIL_CHARS)}"
            )
        shutil.rmtree(work)
        manifest = build_manifest(build)
        if not manifest:
            raise DataError(
                f"prepare_command {config.prepare_command!r} wrote no file into "
                f"${DATA_VAR} or ${EVAL_DATA_VAR}: write the data there"
            )
        (build.root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _seal(build)
        os.rename(build.root, dirs.root)
    except OSError:
        shutil.rmtree(build.root, ignore_errors=True)
        if dirs.root.exists():  # another driver finished the same data first
            return _read_manifest(dirs)
        raise
    except BaseException:
        shutil.rmtree(build.root, ignore_errors=True)
        raise
    return manifest


def cache_root() -> Path:
    """The driver's cache folder (the rule of ``autoresearch.harness.cache_dir``)."""
    explicit = os.environ.get(CACHE_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "autoresearch"


def run_caches(name: str) -> tuple[Path, Path]:
    """The caches that outlive a run (compiled kernels, a measured peak FLOP/s): the
    candidates' own, shared between them, and the evaluator's, which no candidate sees and so
    cannot poison."""
    top = cache_root() / "runs" / _safe_name(name)
    return top / "candidate", top / "evaluator"


def data_key(config: ResearchConfig, fixed_files: Mapping[str, bytes], seed: str | None) -> str:
    """What the data is made from: the command, its variables, the seed and the fixed files
    (those matched by ``fixed``, else every file a candidate may not edit)."""
    pattern = config.fixed
    files = {
        rel: hashlib.sha256(data).hexdigest()
        for rel, data in sorted(fixed_files.items())
        if not pattern or glob_match(rel, pattern)
    }
    parts = {
        "command": config.prepare_command,
        "env": config.env,
        "prepare_env": config.prepare_env,
        "prepare_readable": config.prepare_readable,
        "seed": seed,
        "files": files,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def build_manifest(dirs: DataDirs) -> dict[str, dict[str, object]]:
    """Every file under ``shared/`` and ``eval/``: its size and sha256."""
    out: dict[str, dict[str, object]] = {}
    for rel in _listing(dirs):
        path = dirs.root / rel
        out[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return out


def verify_hashes(
    dirs: DataDirs, manifest: Mapping[str, Mapping[str, object]], rels: Iterable[str], when: str
) -> None:
    """Each of ``rels`` (paths in the manifest) holds the bytes it was built with."""
    for rel in rels:
        path = dirs.root / rel
        entry = manifest[rel]
        if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            raise _changed(dirs, rel, when, "its sha256 changed")


def _same_files(dirs: DataDirs, manifest: Mapping[str, object], when: str) -> None:
    found = set(_listing(dirs)) if dirs.root.is_dir() else set()
    for rel in sorted(set(manifest) - found):
        raise _changed(dirs, rel, when, "it is missing")
    for rel in sorted(found - set(manifest)):
        raise _changed(dirs, rel, when, "it was not there when the data was built")


def _changed(dirs: DataDirs, rel: str, when: str, what: str) -> DataError:
    return DataError(
        f"data file {dirs.root / rel} no longer matches its checksum ({what}; {when}). "
        "The run stops rather than score on changed data. Delete the folder "
        f"{dirs.root} to have prepare_command build it again."
    )


def _listing(dirs: DataDirs) -> list[str]:
    out = []
    for part in (SHARED, EVAL):
        top = dirs.root / part
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for f in sorted(filenames):
                out.append(Path(dirpath, f).relative_to(dirs.root).as_posix())
    return out


def _is_eval(rel: str) -> bool:
    return rel.startswith(f"{EVAL}/")


def _stat(path: Path) -> Stat:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1, -1, -1)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(dirs: DataDirs) -> dict[str, dict[str, object]]:
    path = dirs.root / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(
            f"{path}: the data folder's manifest cannot be read ({e}). Delete {dirs.root} "
            "to have prepare_command build it again."
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a manifest. Delete {dirs.root} to rebuild it.")
    return data


def _seal(dirs: DataDirs) -> None:
    """Read-only files: a stray write of the user's own fails instead of changing them."""
    for rel in _listing(dirs):
        os.chmod(dirs.root / rel, 0o444)


def _write_files(root: Path, files: Mapping[str, bytes]) -> None:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)


def _prepare_env(config: ResearchConfig, seed: str | None) -> dict[str, str]:
    env = {**config.env, **config.prepare_env}
    if config.data_seed_env is not None and seed is not None:
        env.setdefault(config.data_seed_env, seed)
    return env


def _data_seed(config: ResearchConfig, ledger: Ledger, name: str) -> str | None:
    """The seed for ``data_seed_env``: drawn once per domain folder, kept in the ledger."""
    if config.data_seed_env is None or config.data_seed_env in config.prepare_env:
        return None
    key = f"data_seed:{name}"
    seed = ledger.meta(key)
    if seed is None:
        seed = str(secrets.randbits(SEED_BITS))
        ledger.set_meta(key, seed)
    return str(seed)


def _expand(paths: Iterable[str]) -> tuple[Path, ...]:
    return tuple(Path(os.path.expandvars(os.path.expanduser(p))).resolve() for p in paths)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "domain"
