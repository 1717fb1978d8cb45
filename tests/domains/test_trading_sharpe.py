"""The trading_sharpe domain: data validation, splits, the look-ahead gate, the locked holdout,
and experiments end to end through the loop."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from autoresearch import (
    Candidate,
    Context,
    Edit,
    ExperimentRecord,
    Loop,
    MetricMissing,
    Proposer,
)
from autoresearch.proposers._prompt import render_context
from autoresearch.report._status import status_data

DOMAIN = Path(__file__).resolve().parents[2] / "domains" / "trading_sharpe"
_MODULES = ("harness", "prices", "strategy")
# Small data keeps an experiment to a few seconds; the rules are the same at any size.
SMALL = {"TRADING_DATA": "synthetic", "TRADING_YEARS": "5", "TRADING_ASSETS": "4"}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One numba cache for the session: vectorbt compiles once, not once per test.
    return tmp_path_factory.mktemp("trading_cache")


@pytest.fixture
def small_env(monkeypatch: pytest.MonkeyPatch, cache_dir: Path, tmp_path: Path) -> dict[str, str]:
    env = {
        **SMALL,
        "AUTORESEARCH_CACHE_DIR": str(cache_dir),
        "NUMBA_CACHE_DIR": str(cache_dir / "numba"),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch, small_env: dict[str, str]) -> Iterator[ModuleType]:
    """The domain's harness imported in-process (for functions that need no vectorbt)."""
    monkeypatch.syspath_prepend(str(DOMAIN))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # nothing written into the repo
    for name in _MODULES:
        sys.modules.pop(name, None)
    import harness as module

    yield module
    for name in _MODULES:
        sys.modules.pop(name, None)


def _copy_domain(tmp_path: Path) -> Path:
    dest = tmp_path / "trading_sharpe"
    shutil.copytree(
        DOMAIN,
        dest,
        ignore=shutil.ignore_patterns(
            "__pycache__", ".autoresearch", "results.tsv", "trading_metrics.json"
        ),
    )
    return dest


# -- look-ahead ----------------------------------------------------------------------------


def _peek_next_bar(close: pd.DataFrame, ohlcv: Any) -> pd.DataFrame:
    return (close.shift(-1) > close).astype(float) / close.shape[1]


def _full_sample_mean(close: pd.DataFrame, ohlcv: Any) -> pd.DataFrame:
    return (close > close.mean()).astype(float) / close.shape[1]


def _centered_window(close: pd.DataFrame, ohlcv: Any) -> pd.DataFrame:
    smooth = close.rolling(21, center=True, min_periods=1).mean()
    return (close > smooth).astype(float) / close.shape[1]


def _lookahead(harness: ModuleType, fn: Any) -> tuple[bool, str]:
    """The gate as evaluate() runs it: scored calls and truncated calls, compared."""
    data = harness.load_prices()[0]
    insample, windows, _ = harness.split(len(data["close"]))
    ends = [insample.end, *(w.end for w in windows)]
    ends += harness.lookahead_cuts(insample.end // 2, windows[-1].end)
    result: tuple[bool, str] = harness.lookahead_check(
        [harness.target_weights(fn, data, end) for end in ends]
    )
    return result


@pytest.mark.parametrize("peek", [_peek_next_bar, _full_sample_mean, _centered_window])
def test_a_peeking_strategy_is_caught(harness: ModuleType, peek: Any) -> None:
    ok, detail = _lookahead(harness, peek)
    assert not ok
    assert "future bars" in detail


def test_peeking_only_on_the_scored_calls_is_caught(harness: ModuleType) -> None:
    # Knows the split, so it behaves on every call whose length is not a period end.
    data = harness.load_prices()[0]
    insample, windows, _ = harness.split(len(data["close"]))
    scored = {insample.end, *(w.end for w in windows[:-1])}

    def sly(close: pd.DataFrame, ohlcv: Any) -> pd.DataFrame:
        return _peek_next_bar(close, ohlcv) if len(close) in scored else close * 0.0

    assert not _lookahead(harness, sly)[0]


def test_the_shipped_strategy_does_not_look_ahead(harness: ModuleType) -> None:
    import strategy

    assert _lookahead(harness, strategy.positions) == (True, "")


# -- splits, positions ---------------------------------------------------------------------


def test_splits_are_ordered_and_the_holdout_is_most_recent(harness: ModuleType) -> None:
    insample, windows, hold = harness.split(1000)
    assert insample.start == 0 and insample.end == windows[0].start
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert windows[-1].end == hold.start and hold.end == 1000
    assert len(windows) == 4 and hold.end - hold.start == 200
    with pytest.raises(harness.DataError, match="too few"):
        harness.split(6)


def test_position_forms_and_the_leverage_cap(harness: ModuleType) -> None:
    close = pd.DataFrame(
        {"A": [1.0, 2, 3, 4], "B": [1.0, 1, 1, 1]}, index=pd.bdate_range("2020-01-01", periods=4)
    )
    w = harness.to_weights(close * 2.0, close)  # gross far above 1
    assert (w.abs().sum(axis=1) <= 1 + 1e-12).all()
    long_flat = harness.to_weights(close > 1.5, close)
    assert long_flat["A"].tolist() == [0.0, 0.5, 0.5, 0.5]
    entries = pd.DataFrame(False, index=close.index, columns=close.columns)
    exits = entries.copy()
    entries.iloc[1, 0] = True
    exits.iloc[3, 0] = True
    assert harness.to_weights((entries, exits), close)["A"].tolist() == [0.0, 0.5, 0.5, 0.0]
    with pytest.raises(harness.StrategyError, match="fill them with 0"):
        harness.to_weights(close.iloc[1:], close)
    with pytest.raises(harness.StrategyError, match="columns"):
        harness.to_weights(close.rename(columns={"B": "C"}), close)


# -- user data -----------------------------------------------------------------------------


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _rows(n: int, assets: Sequence[str] = ("AAA", "BBB")) -> str:
    dates = pd.bdate_range("2015-01-01", periods=n)
    lines = ["Date,Symbol,Open,High,Low,Close,Volume"]
    for i, d in enumerate(dates):
        for j, a in enumerate(assets):
            p = 100 + i * 0.1 + j
            lines.append(f"{d.date()},{a},{p},{p + 1},{p - 1},{p + 0.5},1000")
    return "\n".join(lines) + "\n"


def test_a_long_csv_loads_as_wide_frames(harness: ModuleType, tmp_path: Path) -> None:
    import prices

    data = prices.load_file(_csv(tmp_path, _rows(300)))
    assert list(data["close"].columns) == ["AAA", "BBB"]
    assert data["close"].shape == (300, 2)
    frame = pd.read_csv(tmp_path / "prices.csv")
    frame.to_parquet(tmp_path / "prices.parquet")
    assert prices.load_file(tmp_path / "prices.parquet")["open"].shape == (300, 2)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace("Close", "Last"), "no 'close' column"),
        (lambda t: t.replace("Date", "Day"), "no date column"),
        (lambda t: t.replace("2015-01-05", "yesterday", 1), "not a date"),
        (lambda t: t.replace(",100.5,", ",-3,", 1), "'close' row 2 holds"),
        (lambda t: t + t.splitlines()[1] + "\n", "repeats date"),
        (lambda t: "\n".join(t.splitlines()[:100]) + "\n", "at least 250"),
    ],
)
def test_bad_user_data_says_what_to_fix(
    harness: ModuleType, tmp_path: Path, mutate: Any, message: str
) -> None:
    import prices

    path = _csv(tmp_path, mutate(_rows(300)))
    with pytest.raises(prices.DataError, match=message) as err:
        prices.load_file(path)
    assert str(path) in str(err.value)


def test_a_missing_file_is_explained(harness: ModuleType, tmp_path: Path) -> None:
    import prices

    with pytest.raises(prices.DataError, match="absolute path"):
        prices.load_file(tmp_path / "nope.csv")


def test_goog_preset_loads_real_prices(harness: ModuleType) -> None:
    import prices

    data = prices.goog()
    assert data["close"].shape == (1047, 1)
    assert str(data["close"].index[0].date()) == "2004-08-19"


# -- the harness in a sandbox-like subprocess ----------------------------------------------


@pytest.mark.slow
def test_evaluate_prints_no_holdout_figure(
    harness: ModuleType, small_env: dict[str, str], tmp_path: Path
) -> None:
    domain = _copy_domain(tmp_path)
    res = subprocess.run(
        [sys.executable, "harness.py", "evaluate"],
        cwd=domain,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    report = json.loads((domain / "trading_metrics.json").read_text())
    hold = report["holdout"]
    assert set(hold) >= {"sharpe", "max_drawdown", "turnover", "cagr", "start", "end"}
    assert report["gates"]["lookahead_ok"] is True
    from autoresearch._objective import parse_summary

    out = res.stdout + res.stderr
    printed = parse_summary(res.stdout)["val_sharpe"]
    assert printed == pytest.approx(report["validation"]["sharpe"], abs=1e-6)
    for secret in (hold["start"], hold["end"], f"{hold['sharpe']:.4f}", f"{hold['cagr']:.4f}"):
        assert secret not in out


def _harness_run(
    tmp_path: Path, source: str, mode: str = "evaluate"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    domain = _copy_domain(tmp_path)
    (domain / "strategy.py").write_text(textwrap.dedent(source).replace("DOMAIN", str(domain)))
    res = subprocess.run(
        [sys.executable, "harness.py", mode],
        cwd=domain,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return res, domain


# Honest when it finds the gate on the stack, peeking otherwise; and it rewrites the metrics
# file as the process exits. Neither works when the strategy runs in its own process.
_EVASIVE = """
import atexit
import inspect
import json
from pathlib import Path

import pandas as pd


def _forge():
    for path in (Path("trading_metrics.json"), Path("DOMAIN") / "trading_metrics.json"):
        forged = {"validation": {"sharpe": 9.9}, "gates": {"lookahead_ok": True}}
        path.write_text(json.dumps(forged))


atexit.register(_forge)


def positions(close, ohlcv):
    if any(f.function == "lookahead_check" for f in inspect.stack()):
        return close * 0.0
    up = close.shift(-1) > close
    return (up.astype(float) - (~up).astype(float)) / close.shape[1]
"""


@pytest.mark.slow
def test_stack_sniffing_and_an_exit_hook_change_nothing(
    harness: ModuleType, small_env: dict[str, str], tmp_path: Path
) -> None:
    from autoresearch._registry import load_module_file

    SharpeObjective = load_module_file(DOMAIN / "objective.py", "objective").SharpeObjective

    from autoresearch import RunResult

    res, domain = _harness_run(tmp_path, _EVASIVE)
    assert res.returncode == 0, res.stderr
    report = json.loads((domain / "trading_metrics.json").read_text())
    assert report["gates"]["lookahead_ok"] is False
    assert report["validation"]["sharpe"] != 9.9
    log = tmp_path / "eval.log"
    log.write_text(res.stdout)
    run = RunResult(domain, log, 0, 1.0, 10.0, 0, eval_log_path=log, eval_exit_code=0)
    objective = SharpeObjective()
    assert objective.measure(run).primary == pytest.approx(report["validation"]["sharpe"])
    assert not objective.gate(run).passed
    # Had the hook written the file after the harness (a helper process outliving it), the
    # figures printed in the eval log would no longer match it.
    (domain / "trading_metrics.json").write_text(
        json.dumps({**report, "validation": {**report["validation"], "sharpe": 9.9}})
    )
    with pytest.raises(MetricMissing, match="altered"):
        objective.measure(run)


@pytest.mark.parametrize("module", ["prices", "harness"])
def test_the_strategy_cannot_import_the_harness_or_the_data(
    small_env: dict[str, str], tmp_path: Path, module: str
) -> None:
    res, _ = _harness_run(
        tmp_path, f"import {module}\n\ndef positions(close):\n    return close", "insample"
    )
    assert res.returncode == 1
    assert f"[candidate] ModuleNotFoundError: No module named '{module}'" in res.stderr
    assert "positions() failed" in res.stderr


# Prints the holdout's last bar when it exits, and fails that call: neither may show.
_LEAKY = """
import atexit
import os

LAST = []


def _tell():
    print("LEAK", LAST[-1], flush=True)
    if LAST[-1][1] > 1100:
        os._exit(1)


atexit.register(_tell)


def positions(close, ohlcv):
    LAST.append((str(close.index[-1].date()), len(close)))
    return (close > close.rolling(20).mean()).astype(float).fillna(0.0) / close.shape[1]
"""


@pytest.mark.slow
def test_what_the_strategy_prints_at_exit_on_the_holdout_is_dropped(
    harness: ModuleType, small_env: dict[str, str], tmp_path: Path
) -> None:
    res, domain = _harness_run(tmp_path, _LEAKY)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "[candidate] LEAK" in out  # other calls' output is passed on, prefixed
    data = harness.load_prices()[0]
    last = str(data["close"].index[-1].date())
    assert last not in out
    report = json.loads((domain / "trading_metrics.json").read_text())
    assert "details withheld" in report["holdout"]["error"]


# -- the loop, end to end --------------------------------------------------------------------

_PEEK = """
import pandas as pd


def positions(close, ohlcv):
    # Tomorrow's return decides today's weight: a perfect, impossible strategy.
    up = close.shift(-1) > close
    return (up.astype(float) - (~up).astype(float)) / close.shape[1]
"""

# Prints what it sees on every call and fails the call that holds the most bars (the
# holdout's): were its output or its failure shown, the holdout would reach the proposer.
_CHATTY = """
import atexit
import os

import pandas as pd

LONGEST = 1100  # more bars than any call before the holdout's (SMALL data: 1260 bars)


def positions(close, ohlcv):
    print("seen", close.index[-1].date(), round(float(close.iloc[-1].sum()), 4), flush=True)
    if len(close) > LONGEST:
        atexit.register(os._exit, 3)
    return (close > close.rolling(20).mean()).astype(float).fillna(0.0) / close.shape[1]
"""


class RecordingProposer(Proposer):
    """Replays candidates and keeps the text an LLM proposer would have been given."""

    name = "scripted"

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.queue = list(candidates)
        self.prompts: list[str] = []
        self.outcomes: list[ExperimentRecord] = []

    def propose(self, context: Context) -> Candidate | None:
        self.prompts.append(render_context(context))
        return self.queue.pop(0) if self.queue else None

    def observe(self, candidate: Candidate, record: ExperimentRecord) -> None:
        self.outcomes.append(record)


def _knob_edit(text: str, **values: Any) -> Candidate:
    from autoresearch.proposers._knob import set_constant

    for name, value in values.items():
        text = set_constant(text, name, repr(value), "strategy.py")
    desc = ", ".join(f"{k}={v}" for k, v in values.items())
    return Candidate(desc, (Edit("strategy.py", content=text),))


@pytest.mark.slow
def test_the_holdout_never_reaches_the_proposer(
    harness: ModuleType, small_env: dict[str, str], tmp_path: Path
) -> None:
    domain = _copy_domain(tmp_path)
    source = (domain / "strategy.py").read_text()
    proposer = RecordingProposer(
        [
            _knob_edit(source, FAST_WINDOW=10, SLOW_WINDOW=50),
            Candidate("peek at tomorrow", (Edit("strategy.py", content=_PEEK),)),
            Candidate("print everything", (Edit("strategy.py", content=_CHATTY),)),
            _knob_edit(source, REBALANCE_EVERY=10),
        ]
    )
    env = {"env": dict(SMALL)}
    summary = Loop.from_dir(domain, proposer=proposer, tag="t1", overrides=env).run(
        max_experiments=6
    )

    assert summary.experiments == 5
    by_desc = {r.description: r for r in proposer.outcomes}
    assert by_desc["peek at tomorrow"].status.value == "gate_failed"
    assert "look-ahead" in by_desc["peek at tomorrow"].reason
    # Its holdout call failed in private: the run went on, with the holdout marked failed.
    assert by_desc["print everything"].status.value != "crash"
    assert summary.baseline_value is not None

    status = status_data(domain, "t1", holdout=True)
    holdouts = [r["holdout"] for r in status["recent"] if r.get("holdout")]
    assert len(holdouts) >= 3  # baseline, knob, peek (the chatty one's holdout failed)
    secrets = set()
    for figures in holdouts:
        for value in figures.values():
            # Five or more digits: at four, a figure the proposer may see (e.g.
            # insample_cagr=0.1002) can match a holdout one (0.10025) by chance.
            if value != int(value):  # counts like "12" appear everywhere legitimately
                forms = {f"{value:.5g}", f"{value:.6g}", repr(value)}
                secrets |= {s for s in forms if sum(c.isdigit() for c in s) >= 5}
    data = harness.load_prices()[0]
    hold = harness.split(len(data["close"]))[2]
    index = data["close"].index
    secrets |= {str(index[hold.start].date()), str(index[-1].date())}

    assert len(proposer.prompts) == 5
    for prompt in proposer.prompts:
        leaked = sorted(s for s in secrets if s in prompt)
        assert not leaked, f"holdout figures in the proposer's context: {leaked}"
        assert "holdout_" not in prompt


@pytest.mark.slow
def test_knob_search_runs_offline_and_status_deflates_the_best(
    small_env: dict[str, str], tmp_path: Path
) -> None:
    domain = _copy_domain(tmp_path)
    env = {"env": dict(SMALL)}
    summary = Loop.from_dir(domain, proposer="knob", tag="k1", overrides=env).run(max_experiments=3)
    assert summary.experiments == 3
    assert summary.counts.get("crash", 0) == 0
    assert summary.best_value is not None

    from typer.testing import CliRunner

    from autoresearch.cli import app

    plain = CliRunner().invoke(app, ["status", str(domain), "--json"])
    assert plain.exit_code == 0, plain.output
    data = json.loads(plain.output)
    assert 0.0 <= data["report"]["deflated_sharpe"] <= 1.0
    assert data["report"]["trials"] == 3
    assert "holdout" not in plain.output
    shown = CliRunner().invoke(app, ["status", str(domain), "--json", "--holdout"])
    assert "holdout_sharpe" in shown.output


def test_weekly_bars_under_a_daily_annualisation_are_refused(
    harness: ModuleType, tmp_path: Path
) -> None:
    import prices

    dates = pd.date_range("2010-01-01", periods=300, freq="W-FRI")
    lines = ["Date,Symbol,Open,High,Low,Close,Volume"]
    for i, d in enumerate(dates):
        p = 100 + i * 0.1
        lines.append(f"{d.date()},AAA,{p},{p + 1},{p - 1},{p + 0.5},1000")
    path = tmp_path / "weekly.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(prices.DataError, match='TRADING_PERIODS_PER_YEAR = "52"'):
        prices.load_file(path)
