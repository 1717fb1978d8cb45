"""Forged metrics against the real evaluators of gpt_pretrain and trading_sharpe: a planted
module beside the evaluator, a fixed file rewritten during the run and put back afterwards,
reading the evaluator's data, and writing the data. The candidate is modelled as any code
that runs as the command (``python attack.py`` in a copy of the domain), the strongest
position it can reach; the data is built by the domain's real prepare step, through the engine.

Each containment test runs the attack once with the candidate's namespaces (where it fails) and
once with isolation off (where it works, or is caught by the engine's checksum), so no test
passes for the wrong reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autoresearch import DataError, Ledger, RunResult, load_config
from autoresearch._data import DataGuard, ensure_data, run_caches
from autoresearch._scope import glob_match
from autoresearch.execution import LocalSandbox, RunSpec

pytest.importorskip("torch")
pytest.importorskip("pandas")

DOMAINS = Path(__file__).resolve().parents[2] / "domains"
FORGED = "forged: 0.000100"


@dataclass(frozen=True)
class Domain:
    name: str
    preset: str | None
    eval_file: str  # a file of the evaluator's data
    shared_file: str  # a file of the command's data
    fixed_module: str  # a fixed module the evaluator imports
    metric: str


GPT = Domain("gpt_pretrain", "cpu", "eval/val.bin", "shared/train.bin", "prepare.py", "val_bpb")
TRADING = Domain(
    "trading_sharpe", None, "eval/bars.npz", "shared/bars.npz", "prices.py", "val_sharpe"
)


def _small_env(d: Domain, tmp_path: Path) -> dict[str, Any]:
    if d is GPT:
        corpus = tmp_path / "corpus" / "docs.jsonl"
        corpus.parent.mkdir()
        docs = [f"DOC{i:04d} " + "def value(self): return data " * (5 + i % 7) for i in range(300)]
        corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
        env = dict(load_config(DOMAINS / d.name, d.preset)[0].env)
        env.update(GPT_DATASET=str(corpus), GPT_SEQ_LEN="64", GPT_EVAL_TOKENS="1024")
        return {"env": env, "prepare_readable": [str(corpus.parent)]}
    return {"env": {"TRADING_DATA": "synthetic", "TRADING_YEARS": "3", "TRADING_ASSETS": "2"}}


@dataclass
class Prepared:
    work: Path
    config: Any
    guard: DataGuard
    fixed: dict[str, bytes]

    def spec(self, tmp: Path, name: str, *, eval_command: bool = True) -> RunSpec:
        """The run the engine would make of ``python attack.py`` (as Measurer._spec does)."""
        c, g = self.config, self.guard
        cache, eval_cache = run_caches(c.name)
        return RunSpec(
            workdir=self.work,
            command="python attack.py",
            log_path=tmp / f"{name}.log",
            time_budget_s=30,
            timeout_s=120,
            eval_command=c.eval_command if eval_command else None,
            eval_log_path=tmp / f"{name}-eval.log",
            eval_timeout_s=120,
            network=False,
            env={**c.env, **g.env, "OMP_NUM_THREADS": "1"},
            eval_env=g.eval_env,
            fixed_files=self.fixed,
            data_dirs=(g.dirs.shared,),
            eval_data_dirs=(g.dirs.eval,),
            cache_dir=cache,
            eval_cache_dir=eval_cache,
        )


@pytest.fixture(params=[GPT, TRADING], ids=["gpt_pretrain", "trading_sharpe"])
def prepared(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Prepared:
    """A copy of the domain and its data, prepared by the engine (real prepare step), in a
    cache of the test's own: a poisoned data folder must not reach another test."""
    monkeypatch.setenv("AUTORESEARCH_CACHE_DIR", str(tmp_path / "cache"))
    d: Domain = request.param
    work = tmp_path / d.name
    shutil.copytree(DOMAINS / d.name, work, ignore=shutil.ignore_patterns("__pycache__"))
    config = load_config(work, d.preset, _small_env(d, tmp_path))[0]
    files = [p for p in work.rglob("*") if p.is_file()]
    fixed = {
        p.relative_to(work).as_posix(): p.read_bytes()
        for p in files
        if not glob_match(p.relative_to(work).as_posix(), config.editable)
    }
    ledger = Ledger(tmp_path / "ledger.sqlite")
    guard = ensure_data(
        config, work, LocalSandbox(), ledger, fixed, "ar-hostile", tmp_path / "prepare.log"
    )
    assert guard is not None
    request.node.domain = d
    return Prepared(work, config, guard, fixed)


def _domain(request: pytest.FixtureRequest) -> Domain:
    return request.node.domain  # type: ignore[no-any-return]


def _attack(p: Prepared, source: str) -> None:
    (p.work / "attack.py").write_text(textwrap.dedent(source))


def _trusted(run: RunResult) -> str:
    return run.trusted_output() if run.eval_log_path and run.eval_log_path.exists() else ""


# -- (a) a module planted beside the evaluator ----------------------------------------------

PLANT_JSON = f"""\
open("json.py", "w").write('print("---"); print("{FORGED}"); raise SystemExit(0)\\n')
"""


def test_a_planted_json_module_does_not_score(prepared: Prepared, tmp_path: Path) -> None:
    _attack(prepared, PLANT_JSON)
    run = LocalSandbox().run(prepared.spec(tmp_path, "plant"))
    assert FORGED not in _trusted(run)
    # Control: the same evaluator, run the ordinary way beside that json.py, is fooled.
    cmd = prepared.config.eval_command.split()[1:]
    env = {**prepared.spec(tmp_path, "x").env, **prepared.guard.eval_env, "PATH": "/usr/bin"}
    out = subprocess.run(
        [sys.executable, *cmd], cwd=prepared.work, env=env, capture_output=True, text=True
    )
    assert FORGED in out.stdout


# -- (b) a fixed module rewritten during the run, put back afterwards -----------------------

SWAP_AND_RESTORE = """\
import pathlib, subprocess, sys
target = pathlib.Path("{module}")
original = target.read_bytes()
pathlib.Path("original.bak").write_bytes(original)
try:
    target.write_text('print("---"); print("{forged}"); raise SystemExit(0)\\n')
    print("swapped", flush=True)
except OSError as e:
    print("swap refused:", type(e).__name__, flush=True)
# A helper that outlives the command puts the bytes back once the evaluator has imported them.
subprocess.Popen([sys.executable, "-c",
    "import time, pathlib; time.sleep(3); "
    "pathlib.Path('{module}').write_bytes(pathlib.Path('original.bak').read_bytes())"],
    start_new_session=True)
"""


def test_a_self_restoring_scorer_never_scores(
    prepared: Prepared, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    module = _domain(request).fixed_module
    _attack(prepared, SWAP_AND_RESTORE.format(module=module, forged=FORGED))
    run = LocalSandbox().run(prepared.spec(tmp_path, "swap"))
    assert FORGED not in _trusted(run)
    # The evaluator either ran on the original bytes (the swap was refused) or not at all.
    assert "swap refused" in run.log_text() or run.eval_exit_code is None
    # Control: run by hand, the evaluator imports the swapped module and is fooled.
    (prepared.work / module).write_bytes(prepared.fixed[module])
    env = {**prepared.spec(tmp_path, "x").env, "PATH": "/usr/bin"}
    subprocess.run([sys.executable, "attack.py"], cwd=prepared.work, env=env, check=True)
    cmd = prepared.config.eval_command.split()[1:]
    out = subprocess.run(
        [sys.executable, *cmd], cwd=prepared.work, env=env, capture_output=True, text=True
    )
    assert FORGED in out.stdout


# -- (c) reading the evaluator's data -------------------------------------------------------

READ_EVAL = """\
import os, pathlib
path = pathlib.Path(os.environ["AUTORESEARCH_DATA_DIR"]).parent / "{rel}"
print("eval var set:", "AUTORESEARCH_EVAL_DATA_DIR" in os.environ)
try:
    print("read", len(path.read_bytes()), "bytes of", path.name)
except OSError as e:
    print("unreadable:", type(e).__name__)
"""


def test_the_command_cannot_read_the_evaluators_data(
    prepared: Prepared, tmp_path: Path, request: pytest.FixtureRequest, namespaces: None
) -> None:
    rel = _domain(request).eval_file
    _attack(prepared, READ_EVAL.format(rel=rel))
    run = LocalSandbox().run(prepared.spec(tmp_path, "read", eval_command=False))
    assert "unreadable: FileNotFoundError" in run.log_text(), run.log_text()
    assert "eval var set: False" in run.log_text()
    # Control: without isolation the path is there to read.
    control = LocalSandbox(isolation="none").run(prepared.spec(tmp_path, "c", eval_command=False))
    assert "read " in control.log_text() and "bytes of" in control.log_text()


# -- (d) writing the data -------------------------------------------------------------------

POISON = """\
import os, pathlib, stat
top = pathlib.Path(os.environ["AUTORESEARCH_DATA_DIR"]).parent
for rel in ("{eval_file}", "{shared_file}"):
    path = top / rel
    try:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        with open(path, "r+b") as f:
            f.seek(0)
            f.write(b"\\0" * 16)
        print("poisoned", rel, flush=True)
    except OSError as e:
        print("refused", rel, type(e).__name__, flush=True)
"""


def test_the_command_cannot_write_the_data(
    prepared: Prepared, tmp_path: Path, request: pytest.FixtureRequest, namespaces: None
) -> None:
    d = _domain(request)
    _attack(prepared, POISON.format(eval_file=d.eval_file, shared_file=d.shared_file))
    run = LocalSandbox().run(prepared.spec(tmp_path, "poison", eval_command=False))
    assert "poisoned" not in run.log_text(), run.log_text()
    assert f"refused {d.shared_file}" in run.log_text()
    prepared.guard.check("after the run")  # every byte as it was built


def test_data_written_without_isolation_is_caught_before_it_scores(
    prepared: Prepared, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # The control of the test above: the write works where nothing isolates the command, and
    # the engine's checksum stops the run, naming the file.
    d = _domain(request)
    _attack(prepared, POISON.format(eval_file=d.eval_file, shared_file=d.shared_file))
    run = LocalSandbox(isolation="none").run(prepared.spec(tmp_path, "p", eval_command=False))
    assert f"poisoned {d.eval_file}" in run.log_text(), run.log_text()
    assert f"poisoned {d.shared_file}" in run.log_text()
    named = rf"({d.eval_file}|{d.shared_file}) no longer matches its checksum"
    with pytest.raises(DataError, match=named):
        prepared.guard.check("after the run, before it was scored")


def test_the_shared_folder_holds_only_the_commands_data(
    prepared: Prepared, request: pytest.FixtureRequest
) -> None:
    shared = sorted(p.name for p in prepared.guard.dirs.shared.iterdir())
    hidden = sorted(p.name for p in prepared.guard.dirs.eval.iterdir())
    if _domain(request) is GPT:
        assert "val.bin" not in shared and "train.bin" in shared
        assert hidden == ["meta.json", "token_bytes.npy", "val.bin"]
        return
    import numpy as np

    dirs = prepared.guard.dirs
    with np.load(dirs.shared / "bars.npz") as part, np.load(dirs.eval / "bars.npz") as full:
        n_shared, n_full = len(part["index"]), len(full["index"])
    # The in-sample share alone: no walk-forward window, no holdout bar.
    assert n_shared == round(n_full * 0.4) and n_full == 3 * 252
