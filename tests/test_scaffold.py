"""`autoresearch new --template minimal` and `autoresearch init --from-upstream`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from typer.testing import CliRunner

from autoresearch import Candidate, Context, Edit, Loop, Proposer, Status, load_config
from autoresearch.cli import app

UPSTREAM_TRAIN = """\
import os

LR = 0.04  # the one knob

budget = float(os.environ["AUTORESEARCH_TIME_BUDGET_S"])
print("---")
print(f"val_bpb:          {1.0 + abs(LR - 0.01):.6f}")
print(f"training_seconds: {budget:.1f}")
"""
UPSTREAM_RESULTS = (
    "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
    "a1b2c3d\t0.997900\t44.0\tkeep\tbaseline\n"
    "b2c3d4e\t0.993200\t44.2\tkeep\tincrease LR to 0.04\n"
    "c3d4e5f\t0.000000\t0.0\tcrash\tdouble the width (OOM)\n"
)


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)


def test_new_minimal_writes_a_domain_that_runs(tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    res = CliRunner().invoke(app, ["new", str(dest), "--template", "minimal"])
    assert res.exit_code == 0, res.output
    config, _ = load_config(dest)
    assert config.name == "mine" and config.editable == ["solution.py"]
    summary = Loop.from_dir(dest, tag="t", overrides={"time_budget_s": 5}).run(max_experiments=3)
    assert summary.counts["keep"] >= 1 and summary.baseline_value == 1.5**2 + 0.5**2
    # The knob proposer moved toward the optimum, or at least measured something.
    assert summary.experiments == 3


def test_new_refuses_a_folder_in_use_and_an_unknown_template(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["new", str(used)])
    assert res.exit_code == 2 and "not empty" in res.output
    assert sorted(p.name for p in used.iterdir()) == ["keep.txt"]
    res = CliRunner().invoke(app, ["new", str(tmp_path / "x"), "--template", "nope"])
    assert res.exit_code == 2 and "unknown" in res.output and not (tmp_path / "x").exists()


class _Recorder(Proposer):
    """One candidate (LR to the optimum); remembers what it was shown."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[Context] = []

    def propose(self, context: Context) -> Candidate | None:
        self.seen.append(context)
        if len(self.seen) > 1:
            return None
        text = context.files["train.py"].replace("LR = 0.04", "LR = 0.01")
        return Candidate("LR to 0.01", (Edit("train.py", content=text),))


def test_init_from_upstream_runs_an_unmodified_upstream_folder(tmp_path: Path) -> None:
    folder = tmp_path / "upstream"
    folder.mkdir()
    (folder / "train.py").write_text(UPSTREAM_TRAIN)
    (folder / "prepare.py").write_text("TIME_BUDGET = 300  # fixed: data and evaluation\n")
    (folder / "program.md").write_text("# autoresearch\nLower val_bpb by editing train.py.\n")
    (folder / "results.tsv").write_text(UPSTREAM_RESULTS)
    originals = {p.name: p.read_text() for p in folder.iterdir() if p.suffix != ".tsv"}
    res = CliRunner().invoke(app, ["init", str(folder), "--from-upstream"])
    assert res.exit_code == 0, res.output
    assert "imported 3 row(s)" in res.output
    for name, text in originals.items():  # its own files are untouched
        assert (folder / name).read_text() == text
    config, _ = load_config(folder)
    assert config.editable == ["train.py"] and config.fixed == ["prepare.py"]
    assert config.objective.metric == "val_bpb" and config.objective.direction == "minimize"
    assert config.time_budget_s == 300 and config.hard_timeout_s == 600
    _git(folder, "init", "-q")
    _git(folder, "add", "train.py", "prepare.py", "program.md", "autoresearch.toml")
    _git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "upstream")
    recorder = _Recorder()
    summary = Loop.from_dir(
        folder, proposer=recorder, tag="t", overrides={"time_budget_s": 2}
    ).run()
    assert summary.counts["keep"] == 2 and abs((summary.best_value or 0) - 1.0) < 1e-9
    # The proposer saw the imported history before this run's own.
    first = recorder.seen[0]
    assert [h.description for h in first.history[:3]] == [
        "baseline",
        "increase LR to 0.04",
        "double the width (OOM)",
    ]
    assert first.history[2].status is Status.CRASH
    # No imported row is lost when the engine regenerates results.tsv.
    lines = (folder / "results.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:5] == ["commit", "val_bpb", "memory_gb", "status", "description"]
    commits = [line.split("\t")[0] for line in lines[1:]]
    assert commits[:3] == ["a1b2c3d", "b2c3d4e", "c3d4e5f"] and len(commits) == 5
    assert lines[2].split("\t")[1:4] == ["0.993200", "44.2", "keep"]


def test_init_from_upstream_names_what_is_missing(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "train.py").write_text("print(1)\n")
    res = CliRunner().invoke(app, ["init", str(folder), "--from-upstream"])
    assert res.exit_code == 2 and "prepare.py" in res.output and "program.md" in res.output
    assert not (folder / "autoresearch.toml").exists()
    res = CliRunner().invoke(app, ["init", str(folder)])
    assert res.exit_code == 2 and "--editable" in res.output


def test_a_crafted_upstream_results_tsv_is_refused_or_cleaned(tmp_path: Path) -> None:
    folder = tmp_path / "crafted"
    folder.mkdir()
    for name in ("train.py", "prepare.py", "program.md"):
        (folder / name).write_text(UPSTREAM_TRAIN if name == "train.py" else "x = 1\n")
    header = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
    (folder / "results.tsv").write_text(header + "--output=/tmp/x\t1.0\t1.0\tkeep\tevil\n")
    res = CliRunner().invoke(app, ["init", str(folder), "--from-upstream"])
    assert res.exit_code == 2 and "not a git hash" in res.output
    (folder / "results.tsv").write_text(header + "a1b2c3d\tnan\t1.0\tkeep\tnan\n")
    res = CliRunner().invoke(app, ["init", str(folder), "--from-upstream", "--force"])
    assert res.exit_code == 2 and "finite" in res.output
    # Markup and control characters in a description are kept as plain, one-line text, and
    # `status` shows them without parsing them.
    evil = "[/bold] \x1b[31mred\x1b[0m\x07 [link=file:///etc]x[/link]"
    (folder / "results.tsv").write_text(header + f"a1b2c3d\t1.0\t1.0\tkeep\t{evil}\n")
    res = CliRunner().invoke(app, ["init", str(folder), "--from-upstream", "--force"])
    assert res.exit_code == 0, res.output
    row = (folder / "results.tsv").read_text().splitlines()[1].split("\t")
    assert "\x1b" not in row[4] and "\x07" not in row[4] and "[/bold]" in row[4]
    res = CliRunner().invoke(app, ["status", str(folder), "--tag", "upstream"])
    assert res.exit_code == 0, res.output
    assert "[/bold]" in res.output and "[link=file:///etc]x[/link]" in res.output
