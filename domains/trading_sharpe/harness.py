"""Fixed harness of the trading domain: splits, the vectorbt backtest with costs, metrics, gates.

  python harness.py insample   the strategy on the in-sample period only; prints its figures
  python harness.py evaluate   in-sample, walk-forward validation, look-ahead gate and the locked
                               holdout; writes every figure to trading_metrics.json and prints
                               all but the holdout's (stdout reaches the proposer on failures)

Candidates cannot edit this file. Settings come from the environment (autoresearch.toml [env]).
Under the engine the bars come from the folders prepare.py filled (see prices.load_for): the
candidate's command (`insample`) can read the in-sample bars only.

This process never imports strategy.py. Each call of positions() runs in a fresh isolated child
(autoresearch.harness.call_isolated: `python -I`, a minimal environment without the TRADING_*
settings, its own process group) whose folder holds only a copy of strategy.py and the adapter
below, so ``import prices`` and ``import harness`` fail there. The bars up to "now" go in as
arrays and the positions come back as arrays (no pickle either way). The child cannot see this
process's stack, files or exit hooks; what it prints reaches stderr prefixed ``[candidate] ``,
except on the holdout call, where it is dropped. trading_metrics.json is written after every
child has exited and been killed with its process group.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.harness import (
    IsolatedCallError,
    cache_dir,
    call_isolated,
    env_float,
    env_int,
    print_summary,
)

# Worktrees (and their __pycache__) are deleted after every experiment: keep numba's compiled
# vectorbt kernels in one place per machine so the ~15-30 s compile happens once.
os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))

import numpy as np
import pandas as pd
from prices import FIELDS, DataError, load_for, load_prices  # noqa: F401 (tests use it)

METRICS_FILE = "trading_metrics.json"
FEES = env_float("TRADING_FEES", 0.0005)  # fraction of traded notional
SLIPPAGE = env_float("TRADING_SLIPPAGE", 0.0005)  # fraction of the fill price
PERIODS_PER_YEAR = env_float("TRADING_PERIODS_PER_YEAR", 252.0)
INSAMPLE_FRAC = env_float("TRADING_INSAMPLE_FRAC", 0.4)
HOLDOUT_FRAC = env_float("TRADING_HOLDOUT_FRAC", 0.2)
N_WINDOWS = env_int("TRADING_WINDOWS", 4)
# Figures in the summary block (the holdout's never are).
SHOWN_FIGURES = ("sharpe", "max_drawdown", "turnover", "trades", "cagr")
# Cut points of the look-ahead check, spread over the in-sample and validation periods.
LOOKAHEAD_CUTS = 6
LOOKAHEAD_ATOL = 1e-9
INIT_CASH = 1_000_000.0
# Below this return std a strategy is flat: its Sharpe is 0, not noise divided by ~0.
FLAT_STD = 1e-12
STRATEGY_FILE = Path(__file__).resolve().with_name("strategy.py")
# Child processes at once; each one mostly waits on importing pandas (~0.5 s).
CHILD_WORKERS = max(1, min(4, os.cpu_count() or 1))
# A positions() call taking longer than this is hung: it fails rather than wait for the kill.
CALL_TIMEOUT_S = 120.0

# The child's side of a call, written beside the copy of strategy.py: bars in as arrays,
# positions() called, what it returned packed as arrays. Only this file imports strategy.
_ADAPTER = r"""
import inspect

import numpy as np
import pandas as pd
import strategy


def _pack(out, close):
    if isinstance(out, pd.Series) and close.shape[1] == 1:
        out = out.to_frame(close.columns[0])
    if isinstance(out, np.ndarray) and out.shape == close.shape:
        out = pd.DataFrame(out, index=close.index, columns=close.columns)
    if not isinstance(out, pd.DataFrame):
        return {"type": type(out).__name__}
    if len(out.columns) and all(pd.api.types.is_bool_dtype(t) for t in out.dtypes):
        values = out.to_numpy(dtype=bool)
    else:
        try:
            values = out.to_numpy(dtype=float)
        except (TypeError, ValueError):
            return {"type": "non-numeric"}
    columns = [str(c) for c in out.columns]
    return {"values": values, "columns": columns, "same_index": out.index.equals(close.index)}


def positions(bars):
    index = pd.DatetimeIndex(bars["index"], name=bars["index_name"])
    if bars["tz"]:
        index = index.tz_localize("UTC").tz_convert(bars["tz"])
    columns = pd.Index(bars["columns"])
    ohlcv = {k: pd.DataFrame(v, index=index, columns=columns) for k, v in bars["fields"].items()}
    fn = getattr(strategy, "positions", None)
    if not callable(fn):
        return {"missing": True}
    close = ohlcv["close"]
    out = fn(close, ohlcv) if len(inspect.signature(fn).parameters) >= 2 else fn(close)
    parts = out if isinstance(out, tuple) else (out,)
    return {"tuple": isinstance(out, tuple), "parts": [_pack(p, close) for p in parts]}
"""


class StrategyError(Exception):
    """strategy.py returned something the harness cannot trade; the message says what to fix."""


@dataclass(frozen=True)
class Period:
    name: str
    start: int  # first bar (inclusive)
    end: int  # last bar (exclusive)


def split(n_bars: int) -> tuple[Period, list[Period], Period]:
    """In-sample, walk-forward validation windows and the locked holdout (the most recent)."""
    holdout_start = n_bars - round(n_bars * HOLDOUT_FRAC)
    insample_end = round(n_bars * INSAMPLE_FRAC)
    edges = np.linspace(insample_end, holdout_start, N_WINDOWS + 1).round().astype(int)
    windows = [
        Period(f"wf{i + 1}", int(a), int(b)) for i, (a, b) in enumerate(itertools.pairwise(edges))
    ]
    if insample_end < 2 or any(w.end - w.start < 2 for w in windows) or holdout_start >= n_bars:
        raise DataError(
            f"{n_bars} bars are too few for TRADING_INSAMPLE_FRAC={INSAMPLE_FRAC}, "
            f"TRADING_WINDOWS={N_WINDOWS} and TRADING_HOLDOUT_FRAC={HOLDOUT_FRAC}: use more data "
            "or fewer windows"
        )
    return Period("insample", 0, insample_end), windows, Period("holdout", holdout_start, n_bars)


def target_weights(
    fn: Callable[..., object], data: dict[str, pd.DataFrame], end: int
) -> pd.DataFrame:
    """``fn``'s target weights on bars [0, end), called in this process (tests, benchmarks).

    The harness itself never calls strategy.py this way: see ``child_weights``.
    """
    view = {k: v.iloc[:end].copy() for k, v in data.items()}  # copies: the strategy may mutate
    close = view["close"]
    params = inspect.signature(fn).parameters
    out = fn(close, view) if len(params) >= 2 else fn(close)
    return to_weights(out, close)


def to_weights(out: object, close: pd.DataFrame) -> pd.DataFrame:
    """Accept weights, a long/flat bool frame, or (entries, exits); cap gross exposure at 1."""
    n_assets = close.shape[1]
    if isinstance(out, tuple):
        if len(out) != 2:
            raise StrategyError("positions() returned a tuple: it must be (entries, exits)")
        entries, exits = (
            _frame(x, close, name) for x, name in zip(out, ("entries", "exits"), strict=True)
        )
        state = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
        state = state.mask(entries.astype(bool), 1.0).mask(exits.astype(bool), 0.0)
        return state.ffill().fillna(0.0) / n_assets
    frame = _frame(out, close, "positions")
    if all(pd.api.types.is_bool_dtype(t) for t in frame.dtypes):
        return frame.astype(float) / n_assets
    try:
        weights = frame.astype(float)
    except (TypeError, ValueError):
        raise StrategyError(
            "positions() must return numbers (target weights) or booleans"
        ) from None
    weights = weights.where(np.isfinite(weights))
    gross = weights.abs().sum(axis=1)
    # Weights sum to at most 100% of equity in absolute value: no leverage.
    return weights.div(gross.clip(lower=1.0), axis=0)


def _frame(out: object, close: pd.DataFrame, what: str) -> pd.DataFrame:
    if isinstance(out, pd.Series) and close.shape[1] == 1:
        out = out.to_frame(close.columns[0])
    if isinstance(out, np.ndarray) and out.shape == close.shape:
        out = pd.DataFrame(out, index=close.index, columns=close.columns)
    if not isinstance(out, pd.DataFrame):
        raise StrategyError(
            f"{what}: expected a DataFrame shaped like `close` {close.shape}, "
            f"got {type(out).__name__}"
        )
    if len(out.index) != len(close.index) or not out.index.equals(close.index):
        raise StrategyError(
            f"{what}: the index must be close.index ({len(close)} bars), got {len(out)} rows; "
            "do not drop the warm-up rows, fill them with 0"
        )
    if set(map(str, out.columns)) != set(map(str, close.columns)):
        raise StrategyError(f"{what}: the columns must be close.columns ({list(close.columns)})")
    frame = out.copy()
    frame.columns = frame.columns.map(str)
    return frame[list(map(str, close.columns))]


def backtest(
    data: dict[str, pd.DataFrame], weights: pd.DataFrame, period: Period
) -> dict[str, Any]:
    """Trade ``weights`` over ``period`` from cash, with fees and slippage, in vectorbt.

    A weight decided on bar t's close is filled at bar t+1's open; an order is sent only when
    the target changes, so holding a weight costs nothing.
    """
    import vectorbt as vbt

    rows = slice(period.start, period.end)
    target = weights.fillna(0.0).shift(1).iloc[rows]
    orders = target.where(target.ne(target.shift(1)))
    orders.iloc[0] = target.iloc[0].where(target.iloc[0].ne(0.0))
    pf = vbt.Portfolio.from_orders(
        close=data["close"].iloc[rows],
        price=data["open"].iloc[rows],
        size=orders,
        size_type="targetpercent",
        direction="both",
        group_by=True,
        cash_sharing=True,
        call_seq="auto",
        fees=FEES,
        slippage=SLIPPAGE,
        init_cash=INIT_CASH,
    )
    value = np.asarray(pf.value(), dtype=float).ravel()
    recs = pf.orders.values
    notional = float(np.sum(np.abs(recs["size"] * recs["price"])))
    rets = np.diff(np.concatenate([[INIT_CASH], value])) / np.concatenate([[INIT_CASH], value[:-1]])
    return {"returns": rets, "turns": notional / float(np.mean(value)), "trades": len(recs)}


def figures(returns: np.ndarray, turns: float, trades: int) -> dict[str, float]:
    """Annualized Sharpe, drawdown, turnover, CAGR and the moments the deflated Sharpe needs."""
    n = len(returns)
    std = float(np.std(returns, ddof=1)) if n > 1 else 0.0
    mean = float(np.mean(returns)) if n else 0.0
    sharpe = mean / std * math.sqrt(PERIODS_PER_YEAR) if std > FLAT_STD else 0.0
    equity = np.cumprod(1.0 + returns)
    drawdown = float(np.max(1.0 - equity / np.maximum.accumulate(equity))) if n else 0.0
    years = n / PERIODS_PER_YEAR
    cagr = float(equity[-1] ** (1.0 / years) - 1.0) if n and equity[-1] > 0 else -1.0
    centered = returns - mean
    m2 = float(np.mean(centered**2)) if n else 0.0
    skew = float(np.mean(centered**3)) / m2**1.5 if m2 > FLAT_STD**2 else 0.0
    kurt = float(np.mean(centered**4)) / m2**2 if m2 > FLAT_STD**2 else 3.0
    return {
        "sharpe": sharpe,
        "max_drawdown": drawdown,
        "turnover": turns / years if years else 0.0,
        "trades": float(trades),
        "cagr": cagr,
        "n_obs": float(n),
        "skew": skew,
        "kurtosis": kurt,  # Pearson (a normal distribution has 3)
    }


def child_weights(data: dict[str, pd.DataFrame], end: int, *, quiet: bool = False) -> pd.DataFrame:
    """strategy.py's target weights on bars [0, end), computed in a fresh isolated child.

    ``quiet`` drops everything the child writes and every detail of a failure (the holdout
    call); otherwise its output goes to stderr with every line prefixed, so it cannot pose as
    a summary line.
    """
    close = data["close"].iloc[:end]
    index = close.index
    utc = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
    bars = {
        "index": np.asarray(utc.as_unit("ns").asi8),
        "index_name": None if index.name is None else str(index.name),
        "tz": "" if index.tz is None else str(index.tz),
        "columns": [str(c) for c in close.columns],
        "fields": {k: data[k].iloc[:end].to_numpy() for k in FIELDS if k in data},
    }
    with tempfile.TemporaryDirectory(prefix="strategy-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        shutil.copyfile(STRATEGY_FILE, work / "strategy.py")
        (work / "strategy_call.py").write_text(_ADAPTER, encoding="utf-8")
        try:
            out = call_isolated(
                work / "strategy_call.py",
                "positions",
                (bars,),
                timeout_s=CALL_TIMEOUT_S,
                cwd=work,
                output="drop" if quiet else "stream",
            )
        except IsolatedCallError as e:
            where = f"positions() failed on bars up to {close.index[-1].date()}"
            raise StrategyError(where if quiet else f"{where}: {e}") from None
    return _unpack(out, close)


def _unpack(out: object, close: pd.DataFrame) -> pd.DataFrame:
    """What the child returned, checked like an in-process return value, as target weights."""
    if not isinstance(out, dict):
        raise StrategyError("the strategy process returned malformed positions")
    if out.get("missing") is True:
        raise StrategyError("strategy.py must define positions(close, ohlcv) -> DataFrame")
    parts = out.get("parts")
    if not isinstance(parts, list) or not 1 <= len(parts) <= 2:
        raise StrategyError("positions() returned a tuple: it must be (entries, exits)")
    frames = tuple(_unpack_frame(part, close) for part in parts)
    return to_weights(frames if out.get("tuple") is True else frames[0], close)


def _unpack_frame(part: object, close: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(part, dict):
        raise StrategyError("the strategy process returned malformed positions")
    kind = part.get("type")
    if kind == "non-numeric":
        raise StrategyError("positions() must return numbers (target weights) or booleans")
    if kind is not None:
        # A class name the strategy chose: shown only when it cannot hide a line break.
        shown = kind if isinstance(kind, str) and kind.isidentifier() else "something else"
        raise StrategyError(
            f"positions: expected a DataFrame shaped like `close` {close.shape}, got {shown}"
        )
    values, columns = part.get("values"), part.get("columns")
    if (
        not isinstance(values, np.ndarray)
        or values.dtype not in (np.float64, np.bool_)
        or values.ndim != 2
        or not isinstance(columns, list)
        or not all(isinstance(c, str) for c in columns)
        or values.shape[1] != len(columns)
    ):
        raise StrategyError("the strategy process returned malformed positions")
    if len(values) != len(close) or part.get("same_index") is not True:
        raise StrategyError(
            f"positions: the index must be close.index ({len(close)} bars), got {len(values)} "
            "rows; do not drop the warm-up rows, fill them with 0"
        )
    return pd.DataFrame(values, index=close.index, columns=columns)


def run_period(
    data: dict[str, pd.DataFrame], weights: pd.DataFrame, period: Period
) -> dict[str, Any]:
    res = backtest(data, weights, period)
    return {**res, "nan_positions": int(weights.iloc[period.start : period.end].isna().sum().sum())}


def lookahead_cuts(first_cut: int, end: int) -> list[int]:
    return [int(c) for c in np.linspace(first_cut, end - 1, LOOKAHEAD_CUTS).round()]


def lookahead_check(runs: Sequence[pd.DataFrame]) -> tuple[bool, str]:
    """Weights on bar t must not depend on bars after t.

    ``runs`` are the weights of separate calls on bars [0, end) for various ends: the scored
    calls themselves and extra truncated ones. Every run must agree with the longest one on the
    bars they share, so a strategy that behaves on some calls and peeks on others fails too.
    """
    ref = max(runs, key=len)
    full = ref.to_numpy(dtype=float)
    for part in sorted(runs, key=len):
        cut = len(part)
        a, b = part.to_numpy(dtype=float), full[:cut]
        same = np.isclose(a, b, atol=LOOKAHEAD_ATOL, rtol=0.0, equal_nan=True)
        if not same.all():
            row, col = np.argwhere(~same)[0]
            return False, (
                f"positions on {ref.index[row].date()} for {ref.columns[col]} changed from "
                f"{b[row, col]:.6g} to {a[row, col]:.6g} when the data after "
                f"{ref.index[cut - 1].date()} was removed: the strategy uses future bars "
                "(or is not deterministic)"
            )
    return True, ""


def holdout_figures(
    data: dict[str, pd.DataFrame], hold: Period, weights: Future[pd.DataFrame]
) -> dict[str, Any]:
    # Nothing about the holdout may reach stdout/stderr (the log tail goes to the proposer):
    # the child's output is dropped, and a failure is reported without its details.
    try:
        res = run_period(data, weights.result(), hold)
    except Exception:
        return {"error": "the strategy failed on the holdout period (details withheld)"}
    out: dict[str, Any] = figures(res["returns"], res["turns"], res["trades"])
    out["start"] = str(data["close"].index[hold.start].date())
    out["end"] = str(data["close"].index[hold.end - 1].date())
    return out


def evaluate(data: dict[str, pd.DataFrame], describe: str) -> int:
    index = data["close"].index
    insample, windows, hold = split(len(index))
    # Scored calls and look-ahead cuts alike: one child per call, the same kind of input.
    ends = [insample.end, *(w.end for w in windows)]
    cuts = lookahead_cuts(insample.end // 2, windows[-1].end)
    with ThreadPoolExecutor(CHILD_WORKERS) as pool:
        # The children mostly wait on their own imports: load vectorbt (~2 s) meanwhile.
        loading = threading.Thread(target=importlib.import_module, args=("vectorbt",))
        loading.start()
        weights = list(pool.map(lambda end: child_weights(data, end), [*ends, *cuts]))
        loading.join()
        # After every other call, so no call's output can depend on the holdout; it runs
        # while this process backtests the rest.
        hold_weights = pool.submit(child_weights, data, hold.end, quiet=True)
        ins = run_period(data, weights[0], insample)
        ins_fig = figures(ins["returns"], ins["turns"], ins["trades"])
        runs = [
            run_period(data, w, p) for w, p in zip(weights[1 : len(ends)], windows, strict=True)
        ]
        pooled = np.concatenate([r["returns"] for r in runs])
        val = figures(pooled, sum(r["turns"] for r in runs), sum(r["trades"] for r in runs))
        window_sharpes = [figures(r["returns"], r["turns"], r["trades"])["sharpe"] for r in runs]
        val["sharpe_min_window"] = min(window_sharpes)
        lookahead_ok, detail = lookahead_check(weights)
        nan_positions = ins["nan_positions"] + sum(r["nan_positions"] for r in runs)
        holdout = holdout_figures(data, hold, hold_weights)
    report: dict[str, Any] = {
        "version": 1,
        "data": describe,
        "costs": {"fees": FEES, "slippage": SLIPPAGE},
        "insample": {
            **ins_fig,
            "start": str(index[0].date()),
            "end": str(index[insample.end - 1].date()),
        },
        "validation": {
            **val,
            "windows": [
                {
                    "start": str(index[w.start].date()),
                    "end": str(index[w.end - 1].date()),
                    "sharpe": s,
                }
                for w, s in zip(windows, window_sharpes, strict=True)
            ],
        },
        "gates": {
            "lookahead_ok": lookahead_ok,
            "lookahead_detail": detail,
            "nan_positions": nan_positions,
            "trades": val["trades"],
        },
        "holdout": holdout,
    }
    Path(METRICS_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"data: {describe}")
    print(f"costs: fees {FEES:g}, slippage {SLIPPAGE:g} of notional")
    print(
        f"in-sample {report['insample']['start']}..{report['insample']['end']}, validation "
        f"{len(windows)} walk-forward windows, then a locked holdout (not shown)"
    )
    for w, s in zip(report["validation"]["windows"], window_sharpes, strict=True):
        print(f"  window {w['start']}..{w['end']}: sharpe {s:.4f}")
    if not lookahead_ok:
        print(f"look-ahead: {detail}")
    if nan_positions:
        print(f"positions: {nan_positions} NaN/inf values (fill warm-up rows with 0)")
    shown = {f"val_{k}": val[k] for k in (*SHOWN_FIGURES, "sharpe_min_window")}
    shown |= {f"insample_{k}": ins_fig[k] for k in SHOWN_FIGURES[:4]}
    print_summary({**shown, "lookahead_ok": int(lookahead_ok), "nan_positions": nan_positions})
    return 0


def insample_only(data: dict[str, pd.DataFrame], describe: str, n_bars: int | None = None) -> int:
    """``n_bars``: the whole history's length, where ``data`` holds the in-sample bars only."""
    insample, _, _ = split(n_bars or len(data["close"]))
    if len(data["close"]) < insample.end:
        raise DataError(f"{len(data['close'])} bars given, the in-sample period has {insample.end}")
    # Only the in-sample bars exist for the strategy here.
    res = run_period(data, child_weights(data, insample.end), insample)
    fig = figures(res["returns"], res["turns"], res["trades"])
    print(f"data: {describe}; in-sample bars: {insample.end}")
    shown = {f"insample_{k}": fig[k] for k in SHOWN_FIGURES}
    print_summary({**shown, "nan_positions": res["nan_positions"]})
    return 0


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else ""
    if mode not in ("insample", "evaluate"):
        print("usage: python harness.py insample|evaluate", file=sys.stderr)
        return 2
    try:
        # The in-sample mode (the candidate's command) gets the in-sample bars only.
        data, describe, n_bars = load_for(mode)
        if mode == "evaluate":
            return evaluate(data, describe)
        return insample_only(data, describe, n_bars)
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    except StrategyError as e:
        print(f"strategy.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
