"""What a new user meets on the command line (issue 16, items 5, 6 and 8): the run's tag and
branch, progress they can see (a live line, a heartbeat in a log), help and version flags,
errors for missing folders, an empty diff explained, a resume hint that keeps the budgets."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from autoresearch import Event, RunSummary
from autoresearch.acceptance import POLICIES
from autoresearch.cli import EXIT_INTERRUPTED, EXIT_USAGE, app
from autoresearch.cli._app import _resume_hint
from autoresearch.cli._progress import Printer
from autoresearch.cli._text import clip, plural
from autoresearch.proposers import PROPOSERS
from autoresearch.testing import make_toy_domain

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
REPEAT = Event("run", experiment_id=3, run_kind="re-measure", repeat=2, repeats=3)


def _run(*args: str) -> str:
    res = runner.invoke(app, ["run", *args], env=WIDE)
    assert res.exit_code == 0, res.output
    return res.output


# -- item 5: the tag is visible ----------------------------------------------------------------
def test_run_prints_its_tag_and_branch_first_and_in_the_summary(toy: Path) -> None:
    out = _run(str(toy), "--proposer", "knob", "--max-experiments", "1")
    found = re.search(r"^tag (\S+), branch (\S+)$", out, re.M)
    assert found, out
    tag, branch = found.groups()
    assert branch == f"autoresearch/{tag}"
    assert out.index(found.group()) < out.index("#1 "), "the tag comes before the first result"
    summary = [ln for ln in out.splitlines() if ln.startswith(f"tag {tag}, branch {branch}: ")]
    assert summary and "1 experiment (" in summary[0], out
    assert f"git -C {toy} log --oneline {branch}" in out
    assert f"autoresearch status {toy} --tag {tag}" in out


def test_status_and_diff_default_to_the_latest_tag(toy: Path) -> None:
    _run(str(toy), "--proposer", "knob", "--max-experiments", "1", "--tag", "first")
    _run(str(toy), "--proposer", "knob", "--max-experiments", "2", "--tag", "second")
    res = runner.invoke(app, ["status", str(toy), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["tag"] == "second"
    first = runner.invoke(app, ["status", str(toy), "--json", "--tag", "first"])
    assert json.loads(first.output)["tag"] == "first"


# -- item 6: progress a person can see ---------------------------------------------------------
def test_the_live_terminal_line_names_the_experiment_and_the_run() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    printer = Printer("score", total=3, console=terminal)
    with printer:
        printer(REPEAT)
        assert printer.bar is not None
        deadline = time.monotonic() + 10  # the timer thread redraws it; a loaded machine lags
        shown = ""
        while time.monotonic() < deadline and "re-measure" not in shown:
            shown = printer.bar.tasks[0].description
            time.sleep(0.05)
    assert "experiment #3, re-measure run 2 of 3" in shown, shown
    assert re.search(r"\d\d:\d\d", shown), shown  # the elapsed time


def test_a_log_gets_a_heartbeat_line_while_a_run_is_silent() -> None:
    log = Console(file=io.StringIO(), width=200)
    printer = Printer("score", total=None, console=log, heartbeat_s=0.2)

    def beats() -> list[str]:
        text = log.file.getvalue()  # type: ignore[attr-defined]
        return [ln for ln in text.splitlines() if ln.startswith("still running: ")]

    with printer:
        printer(REPEAT)
        deadline = time.monotonic() + 10  # at 0.2 s, two beats come well before this
        while len(beats()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    found = beats()
    assert len(found) >= 2, log.file.getvalue()  # type: ignore[attr-defined]
    assert "experiment #3, re-measure run 2 of 3" in found[0]


def test_run_prints_a_heartbeat_at_the_interval_given(tmp_path: Path) -> None:
    slow = make_toy_domain(tmp_path / "slow", git=True, command="sleep 1.5 && python run.py")
    out = _run(str(slow), "--proposer", "knob", "--max-experiments", "1", "--heartbeat-s", "0.3")
    assert re.search(r"^still running: experiment #\d+, baseline run", out, re.M), out
    # The library's own log lines of the same events are not printed beside the CLI's.
    assert " autoresearch: " not in out


# -- item 8: the smaller ones ------------------------------------------------------------------
@pytest.mark.parametrize("args", [["-h"], ["run", "-h"], ["status", "-h"], ["diff", "-h"]])
def test_dash_h_is_help(args: list[str]) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "Usage:" in res.output


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and re.fullmatch(r"autoresearch \d+\.\d+\S*\n", res.output)


def test_help_text_is_not_read_as_markup() -> None:
    res = runner.invoke(app, ["run", "--help"], env=WIDE)
    assert "[presets.NAME]" in res.output


def test_help_lists_the_policies_and_proposers_the_config_points_to() -> None:
    for args in (["--help"], ["run", "--help"]):
        out = " ".join(runner.invoke(app, args, env=WIDE).output.split())
        assert ", ".join(POLICIES.names()) in out and ", ".join(PROPOSERS.names()) in out


@pytest.mark.parametrize("command", ["status", "diff"])
def test_a_folder_that_does_not_exist_is_an_error(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nowhere"
    res = runner.invoke(app, [command, str(missing)], env=WIDE)
    assert res.exit_code == EXIT_USAGE
    assert f"{missing} does not exist" in res.output and "no runs" not in res.output


def test_diff_says_when_the_best_is_the_baseline(toy: Path) -> None:
    assert runner.invoke(app, ["baseline", str(toy)]).exit_code == 0
    res = runner.invoke(app, ["diff", str(toy)])
    assert res.exit_code == 0 and "the best is the baseline: no change kept" in res.output


def test_the_resume_hint_keeps_the_budgets_and_options(
    toy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: object, **budgets: object) -> RunSummary:
        return RunSummary("t1", "autoresearch/t1", None, None, None, {}, 1, "interrupted", True)

    monkeypatch.setattr("autoresearch.cli._app.Loop.run", interrupted)
    res = runner.invoke(
        app,
        ["run", str(toy), "--proposer", "knob", "--max-experiments", "5", "--max-hours", "2"],
        env=WIDE,
    )
    assert res.exit_code == EXIT_INTERRUPTED
    hint = next(ln for ln in res.output.splitlines() if ln.startswith("resume with: "))
    assert hint == (
        f"resume with: autoresearch run {toy} --resume --tag t1 --proposer knob "
        "--max-experiments 5 --max-hours 2.0"
    )


def test_resume_hint_quotes_what_the_shell_would_split() -> None:
    hint = _resume_hint(Path("my dir"), "t", {"--max-tokens": 10, "--model": None})
    assert hint == "autoresearch run 'my dir' --resume --tag t --max-tokens 10"


def test_singular_and_plural() -> None:
    assert plural(1, "experiment") == "1 experiment" and plural(2, "run") == "2 runs"


def test_descriptions_are_cut_at_a_word_boundary() -> None:
    text = "raise the learning rate warmup to four hundred steps"
    cut = clip(text, 30)
    assert cut == "raise the learning rate…" and len(cut) <= 30
    assert clip("short", 30) == "short"
    assert clip("x" * 40, 10) == "x" * 9 + "…"


def test_the_live_line_cuts_a_long_description_at_a_word(toy: Path, tmp_path: Path) -> None:
    words = "lower the weight decay " * 6
    script = tmp_path / "s.jsonl"
    edit = {"path": "params.py", "search": "X = 0.0", "replace": "X = 3.0"}
    script.write_text(json.dumps({"description": words.strip(), "edits": [edit]}) + "\n")
    out = _run(str(toy), "--proposer", "scripted", "--script", str(script))
    line = next(ln for ln in out.splitlines() if "lower the weight" in ln and "#" in ln)
    assert re.search(r"(weight|decay|lower|the)…", line), line


def test_the_run_summary_labels_the_baseline(tmp_path: Path) -> None:
    """The summary's baseline is the mean of every run of the baseline's code: it says so."""
    from autoresearch.testing import make_toy_domain

    toy = make_toy_domain(tmp_path / "toy", git=True)
    result = CliRunner().invoke(app, ["run", str(toy), "--max-experiments", "1", "--tag", "lbl"])
    assert result.exit_code == 0, result.output
    assert "baseline 11 (first run)" in result.output, result.output
