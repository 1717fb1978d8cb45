"""The prepare step and its checksums (autoresearch/_data.py) on a toy domain: the data is
built once, before the baseline, from the fixed files; it lives outside every worktree; a
failed build leaves nothing behind; a changed file stops the run with the file's name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoresearch import ConfigError, DataError, Ledger, Loop, load_config
from autoresearch._data import cache_root
from autoresearch.execution import LocalSandbox
from autoresearch.proposers import Scripted
from autoresearch.testing import make_toy_domain
from tests.conftest import set_x

# Writes the command's data and the evaluator's, and counts its own runs (PREP_COUNT).
PREP = """\
import os, pathlib
shared = pathlib.Path(os.environ["AUTORESEARCH_DATA_DIR"])
hidden = pathlib.Path(os.environ["AUTORESEARCH_EVAL_DATA_DIR"])
(shared / "offset.txt").write_text("1")
(hidden / "target.txt").write_text("3")
with open(os.environ["PREP_COUNT"], "a") as f:
    f.write(os.environ.get("TOY_SEED", "-") + "\\n")
"""
# The command: reads the shared data and writes what it would score.
RUN = """\
import json, os, pathlib
import params
offset = float(pathlib.Path(os.environ["AUTORESEARCH_DATA_DIR"], "offset.txt").read_text())
json.dump({"x": params.X, "offset": offset, "seed": os.environ.get("TOY_SEED")},
          open("out.json", "w"))
"""
# The evaluator: scores against the eval data, which the command never needs.
EVALUATE = """\
import json, os, pathlib
out = json.load(open("out.json"))
target = float(pathlib.Path(os.environ["AUTORESEARCH_EVAL_DATA_DIR"], "target.txt").read_text())
print("---")
print(f"score: {(out['x'] - target) ** 2 + out['offset']:.6f}")
"""


def data_domain(tmp_path: Path, prep: str = PREP, extra: str = "") -> Path:
    """A toy whose score needs both data folders: (X - 3)^2 + 1, as the plain toy's."""
    d = make_toy_domain(tmp_path / "toy", git=False)
    (d / "prep.py").write_text(prep)
    (d / "run.py").write_text(RUN)
    (d / "evaluate.py").write_text(EVALUATE)
    cfg = (d / "autoresearch.toml").read_text()
    cfg = cfg.replace('fixed = ["run.py"]', 'fixed = ["run.py", "prep.py", "evaluate.py"]')
    cfg = cfg.replace(
        'command = "python run.py"',
        'command = "python run.py"\neval_command = "python evaluate.py"\n'
        f'prepare_command = "python prep.py"\nprepare_env = {{ PREP_COUNT = '
        f'"{tmp_path / "prepared.txt"}" }}\n{extra}',
    )
    (d / "autoresearch.toml").write_text(cfg)
    from autoresearch._git import init_repo

    init_repo(d)
    return d


def prepared(tmp_path: Path) -> list[str]:
    path = tmp_path / "prepared.txt"
    return path.read_text().splitlines() if path.exists() else []


def data_roots() -> list[Path]:
    top = cache_root() / "data"
    return sorted(p for p in top.iterdir() if not p.name.startswith(".")) if top.exists() else []


def run(d: Path, tag: str, *candidates: float, **kw: object) -> Loop:
    loop = Loop.from_dir(
        d, proposer=Scripted([set_x(x) for x in candidates]), tag=tag, sandbox=sandbox(), **kw
    )
    loop.run(max_experiments=1 + len(candidates))
    return loop


def sandbox() -> LocalSandbox:
    return LocalSandbox(isolation="none")  # the bookkeeping, not the containment


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORESEARCH_CACHE_DIR", str(tmp_path / "cache"))


def test_prepare_runs_once_before_the_baseline_and_the_runs_read_its_folders(
    tmp_path: Path,
) -> None:
    d = data_domain(tmp_path)
    run(d, "t1", 3.0)
    assert len(prepared(tmp_path)) == 1
    ledger = Ledger(d / ".autoresearch" / "ledger.sqlite")
    records = ledger.history("t1")
    assert [r.value for r in records] == [10.0, 1.0]  # (0-3)^2+1, then (3-3)^2+1
    (root,) = data_roots()
    assert not root.is_relative_to(d)  # no worktree, no state folder holds it
    manifest = ledger.meta(f"data_manifest:{root.name}")
    assert set(manifest) == {"shared/offset.txt", "eval/target.txt"}
    assert json.loads((root / "manifest.json").read_text()) == manifest
    # A later session of the folder uses the same data: nothing is prepared again.
    run(d, "t2", 2.0)
    assert len(prepared(tmp_path)) == 1


def test_a_missing_data_folder_is_prepared_again(tmp_path: Path) -> None:
    import shutil

    d = data_domain(tmp_path)
    run(d, "t1")
    (root,) = data_roots()
    shutil.rmtree(root)
    run(d, "t2")
    assert len(prepared(tmp_path)) == 2 and data_roots() == [root]


def test_a_failing_prepare_step_says_why_and_leaves_no_half_folder(tmp_path: Path) -> None:
    broken = PREP + "raise SystemExit('no corpus here')\n"
    d = data_domain(tmp_path, prep=broken)
    with pytest.raises(DataError, match=r"prepare_command 'python prep.py' failed") as e:
        run(d, "t1")
    assert "no corpus here" in str(e.value)
    top = cache_root() / "data"
    assert [p.name for p in top.iterdir() if "prepare-cache" not in p.name] == []


def test_a_data_file_changed_behind_the_engines_back_stops_the_next_session(
    tmp_path: Path,
) -> None:
    d = data_domain(tmp_path)
    run(d, "t1")
    (root,) = data_roots()
    target = root / "eval" / "target.txt"
    os.chmod(target, 0o644)
    target.write_text("0")  # same size, other bytes: only the hash tells
    with pytest.raises(DataError, match=r"eval/target.txt no longer matches its checksum"):
        run(d, "t2", 0.0)
    ledger = Ledger(d / ".autoresearch" / "ledger.sqlite")
    assert all(r.value != 1.0 for r in ledger.history("t2"))  # nothing scored on it


def test_a_file_added_to_the_shared_folder_is_refused(tmp_path: Path) -> None:
    d = data_domain(tmp_path)
    run(d, "t1")
    (root,) = data_roots()
    (root / "shared" / "extra.bin").write_text("planted")
    with pytest.raises(DataError, match=r"shared/extra.bin.*not there when the data was built"):
        run(d, "t2")


def test_the_drawn_seed_reaches_the_prepare_step_only(tmp_path: Path) -> None:
    d = data_domain(tmp_path, extra='data_seed_env = "TOY_SEED"\n')
    run(d, "t1")
    (seed,) = prepared(tmp_path)
    assert seed.isdigit()
    ledger = Ledger(d / ".autoresearch" / "ledger.sqlite")
    assert ledger.meta("data_seed:toy") == seed
    # The command ran without it, and no committed file holds it.
    outputs = list((d / ".autoresearch").rglob("run.log"))
    assert outputs and all(seed not in p.read_text() for p in outputs)
    assert all(seed not in p.read_text() for p in d.glob("*.*") if p.is_file())


def test_the_seed_variable_may_not_be_in_env(tmp_path: Path) -> None:
    d = data_domain(tmp_path, extra='data_seed_env = "TOY_NOISE"\n')
    with pytest.raises(ConfigError, match="env sets TOY_NOISE"):
        load_config(d)
