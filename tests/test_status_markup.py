"""What a candidate, proposer, objective or user wrote is printed as it is, never read as rich
markup, emoji codes or terminal control: by `status` during a live run, `status --holdout`,
`diff`, `run`'s live lines and the error messages (issue 16, item 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import open_ledger, set_x
from typer.testing import CliRunner

from autoresearch import Edit, Event, ExperimentRecord, Loop, RunSpec, Status
from autoresearch._objective import report_key
from autoresearch.cli import EXIT_USAGE, app
from autoresearch.cli._app import _Printer, console
from autoresearch.testing import FakeRun, FakeSandbox, Scripted, toy_run

runner = CliRunner()
# rich reads COLUMNS on every print: wide enough that no table cell wraps.
WIDE = {"COLUMNS": "200"}

# A closing tag with nothing to close (rich raised MarkupError), styles and a link (eaten),
# an emoji code (replaced) and an escape sequence (would clear the terminal).
HOSTILE = "[/] [bold red]x[/bold red] [link=file:///etc]y :thumbs_up: \x1b[2J"
SHOWN = HOSTILE.replace("\x1b", "\\x1b")
COMMENT = "# [/] [bold red]x[/bold red] :thumbs_up:"


def test_status_during_a_live_run_shows_the_running_row(toy: Path) -> None:
    seen: list[tuple[int, str, dict[str, Any]]] = []

    def handler(spec: RunSpec) -> str | FakeRun:
        # Called while the experiment's row is `running`: what a second terminal would show.
        text = runner.invoke(app, ["status", str(toy)], env=WIDE)
        as_json = runner.invoke(app, ["status", str(toy), "--json"])
        seen.append((text.exit_code, text.output, json.loads(as_json.output)))
        return toy_run(spec)

    cand = set_x(3.0, desc=HOSTILE)
    Loop.from_dir(toy, proposer=Scripted([cand]), tag="live", sandbox=FakeSandbox(handler)).run()
    assert len(seen) == 2  # the baseline's run and the candidate's
    for code, output, data in seen:
        assert code == 0, output
        assert data["state"] == "running" and data["recent"][-1]["status"] == "running"
        assert "live (running)" in output and "running" in output.splitlines()[-1]
    code, output, data = seen[1]
    assert data["recent"][-1]["description"] == HOSTILE
    assert SHOWN in output.splitlines()[-1]


def test_status_prints_hostile_names_and_descriptions_literally(tmp_path: Path) -> None:
    domain = tmp_path / "d"
    metric = "[/]score[bold]"
    with open_ledger(domain) as led:
        led.create_tag("t", "autoresearch/t", "0" * 40, None, metric, "minimize", {}, {})
        first = led.begin("t", "0" * 40, HOSTILE, "scripted")
        led.finish(first, Status.DISCARD, reason=HOSTILE, holdout={"[/]held": 1.5}, value=2.0)
        led.begin("t", "0" * 40, "[]running[/]", "scripted")
        led.set_meta(report_key("t"), {"[/]sharpe :x:": 0.5})
    for args in ([], ["--holdout"]):
        res = runner.invoke(app, ["status", str(domain), *args], env=WIDE)
        assert res.exit_code == 0, res.output
        assert f"t (running): {metric} minimize" in res.output
        assert "[/]sharpe :x:: 0.5" in res.output
        header, row, running = res.output.splitlines()[-3:]
        assert metric in header and SHOWN in row and "[]running[/]" in running
        assert ("[/]held=1.5" in row) == bool(args)


def test_a_bad_tag_is_named_literally(toy: Path) -> None:
    Loop.from_dir(toy, proposer=Scripted([]), tag="t", sandbox=FakeSandbox()).run()
    for command in ("status", "diff"):
        res = runner.invoke(app, [command, str(toy), "--tag", HOSTILE])
        assert res.exit_code == EXIT_USAGE
        assert f"error: {toy.resolve()}: no run with tag {HOSTILE!r}" in res.output


def test_diff_prints_hostile_content_literally(toy: Path) -> None:
    edit = Edit("params.py", search="X = 0.0", replace=f"X = 3.0  {COMMENT}")
    cand = set_x(3.0, desc=HOSTILE)
    cand = type(cand)(cand.description, (edit,))
    Loop.from_dir(toy, proposer=Scripted([cand]), tag="d", sandbox=FakeSandbox()).run()
    for args in ([], ["2"]):
        res = runner.invoke(app, ["diff", str(toy), *args])
        assert res.exit_code == 0, res.output
        assert f"+X = 3.0  {COMMENT}" in res.output


def _record(status: Status) -> ExperimentRecord:
    return ExperimentRecord(
        id=7,
        tag="t",
        status=status,
        reason=HOSTILE,
        description=HOSTILE,
        hypothesis="",
        proposer="scripted",
        parent_commit="0" * 40,
        commit=None,
        value=None,
        secondary={},
        holdout={},
        meta={},
        tokens=0,
        cost_usd=0.0,
        memory_gb=None,
    )


def test_the_live_printer_styles_every_status_and_prints_text_literally() -> None:
    printer = _Printer("[/]score", total=3)
    with console.capture() as cap:
        for status in Status:
            printer(Event("experiment", record=_record(status), elapsed_s=61))
        printer(Event("message", message=HOSTILE))
    lines = cap.get().splitlines()
    assert len(lines) == len(Status) + 1
    for status, line in zip(Status, lines, strict=False):
        assert f"#7    {status.value:<11} [/]score -" in line and "01:01" in line
        assert SHOWN in line
        assert (f"({SHOWN})" in line) == (status is not Status.KEEP)
    assert lines[-1] == f"· {SHOWN}"


def test_run_prints_a_scripted_description_literally(toy: Path, tmp_path: Path) -> None:
    script = tmp_path / "s.jsonl"
    line = {
        "description": HOSTILE,
        "edits": [{"path": "params.py", "search": "X = 0.0", "replace": "X = 3.0"}],
    }
    script.write_text(json.dumps(line) + "\n")
    res = runner.invoke(app, ["run", str(toy), "--proposer", "scripted", "--script", str(script)])
    assert res.exit_code == 0, res.output
    assert any("keep" in out and SHOWN in out for out in res.output.splitlines())
