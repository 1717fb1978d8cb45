"""Mistakes caught when the loop is built (a knob's constant, an ``editable`` pattern, a
missing program.md), and runs that never measured anything: none leaves a state folder or a
research branch behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import commit_all, git, open_ledger, set_x

from autoresearch import BaselineFailed, ConfigError, Loop
from autoresearch.testing import FakeRun, FakeSandbox, Scripted, toy_run


def _edit_config(domain: Path, old: str, new: str) -> None:
    toml = domain / "autoresearch.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new, 1))
    commit_all(domain, "edit config")


def _nothing_left(domain: Path) -> None:
    assert not (domain / ".autoresearch").exists()
    assert git(domain, "branch", "--list", "autoresearch/*").strip() == ""


def test_a_knob_naming_a_missing_constant_stops_before_anything_runs(toy: Path) -> None:
    _edit_config(toy, 'constant = "Y"', 'constant = "Z"')
    sandbox = FakeSandbox(toy_run)
    with pytest.raises(ConfigError, match=r"proposer\.knobs\[1\].*constant Z is not assigned"):
        Loop.from_dir(toy, proposer="knob", sandbox=sandbox)
    assert sandbox.specs == []
    _nothing_left(toy)


def test_a_knob_whose_file_is_missing_names_the_file(toy: Path) -> None:
    _edit_config(toy, 'file = "params.py"', 'file = "nope.py"')
    with pytest.raises(ConfigError, match=r"proposer\.knobs\[0\].*'nope\.py'"):
        Loop.from_dir(toy, proposer="knob")
    _nothing_left(toy)


def test_an_editable_pattern_that_matches_nothing_is_refused(toy: Path) -> None:
    _edit_config(toy, 'editable = ["params.py"]', 'editable = ["params.py", "model*.py"]')
    with pytest.raises(ConfigError, match=r"autoresearch\.toml: editable\[1\] = 'model\*\.py'"):
        Loop.from_dir(toy, proposer=Scripted([set_x(3.0)]))
    _nothing_left(toy)


def test_an_editable_pattern_is_checked_at_the_base_not_in_the_checkout(toy: Path) -> None:
    _edit_config(toy, 'editable = ["params.py"]', 'editable = ["params.py", "extra.py"]')
    (toy / "extra.py").write_text("A = 1\n")  # there, but not committed
    with pytest.raises(ConfigError, match=r"editable\[1\]"):
        Loop.from_dir(toy, proposer=Scripted([set_x(3.0)]))


@pytest.mark.parametrize("missing", ["deleted", "empty"])
def test_an_agent_without_program_md_is_refused(toy: Path, missing: str) -> None:
    toml = toy / "autoresearch.toml"
    toml.write_text(toml.read_text() + '\n[proposer.agent]\ncommand = "true"\n')
    if missing == "deleted":
        (toy / "program.md").unlink()
    else:
        (toy / "program.md").write_text("\n")
    commit_all(toy, "no program")
    with pytest.raises(ConfigError, match=r"program = 'program\.md'.*agent proposer"):
        Loop.from_dir(toy, proposer="agent", unsafe_no_isolation=True)
    _nothing_left(toy)


def test_an_llm_without_program_md_is_refused(toy: Path) -> None:
    (toy / "program.md").unlink()
    commit_all(toy, "no program")
    with pytest.raises(ConfigError, match=r"program\.md.*llm proposer"):
        Loop.from_dir(
            toy,
            proposer="llm",
            model="m",
            base_url="http://127.0.0.1:9/v1",
            unsafe_no_isolation=True,
        )
    _nothing_left(toy)


def test_knob_and_scripted_need_no_program(toy: Path) -> None:
    (toy / "program.md").unlink()
    commit_all(toy, "no program")
    Loop.from_dir(toy, proposer="knob")
    Loop.from_dir(toy, proposer=Scripted([set_x(3.0)]))


def test_a_failed_baseline_leaves_no_branch_and_a_resume_starts_again(toy: Path) -> None:
    crashing = FakeSandbox(lambda spec: FakeRun.crash("boom\n"))
    loop = Loop.from_dir(toy, proposer=Scripted([set_x(3.0)]), tag="f", sandbox=crashing)
    with pytest.raises(BaselineFailed):
        loop.run()
    assert git(toy, "branch", "--list", "autoresearch/*").strip() == ""
    with open_ledger(toy) as led:
        info = led.tag_info("f")
    assert info is not None and info.state == "failed"
    # The failure stays on record; a resume measures the baseline again, on a new branch.
    summary = Loop.from_dir(
        toy, proposer=Scripted([set_x(3.0)]), tag="f", resume=True, sandbox=FakeSandbox(toy_run)
    ).run()
    assert summary.best_value == 2.0
    assert git(toy, "branch", "--list", "autoresearch/f").strip().endswith("autoresearch/f")


def test_a_run_that_measured_something_keeps_its_branch(toy: Path) -> None:
    Loop.from_dir(toy, proposer=Scripted([]), tag="k", sandbox=FakeSandbox(toy_run)).run()
    assert "autoresearch/k" in git(toy, "branch", "--list", "autoresearch/*")
