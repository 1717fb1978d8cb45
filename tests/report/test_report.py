"""`report`: the plot's content read back from the figure's artists, and the tables of
report.md / report.html against a ledger a real toy run wrote."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import set_x
from matplotlib.colors import to_hex
from typer.testing import CliRunner

from autoresearch import Candidate, Edit, Loop
from autoresearch.cli import app
from autoresearch.report import report_data, write_report_files
from autoresearch.report._progress import (
    DISCARDED,
    FAILED_LABEL,
    GRAY,
    GREEN,
    KEPT,
    RED,
    RUNNING_BEST,
    progress_figure,
)
from autoresearch.testing import FakeSandbox, Scripted, make_toy_domain


def edit(desc: str, search: str, replace: str) -> Candidate:
    return Candidate(desc, (Edit("params.py", search=search, replace=replace),))


# Each edit applies to the incumbent's params.py (the last kept one).
SCRIPT = [
    set_x(3.0, "move X to 3 <b>bold</b> | piped"),  # 11 -> 2: keep
    edit("X to -4", "X = 3.0", "X = -4.0"),  # 2 -> 51: discard
    edit("break params", "X = 3.0", "X = (("),  # crash: no score
    edit("set Y", "Y = 0.0", "Y = 1.0"),  # 2 -> 1: keep
    edit("Y too far", "Y = 1.0", "Y = 3.0"),  # 1 -> 5: discard
]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    toy = make_toy_domain(tmp_path_factory.mktemp("report") / "toy", git=True)
    Loop.from_dir(toy, proposer=Scripted(SCRIPT), tag="r", sandbox=FakeSandbox()).run(
        max_experiments=len(SCRIPT) + 1
    )
    return toy


def collection(ax, label: str):  # type: ignore[no-untyped-def]
    found = [c for c in ax.collections if c.get_label().split(" (")[0] == label]
    return found[0] if found else None


def test_the_plot_shows_every_experiment_by_colour(toy_run: Path) -> None:
    data = report_data(toy_run, "r")
    fig = progress_figure(data)
    ax = fig.axes[0]
    assert ax.get_title() == "6 Experiments, 2 Kept Improvements"
    kept, discarded = collection(ax, KEPT), collection(ax, DISCARDED)
    failed = collection(ax, FAILED_LABEL)
    assert kept is not None and discarded is not None and failed is not None
    # baseline + two keeps green; two discards gray; the crash marked red, not hidden.
    assert len(kept.get_offsets()) == 3 and len(discarded.get_offsets()) == 2
    assert len(failed.get_offsets()) == 1 and "1 crash" in failed.get_label()
    assert to_hex(kept.get_facecolor()[0]) == GREEN
    assert to_hex(discarded.get_facecolor()[0]) == GRAY
    colours = [*failed.get_facecolor(), *failed.get_edgecolor()]
    assert to_hex(colours[0]) == RED
    assert sorted(float(y) for _, y in kept.get_offsets()) == [1.0, 2.0, 11.0]
    assert sorted(float(y) for _, y in discarded.get_offsets()) == [5.0, 51.0]
    assert [int(x) for x, _ in failed.get_offsets()] == [4]
    # The running best steps down through the kept values (minimize).
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == RUNNING_BEST]
    assert list(line.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(line.get_ydata()) == [11.0, 2.0, 2.0, 2.0, 1.0, 1.0]
    # Kept dots are labelled with their descriptions.
    labels = [t.get_text() for t in ax.texts]
    assert "baseline" in labels and "set Y" in labels
    assert any(t.startswith("move X to 3") for t in labels)
    assert "lower is better" in ax.get_ylabel()


def test_a_maximized_metric_steps_up_and_repeats_get_error_bars(tmp_path: Path) -> None:
    toy = make_toy_domain(
        tmp_path / "toy",
        git=True,
        noise=0.5,
        extra_toml="",
    )
    text = (toy / "autoresearch.toml").read_text().replace('"minimize"', '"maximize"')
    (toy / "autoresearch.toml").write_text(text)
    from conftest import commit_all

    commit_all(toy, "maximize")
    script = [set_x(-4.0, "worse is better here"), set_x(3.0, "the minimum")]
    Loop.from_dir(
        toy,
        proposer=Scripted(script),
        tag="m",
        sandbox=FakeSandbox(),
        overrides={"acceptance.policy": "repeated", "acceptance.repeats": 3},
    ).run(max_experiments=3)
    data = report_data(toy, "m")
    ax = progress_figure(data).axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == RUNNING_BEST]
    ys = list(line.get_ydata())
    assert ys == sorted(ys) and ys[-1] == pytest.approx(50, abs=3)  # maximize: up to X=-4
    bars = [c for c in ax.containers if "standard error" in str(c.get_label())]
    assert bars, "repeats (3 runs each) are drawn with error bars"
    assert "higher is better" in ax.get_ylabel()


def test_report_tables_match_the_ledger(toy_run: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["report", str(toy_run), "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    for name in ("progress.png", "report.md", "report.html"):
        assert f"wrote {tmp_path / 'rep' / name}" in out.output
    md = (tmp_path / "rep" / "report.md").read_text()
    # baseline -> best, claimed change
    assert "baseline 11 (first run) → best 1 (first run" in md
    assert "claimed change -10" in md
    kept = re.findall(
        r"^\| (\d+) \| (.*?) \| (.*?) \| (.*?) \| (\d+) \| ([0-9a-f]{7}) \|$", md, re.M
    )
    assert [(k[0], k[2], k[3], k[4]) for k in kept] == [
        ("2", "2", "-9 (± -)", "1"),
        ("5", "1", "-1 (± -)", "1"),
    ]
    # A description is data: its markup escaped, its pipe kept inside the cell.
    assert kept[0][1] == "move X to 3 \\<b\\>bold\\</b\\> \\| piped"
    counts = dict(re.findall(r"^\| (keep|discard|crash) \| (\d+) \|$", md, re.M))
    assert counts == {"keep": "3", "discard": "2", "crash": "1"}
    assert "6 experiments, 6 sandbox runs" in md and "per experiment" in md
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "move X to 3 &lt;b&gt;bold&lt;/b&gt; | piped" in page
    assert page.count("<details>") == 2  # each kept change's diff


def test_report_writes_into_the_runs_folder_by_default(toy_run: Path) -> None:
    paths = write_report_files(toy_run)
    assert [p.name for p in paths] == ["progress.png", "report.md", "report.html"]
    assert all(p.parent == toy_run / ".autoresearch" / "runs" / "r" for p in paths)
    assert paths[0].read_bytes().startswith(b"\x89PNG")


def test_report_on_a_folder_without_runs_is_an_error(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    out = CliRunner().invoke(app, ["report", str(toy)])
    assert out.exit_code == 2 and "no runs recorded yet" in out.output
    out = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert out.exit_code == 2 and "does not exist" in out.output
