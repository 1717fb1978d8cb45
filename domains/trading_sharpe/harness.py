"""Fixed harness of the trading domain: splits, the vectorbt backtest with costs, metrics, gates.

  python harness.py insample   the strategy on the in-sample period only; prints its figures
  python harness.py evaluate   in-sample, walk-forward validation, look-ahead gate and the locked
                               holdout; writes every figure to trading_metrics.json and prints
                               all but the holdout's (stdout reaches the proposer on failures)

Candidates cannot edit this file. Settings come from the environment (autoresearch.toml [env]).

This process never imports strategy.py. Each call of positions() runs in its own child
process (``_CHILD`` below), started in a fresh temporary folder that holds only a copy of
strategy.py, with ``python -I`` and no TRADING_* variables, so ``import prices`` and
``import harness`` fail there. The child gets the bars up to "now" in an .npz file and
returns its positions in another (no pickle either way). It cannot see this process's
stack, files or exit hooks; its output is dropped for the holdout call and passed through,
bounded and prefixed, for the others. trading_metrics.json is written after every child
has exited and been killed with its process group.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from prices import FIELDS, DataError, load_prices  # noqa: E402

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
STRATEGY_FILE = Path(__file__).resolve().with_name("strategy.py")
# Characters of a child's stdout/stderr passed on per call (its tail): enough for a traceback.
CHILD_OUTPUT_CHARS = 3000
# Child processes at once; each one mostly waits on importing pandas (~0.5 s).
CHILD_WORKERS = max(1, min(4, os.cpu_count() or 1))
# Variables the child does not get: the data's location and settings, this run's paths.
_CHILD_ENV_DROP = ("TRADING_", "AUTORESEARCH_", "PWD", "OLDPWD", "PYTHON")

# The whole child: read bars, call positions(), write what it returned. Run with `python -I -c`
# in a folder holding only strategy.py, so nothing of the harness or the data is importable.
_CHILD = r"""
import inspect, os, sys
import numpy as np
import pandas as pd

def pack(out, close):
    if isinstance(out, pd.Series) and close.shape[1] == 1:
        out = out.to_frame(close.columns[0])
    if isinstance(out, np.ndarray) and out.shape == close.shape:
        out = pd.DataFrame(out, index=close.index, columns=close.columns)
    if not isinstance(out, pd.DataFrame):
        return {"type": np.array(type(out).__name__)}
    if len(out.columns) and all(pd.api.types.is_bool_dtype(t) for t in out.dtypes):
        values = out.to_numpy(dtype=bool)
    else:
        try:
            values = out.to_numpy(dtype=float)
        except (TypeError, ValueError):
            return {"type": np.array("non-numeric")}
    return {
        "values": values,
        "columns": np.array([str(c) for c in out.columns], dtype=str),
        "rows": np.array(len(out.index)),
        "same_index": np.array(bool(out.index.equals(close.index))),
    }

sys.path.insert(0, os.getcwd())
with np.load(sys.argv[1], allow_pickle=False) as z:
    index = pd.DatetimeIndex(z["index"], name=str(z["index_name"]) or None)
    if str(z["tz"]):
        index = index.tz_localize("UTC").tz_convert(str(z["tz"]))
    columns = pd.Index([str(c) for c in z["columns"]])
    ohlcv = {str(k): pd.DataFrame(z[k], index=index, columns=columns) for k in z["fields"]}
os.remove(sys.argv[1])
import strategy
fn = getattr(strategy, "positions", None)
if not callable(fn):
    np.savez(sys.argv[2], type=np.array("missing"))
    sys.exit(0)
close = ohlcv["close"]
out = fn(close, ohlcv) if len(inspect.signature(fn).parameters) >= 2 else fn(close)
parts = out if isinstance(out, tuple) else (out,)
arrays = {"n_parts": np.array(len(parts)), "tuple": np.array(isinstance(out, tuple))}
for i, part in enumerate(parts):
    arrays.update({f"{k}{i}": v for k, v in pack(part, close).items()})
np.savez(sys.argv[2], **arrays)
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
    """strategy.py's target weights on bars [0, end), computed in a fresh child process.

    ``quiet`` drops everything the child writes (the holdout call); otherwise its output's tail
    is returned to stdout with every line prefixed, so it cannot pose as a summary line.
    """
    close = data["close"].iloc[:end]
    work = Path(tempfile.mkdtemp(prefix="strategy-"))
    try:
        shutil.copyfile(STRATEGY_FILE, work / "strategy.py")
        index = close.index
        utc = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
        np.savez(
            work / "bars.npz",
            index=np.asarray(utc.as_unit("ns").asi8),
            index_name=np.array("" if index.name is None else str(index.name)),
            tz=np.array("" if index.tz is None else str(index.tz)),
            columns=np.array([str(c) for c in close.columns], dtype=str),
            fields=np.array([k for k in FIELDS if k in data], dtype=str),
            **{k: data[k].iloc[:end].to_numpy() for k in FIELDS if k in data},
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CHILD_ENV_DROP)}
        with open(work / "output.txt", "w+b") as log:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _CHILD, "bars.npz", "out.npz"],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            code = proc.wait()
            # Anything it left running (a forked helper) dies with its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            log.seek(max(0, log.seek(0, os.SEEK_END) - CHILD_OUTPUT_CHARS))
            tail = log.read().decode("utf-8", "replace")
        if not quiet and tail.strip():
            print("".join(f"strategy| {line}\n" for line in tail.splitlines()), end="")
        if code != 0:
            raise StrategyError(
                f"positions() failed on bars up to {close.index[-1].date()} (exit code {code})"
                + ("" if quiet else "; its output is above, prefixed with 'strategy|'")
            )
        return _unpack(work / "out.npz", close)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unpack(path: Path, close: pd.DataFrame) -> pd.DataFrame:
    """What the child wrote, checked like an in-process return value, as target weights."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise StrategyError(f"the strategy process returned no readable positions ({e})") from None
    kind = str(arrays.get("type0", arrays.get("type", "")))
    if kind == "missing":
        raise StrategyError("strategy.py must define positions(close, ohlcv) -> DataFrame")
    n_parts = int(arrays.get("n_parts", 0))
    if n_parts < 1 or n_parts > 2:
        raise StrategyError("positions() returned a tuple: it must be (entries, exits)")
    frames = []
    for i in range(n_parts):
        kind = str(arrays.get(f"type{i}", ""))
        if kind == "non-numeric":
            raise StrategyError("positions() must return numbers (target weights) or booleans")
        if kind:
            raise StrategyError(
                f"positions: expected a DataFrame shaped like `close` {close.shape}, got {kind}"
            )
        values = arrays.get(f"values{i}")
        columns = [str(c) for c in arrays.get(f"columns{i}", [])]
        rows = int(arrays.get(f"rows{i}", -1))
        if (
            not isinstance(values, np.ndarray)
            or values.dtype not in (np.float64, np.bool_)
            or values.shape != (rows, len(columns))
        ):
            raise StrategyError("the strategy process returned malformed positions")
        if rows != len(close) or not bool(arrays.get(f"same_index{i}", False)):
            raise StrategyError(
                f"positions: the index must be close.index ({len(close)} bars), got {rows} "
                "rows; do not drop the warm-up rows, fill them with 0"
            )
        frames.append(pd.DataFrame(values, index=close.index, columns=columns))
    return to_weights(tuple(frames) if bool(arrays.get("tuple", False)) else frames[0], close)


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
    print("---")
    for key in ("sharpe", "max_drawdown", "turnover", "trades", "cagr", "sharpe_min_window"):
        print(f"val_{key}: {val[key]:.6f}")
    for key in ("sharpe", "max_drawdown", "turnover", "trades"):
        print(f"insample_{key}: {ins_fig[key]:.6f}")
    print(f"lookahead_ok: {int(lookahead_ok)}")
    print(f"nan_positions: {nan_positions}")
    return 0


def insample_only(data: dict[str, pd.DataFrame], describe: str) -> int:
    insample, _, _ = split(len(data["close"]))
    # Only the in-sample bars exist for the strategy here.
    res = run_period(data, child_weights(data, insample.end), insample)
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
