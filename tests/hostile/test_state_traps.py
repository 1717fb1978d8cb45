"""Traps a candidate without isolation can lay in the folders the driver writes: links in
place of worktrees or run files, a rewritten worktree .git, a FIFO in place of an editable
file, a git replace ref over a fixed file, an includeIf that adds filter drivers. Each is
laid by the candidate's own code, through the scripted proposer; none reaches outside."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from autoresearch import Candidate, Edit, Ledger, Loop, Status
from autoresearch.execution import LocalSandbox
from autoresearch.proposers import Scripted
from autoresearch.testing import make_toy_domain

# The candidate's code runs in DIR/.autoresearch/worktrees/<tag>-<id>/ (the toy is a repo).
HEADER = "import os, pathlib, subprocess\nhere = pathlib.Path.cwd()\nstate = here.parent.parent\n"


def _cand(description: str, code: str, x: float = 2.0) -> Candidate:
    body = HEADER + code + f"\nX = {x}\nY = 1.0\n"
    return Candidate(description, (Edit("params.py", content=body),))


def _plain(x: float) -> Candidate:
    return Candidate(f"X to {x}", (Edit("params.py", content=f"X = {x}\nY = 1.0\n"),))


def _run(toy: Path, cands: list[Candidate], tag: str = "t", **kw: object) -> Ledger:
    # Unisolated on purpose: these traps need a candidate that reaches the driver's folders,
    # which in namespaces it cannot (tests/hostile/test_namespaces.py).
    kw.setdefault("sandbox", LocalSandbox("none"))
    Loop.from_dir(toy, proposer=Scripted(cands), tag=tag, **kw).run()  # type: ignore[arg-type]
    return Ledger(toy / ".autoresearch" / "ledger.sqlite")


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "keep.txt").write_text("mine")
    (victim / "sub" / "deep.txt").write_text("mine too")
    return victim


def _intact(victim: Path) -> bool:
    return (victim / "keep.txt").read_text() == "mine" and (victim / "sub/deep.txt").exists()


def test_links_in_place_of_worktrees_and_run_files_write_and_delete_nothing_outside(
    tmp_path: Path,
) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    # The victim is the user's own worktree of the same repository, with uncommitted work.
    victim = tmp_path / "victim"
    subprocess.run(["git", "-C", str(toy), "worktree", "add", "-q", "--detach", str(victim)])
    (victim / "sub").mkdir()
    (victim / "keep.txt").write_text("mine")
    (victim / "sub" / "deep.txt").write_text("mine too")
    fifo = tmp_path / "fifo"
    plant = f"""
victim = {str(victim)!r}
wt = state / "worktrees"
for n in range(3, 6):  # the next experiments' worktrees, and their run files
    if not (wt / f"t-{{n}}").exists():
        os.symlink(victim, wt / f"t-{{n}}")
    runs = state / "runs" / "t" / str(n)
    runs.mkdir(parents=True, exist_ok=True)
    for name in ("run.log", "eval.log", "measurement.json"):
        if not (runs / name).exists():
            os.symlink(victim + "/keep.txt", runs / name)
if not os.path.exists({str(fifo)!r}):
    os.mkfifo({str(fifo)!r})
runs = state / "runs" / "t" / "4"
if not (runs / ".measurement.json.tmp").exists():
    os.symlink({str(fifo)!r}, runs / ".measurement.json.tmp")
"""
    ledger = _run(toy, [_cand("lay traps", plant), _plain(2.5), _plain(3.0), _plain(2.9)])
    records = ledger.history("t")
    assert [r.status for r in records][:3] == [Status.KEEP, Status.KEEP, Status.KEEP]
    assert len(records) == 5 and _intact(victim)
    # The engine's own run files took other names; the planted links are left untouched.
    for run in ledger.runs("t"):
        assert run.log_path and not Path(run.log_path).is_symlink()


def test_a_rewritten_worktree_git_file_cannot_aim_the_reset_elsewhere(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    victim = _victim(tmp_path)
    evil = tmp_path / "evilsrc"
    subprocess.run(["git", "init", "-q", str(evil)], check=True)
    subprocess.run(["git", "-C", str(evil), "config", "core.worktree", str(victim)], check=True)
    # Repeated runs of the candidate reset its worktree between runs.
    plant = f"(here / '.git').write_text('gitdir: {evil}/.git\\n')"
    kw = {"acceptance": "repeated", "overrides": {"acceptance.repeats": 2}}
    _run(toy, [_cand("point .git elsewhere", plant, x=3.0)], **kw)
    assert _intact(victim)


def test_a_fifo_in_place_of_an_editable_file_does_not_hang_the_driver(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    plant = (
        "import atexit\natexit.register(lambda: (os.remove('params.py'), os.mkfifo('params.py')))"
    )
    done: list[Ledger] = []
    worker = threading.Thread(target=lambda: done.append(_run(toy, [_cand("fifo", plant)])))
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the driver hangs on a FIFO"
    rec = done[0].history("t")[-1]
    assert rec.status is Status.INVALID and "params.py" in rec.reason


def test_a_git_replace_ref_over_a_fixed_file_is_caught_after_a_resume(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    forged = "print('---'); print('score: 0.100000')\n"
    plant = f"""
blob = subprocess.run(["git", "rev-parse", "HEAD:run.py"], capture_output=True, text=True)
new = subprocess.run(["git", "hash-object", "-w", "--stdin"], input={forged!r},
                     capture_output=True, text=True)
subprocess.run(["git", "replace", "-f", blob.stdout.strip(), new.stdout.strip()])
"""
    _run(toy, [_cand("replace run.py's blob", plant, x=1.0)])
    ledger = _run(toy, [_plain(-4.0)], resume=True)
    last = ledger.history("t")[-1]
    # The forged run.py would score 0.1: the candidate is no keep, and its value is real.
    assert last.status is not Status.KEEP or (last.value or 0) > 1.0
    assert last.value != 0.1


def test_an_include_if_that_adds_filter_drivers_runs_none_of_them(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    mark = tmp_path / "pwned"
    evilcfg = tmp_path / "evilcfg"
    evilcfg.write_text(
        f'[filter "ev"]\n\tclean = "sh -c \'touch {mark}-clean; cat\'"\n'
        f"\tsmudge = \"sh -c 'touch {mark}-smudge; cat'\"\n"
    )
    plant = f"""
common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                        capture_output=True, text=True).stdout.strip()
with open(os.path.join(common, "config"), "a") as f:
    f.write('[includeIf "gitdir:**/worktrees/**"]\\n\\tpath = {evilcfg}\\n')
os.makedirs(os.path.join(common, "info"), exist_ok=True)
open(os.path.join(common, "info", "attributes"), "w").write("* filter=ev\\n")
"""
    _run(toy, [_cand("include filters", plant), _plain(2.5), _plain(3.0)])
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []
    # Control: plain git checking out a worktree of the same repository runs the plant.
    wt = tmp_path / "plain-worktree"
    subprocess.run(["git", "-C", str(toy), "worktree", "add", "-q", "--detach", str(wt)])
    assert list(tmp_path.glob("pwned*")), "the planted filter never fires, even in plain git"
