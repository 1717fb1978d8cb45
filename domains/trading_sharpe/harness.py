"""Fixed harness of the trading domain: splits, the vectorbt backtest with costs, metrics, gates.

  python harness.py insample   the strategy on the in-sample period only; prints its figures
  python harness.py evaluate   in-sample, walk-forward validation, look-ahead gate and the locked
                               holdout; writes every figure to trading_metrics.json and prints
                               all but the holdout's (stdout reaches the proposer on failures)

Candidates cannot edit this file. Settings come from the environment (autoresearch.toml [env]).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _numba_cache_dir() -> str:
    # Worktrees (and their __pycache__) are deleted after every experiment: keep numba's
    # compiled vectorbt kernels in one place per machine so the ~15-30 s compile happens once.
    root = os.environ.get("AUTORESEARCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "autoresearch"
    )
    return os.path.join(root, "numba")


os.environ.setdefault("NUMBA_CACHE_DIR", _numba_cache_dir())

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from prices import DataError, load_prices  # noqa: E402

METRICS_FILE = "trading_metrics.json"
FEES = float(os.environ.get("TRADING_FEES", "0.0005"))  # fraction of traded notional
SLIPPAGE = float(os.environ.get("TRADING_SLIPPAGE", "0.0005"))  # fraction of the fill price
PERIODS_PER_YEAR = float(os.environ.get("TRADING_PERIODS_PER_YEAR", "252"))
INSAMPLE_FRAC = float(os.environ.get("TRADING_INSAMPLE_FRAC", "0.4"))
HOLDOUT_FRAC = float(os.environ.get("TRADING_HOLDOUT_FRAC", "0.2"))
N_WINDOWS = int(os.environ.get("TRADING_WINDOWS", "4"))
# Cut points of the look-ahead check, spread over the in-sample and validation periods.
LOOKAHEAD_CUTS = 6
LOOKAHEAD_ATOL = 1e-9
INIT_CASH = 1_000_000.0
# Below this return std a strategy is flat: its Sharpe is 0, not noise divided by ~0.
FLAT_STD = 1e-12


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


def load_strategy() -> Callable[..., object]:
    module = importlib.import_module("strategy")
    fn = getattr(module, "positions", None)
    if not callable(fn):
        raise StrategyError("strategy.py must define positions(close, ohlcv) -> DataFrame")
    return fn


def target_weights(
    fn: Callable[..., object], data: dict[str, pd.DataFrame], end: int
) -> pd.DataFrame:
    """The strategy's target weights on bars [0, end), as floats (NaN where it gave none)."""
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


def run_period(
    fn: Callable[..., object], data: dict[str, pd.DataFrame], period: Period
) -> dict[str, Any]:
    weights = target_weights(fn, data, period.end)
    res = backtest(data, weights, period)
    return {**res, "nan_positions": int(weights.iloc[period.start : period.end].isna().sum().sum())}


def lookahead_check(
    fn: Callable[..., object], data: dict[str, pd.DataFrame], end: int, first_cut: int
) -> tuple[bool, str]:
    """pd.DataFrame up to t must not change when the bars after t are removed."""
    full = target_weights(fn, data, end)
    for cut in np.linspace(first_cut, end - 1, LOOKAHEAD_CUTS).round().astype(int):
        part = target_weights(fn, data, int(cut))
        ref = full.iloc[: int(cut)]
        a, b = part.to_numpy(dtype=float), ref.to_numpy(dtype=float)
        same = np.isclose(a, b, atol=LOOKAHEAD_ATOL, rtol=0.0, equal_nan=True)
        if not same.all():
            row, col = np.argwhere(~same)[0]
            return False, (
                f"positions on {ref.index[row].date()} for {ref.columns[col]} changed from "
                f"{b[row, col]:.6g} to {a[row, col]:.6g} when the data after "
                f"{ref.index[-1].date()} was removed: the strategy uses future bars "
                "(or is not deterministic)"
            )
    return True, ""


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Discard everything written to stdout/stderr, at the file-descriptor level too."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def holdout_figures(
    fn: Callable[..., object], data: dict[str, pd.DataFrame], hold: Period
) -> dict[str, Any]:
    # Nothing about the holdout may reach stdout/stderr (the log tail goes to the proposer):
    # the strategy runs silenced there, and a failure is reported without its details.
    try:
        with _silenced():
            res = run_period(fn, data, hold)
    except Exception:
        return {"error": "the strategy failed on the holdout period (details withheld)"}
    out: dict[str, Any] = figures(res["returns"], res["turns"], res["trades"])
    out["start"] = str(data["close"].index[hold.start].date())
    out["end"] = str(data["close"].index[hold.end - 1].date())
    return out


def evaluate(data: dict[str, pd.DataFrame], describe: str) -> int:
    fn = load_strategy()
    index = data["close"].index
    insample, windows, hold = split(len(index))
    ins = run_period(fn, data, insample)
    ins_fig = figures(ins["returns"], ins["turns"], ins["trades"])
    runs = [run_period(fn, data, w) for w in windows]
    pooled = np.concatenate([r["returns"] for r in runs])
    val = figures(pooled, sum(r["turns"] for r in runs), sum(r["trades"] for r in runs))
    window_sharpes = [figures(r["returns"], r["turns"], r["trades"])["sharpe"] for r in runs]
    val["sharpe_min_window"] = min(window_sharpes)
    lookahead_ok, detail = lookahead_check(fn, data, windows[-1].end, insample.end // 2)
    nan_positions = ins["nan_positions"] + sum(r["nan_positions"] for r in runs)
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
        "holdout": holdout_figures(fn, data, hold),
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
    print("---")
    for key in ("sharpe", "max_drawdown", "turnover", "trades", "cagr", "sharpe_min_window"):
        print(f"val_{key}: {val[key]:.6f}")
    for key in ("sharpe", "max_drawdown", "turnover", "trades"):
        print(f"insample_{key}: {ins_fig[key]:.6f}")
    print(f"lookahead_ok: {int(lookahead_ok)}")
    print(f"nan_positions: {nan_positions}")
    return 0


def insample_only(data: dict[str, pd.DataFrame], describe: str) -> int:
    fn = load_strategy()
    insample, _, _ = split(len(data["close"]))
    # Only the in-sample bars exist for the strategy here.
    res = run_period(fn, data, insample)
    fig = figures(res["returns"], res["turns"], res["trades"])
    print(f"data: {describe}; in-sample bars: {insample.end}")
    print("---")
    for key in ("sharpe", "max_drawdown", "turnover", "trades", "cagr"):
        print(f"insample_{key}: {fig[key]:.6f}")
    print(f"nan_positions: {res['nan_positions']}")
    return 0


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else ""
    if mode not in ("insample", "evaluate"):
        print("usage: python harness.py insample|evaluate", file=sys.stderr)
        return 2
    try:
        data, describe = load_prices()
        return evaluate(data, describe) if mode == "evaluate" else insample_only(data, describe)
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    except StrategyError as e:
        print(f"strategy.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
