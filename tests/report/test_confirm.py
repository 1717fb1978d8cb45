"""`confirm`: baseline and best re-measured interleaved on fresh seeds, through the loop's
sandbox path; a known effect is confirmed, a null one never is, a deterministic domain says
its variance is zero. Seeded, so every outcome is the same on every run."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from conftest import set_x

from autoresearch import Candidate, Edit, Loop
from autoresearch._layout import Layout
from autoresearch._ledger import Ledger
from autoresearch.execution import RunSpec
from autoresearch.report._confirm import confirm, replicate, t_quantile
from autoresearch.testing import FakeSandbox, Scripted, make_toy_domain, toy_score


def noisy_toy(spec: RunSpec) -> str:
    """The toy's score plus a Gaussian seeded by the run's seed and the candidate's bytes:
    any change (a comment too) draws other noise, as a changed model does."""
    text = (spec.workdir / "params.py").read_text()
    ns: dict[str, float] = {}
    for line in text.splitlines():
        if line[:1] in "XY" and "=" in line:
            ns[line[0]] = float(line.split("=")[1].split("#")[0])
    digest = hashlib.sha256(f"{spec.seed}:{text}".encode()).hexdigest()
    noise = random.Random(digest).gauss(0, 1)
    return f"---\nscore: {toy_score(ns['X'], ns['Y']) + noise:.6f}\n"


def comment(i: int) -> Candidate:
    """A change that changes nothing the score depends on."""
    return Candidate(
        f"comment {i}",
        (Edit("params.py", search="# first coordinate", replace=f"# first coordinate ({i})"),),
    )


def run_toy(tmp_path: Path, candidates: list[Candidate], handler=noisy_toy, **kw) -> Path:  # type: ignore[no-untyped-def]
    toy = make_toy_domain(tmp_path / "toy", git=True)
    Loop.from_dir(
        toy, proposer=Scripted(candidates), tag="t", sandbox=FakeSandbox(handler), **kw
    ).run(max_experiments=len(candidates) + 1)
    return toy


def test_t_quantile_matches_the_tables() -> None:
    assert t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-5)
    assert t_quantile(0.975, 1000) == pytest.approx(1.962339, abs=1e-4)


def test_paired_maths_on_known_numbers() -> None:
    # minimize: the best is 1 lower in every pair; differences 1, 1.5, 0.5 -> mean 1, sd 0.5
    effect, lo, hi, p, det = replicate([5, 5.5, 5], [4, 4, 4.5], "minimize", 1.0)
    assert effect == pytest.approx(1.0)
    half = t_quantile(0.975, 2) * 0.5 / 3**0.5
    assert (lo, hi) == (pytest.approx(1 - half), pytest.approx(1 + half))
    assert 0 < p < 0.05 and not det
    assert replicate([2.0, 2.0], [1.0, 1.0], "minimize", None)[4] is True


def test_a_known_effect_is_confirmed_on_fresh_seeds(tmp_path: Path) -> None:
    toy = run_toy(tmp_path, [set_x(3.0)])
    sandbox = FakeSandbox(noisy_toy)
    result = confirm(toy, runs=6, sandbox=sandbox)
    # 11 -> 2: a gain of 9 against a noise of 1 per run.
    assert result.confirmed and not result.deterministic
    assert result.effect == pytest.approx(9.0, abs=1.0)
    assert result.ci_low > 0 and result.ci_low < result.effect < result.ci_high
    assert result.p_value < 0.001
    assert result.claimed is not None and result.replicated_fraction is not None
    assert result.replicated_fraction == pytest.approx(result.effect / result.claimed)
    # A B A B ... through the sandbox, every seed new to the run.
    with _ro(toy) as led:
        used = {r.seed for r in led.runs("t")}
        seeds = [s.seed for s in sandbox.specs]
        best = led.history("t")[-1].commit
    assert not used & set(seeds) and len(set(seeds)) == 12
    commits = [s.workdir for s in sandbox.specs]
    assert len({commits[0], commits[1]}) == 2 and commits[::2] == [commits[0]] * 6
    assert result.best_commit == best
    # The loop's own runs and figures are untouched; the result is recorded.
    with _ro(toy) as led:
        assert {r.seed for r in led.runs("t")} == used
        recorded = led.latest_confirmation("t")
    assert recorded is not None and recorded.result["effect"] == result.effect


def test_a_null_effect_is_never_confirmed(tmp_path: Path) -> None:
    # Comment-only changes, kept when their noise happened to be lucky (greedy, no margin).
    toy = run_toy(tmp_path, [comment(i) for i in range(6)], acceptance="greedy")
    with _ro(toy) as led:
        kept = [r for r in led.history("t")[1:] if r.status.value == "keep"]
    assert kept, "the seeded toy run keeps a lucky comment (the case confirm must catch)"
    result = confirm(toy, runs=8, sandbox=FakeSandbox(noisy_toy))
    assert not result.confirmed
    assert result.ci_low <= 0 <= result.ci_high
    assert result.p_value > 0.05
    assert result.claimed is not None and result.claimed > 0
    again = confirm(toy, runs=8, sandbox=FakeSandbox(noisy_toy))
    # Seeded: a second confirm draws other fresh seeds, and still does not confirm.
    assert not again.confirmed and set(again.seeds).isdisjoint(result.seeds)


def test_a_deterministic_domain_says_its_variance_is_zero(tmp_path: Path) -> None:
    toy = run_toy(tmp_path, [set_x(2.0)], handler=None)
    result = confirm(toy, runs=2, sandbox=FakeSandbox())
    assert result.deterministic and not result.confirmed
    assert result.effect == pytest.approx(11.0 - 3.0)  # X=2: (2-3)^2 + (0-1)^2 + 1
    assert result.ci_low == result.ci_high == result.effect
    assert result.replicated_fraction == pytest.approx(1.0)
    assert "variance is zero" in result.note and "holdout" in result.note


def test_confirm_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    from autoresearch._errors import ConfigError, SessionError

    toy = run_toy(tmp_path, [set_x(-4.0)])  # worse: nothing kept
    with pytest.raises(SessionError, match="kept no candidate"):
        confirm(toy, sandbox=FakeSandbox(noisy_toy))
    with pytest.raises(ConfigError, match="--runs 2 or more"):
        confirm(toy, runs=1, sandbox=FakeSandbox(noisy_toy))
    with pytest.raises(SessionError, match="no run with tag"):
        confirm(toy, tag="nope", sandbox=FakeSandbox(noisy_toy))


def test_confirm_json_on_the_command_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from autoresearch.cli import app

    toy = run_toy(tmp_path, [set_x(3.0)], handler=None)
    out = CliRunner().invoke(app, ["confirm", str(toy), "--runs", "2", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    for key in ("effect", "ci_low", "ci_high", "p_value", "claimed", "replicated_fraction"):
        assert isinstance(data[key], float), key
    assert data["runs"] == 2 and data["deterministic"] is True
    # status shows it beside the claim.
    shown = CliRunner().invoke(app, ["status", str(toy)])
    assert "confirm" in shown.output and "variance is zero" in shown.output


class _ro:
    """A read-only ledger of a toy folder, as a context manager."""

    def __init__(self, domain: Path) -> None:
        self.led = Ledger.open_readonly(Layout(domain).ledger)

    def __enter__(self) -> Ledger:
        return self.led

    def __exit__(self, *exc: object) -> None:
        self.led.close()
