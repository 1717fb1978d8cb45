"""The CLI as a user meets it: init, run, status --json, diff, domains, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from autoresearch.cli import EXIT_BUSY, EXIT_USAGE, app
from autoresearch.testing import make_toy_domain

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    out = runner.invoke(app, ["--help"]).output
    for cmd in ("run", "baseline", "status", "diff", "domains", "init"):
        assert cmd in out


def test_run_status_and_diff(toy: Path) -> None:
    res = runner.invoke(
        app, ["run", str(toy), "--proposer", "knob", "--max-experiments", "3", "--tag", "cli"]
    )
    assert res.exit_code == 0, res.output
    assert "#1" in res.output and "baseline" in res.output and "[3/3]" in res.output
    res = runner.invoke(app, ["status", str(toy), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    for key in (
        "tag",
        "metric",
        "direction",
        "baseline_value",
        "best_value",
        "best_commit",
        "experiments",
        "counts",
        "noise_sigma",
        "spend",
    ):
        assert key in data
    assert data["tag"] == "cli" and data["metric"] == "score" and data["experiments"] == 3
    assert set(data["counts"]) == {
        "keep",
        "discard",
        "crash",
        "timeout",
        "oom",
        "invalid",
        "gate_failed",
        "interrupted",
    }
    assert data["baseline_value"] == 11.0 and data["noise_sigma"] is None
    assert runner.invoke(app, ["status", str(toy)]).exit_code == 0
    diff = runner.invoke(app, ["diff", str(toy)])
    assert diff.exit_code == 0
    if data["best_value"] < 11.0:
        assert "params.py" in diff.output
    one = runner.invoke(app, ["diff", str(toy), "2"])
    assert one.exit_code == 0 and "params.py" in one.output


def test_run_with_a_script(toy: Path, tmp_path: Path) -> None:
    script = tmp_path / "s.jsonl"
    script.write_text(
        '{"description": "X to 3", "edits": [{"path": "params.py", '
        '"search": "X = 0.0", "replace": "X = 3.0"}]}\n'
    )
    res = runner.invoke(app, ["run", str(toy), "--proposer", "scripted", "--script", str(script)])
    assert res.exit_code == 0, res.output
    assert "keep" in res.output and "the proposer has no more candidates" in res.output


def test_bad_config_exits_2_naming_the_field(toy: Path) -> None:
    cfg = toy / "autoresearch.toml"
    cfg.write_text(cfg.read_text().replace("time_budget_s = 10", "time_budget_s = 'soon'"))
    res = runner.invoke(app, ["run", str(toy)])
    assert res.exit_code == EXIT_USAGE
    assert "time_budget_s" in res.output and "autoresearch.toml" in res.output


def test_unknown_target_and_no_proposer(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(tmp_path / "nowhere")])
    assert res.exit_code == EXIT_USAGE and "bundled" in res.output
    d = make_toy_domain(tmp_path / "t", git=True)
    cfg = d / "autoresearch.toml"
    cfg.write_text(cfg.read_text().split("[[proposer.knobs]]")[0])
    import subprocess

    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x"],
        cwd=d,
        check=True,
    )
    res = runner.invoke(app, ["run", str(d), "--max-experiments", "2"])
    assert res.exit_code == EXIT_USAGE and "no proposer chosen" in res.output


def test_uncommitted_changes_exit_3(toy: Path) -> None:
    (toy / "run.py").write_text("print('changed')\n")
    res = runner.invoke(app, ["run", str(toy), "--max-experiments", "1"])
    assert res.exit_code == EXIT_BUSY and "run.py" in res.output


def test_status_without_runs(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t")
    res = runner.invoke(app, ["status", str(d)])
    assert res.exit_code == EXIT_USAGE and "no runs recorded yet" in res.output


def test_baseline_command(toy: Path) -> None:
    res = runner.invoke(app, ["baseline", str(toy)])
    assert res.exit_code == 0, res.output
    assert "score: 11" in res.output


def test_init_writes_a_valid_config(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "solver.py").write_text("N = 1\n")
    (proj / "bench.py").write_text("import solver\nprint(f'METRIC t={solver.N}')\n")
    args = [
        "init",
        str(proj),
        "--editable",
        "solver.py",
        "--fixed",
        "bench.py",
        "--command",
        "python bench.py",
        "--metric",
        "t",
        "--metric-source",
        "metric-lines",
        "--direction",
        "minimize",
        "--time-budget-s",
        "5",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    from autoresearch import load_config

    config, _ = load_config(proj)
    assert config.editable == ["solver.py"] and config.objective.source == "metric-lines"
    again = runner.invoke(app, args)
    assert again.exit_code == EXIT_USAGE and "already exists" in again.output
    res = runner.invoke(app, ["baseline", str(proj)])
    assert res.exit_code == 0, res.output
    assert "t: 1" in res.output


def test_init_refuses_bad_input_and_leaves_nothing(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "init",
            str(tmp_path),
            "--editable",
            "missing.py",
            "--command",
            "true",
            "--metric",
            "m",
            "--direction",
            "minimize",
        ],
    )
    assert res.exit_code == EXIT_USAGE and "matches no file" in res.output
    (tmp_path / "a.py").write_text("")
    res = runner.invoke(
        app,
        [
            "init",
            str(tmp_path),
            "--editable",
            "a.py",
            "--command",
            "true",
            "--metric",
            "m",
            "--direction",
            "sideways",
        ],
    )
    assert res.exit_code == EXIT_USAGE and "direction" in res.output
    assert not (tmp_path / "autoresearch.toml").exists()


def test_domains_lists_bundled() -> None:
    res = runner.invoke(app, ["domains"])
    assert res.exit_code == 0
    assert "gpt_pretrain" in res.output
