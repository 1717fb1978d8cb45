"""Benchmark: the trading domain's vectorbt backtest on 20 years x 50 assets of daily bars.

    python benchmarks/trading_backtest.py [--years 20] [--assets 50] [--repeats 5]

Runs the domain's own harness.backtest (fees, slippage, next-open fills, cash sharing) after
numba's warm-up, and prints its time as ratios against the 1 s target and against a plain-numpy
reference measured in the same process (weights x returns minus costs, no order simulation).
The warm-up line shows whether numba's on-disk cache was hit (well under a second) or the
kernels were compiled (tens of seconds, once per machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DOMAIN = Path(__file__).resolve().parents[1] / "domains" / "trading_sharpe"
TARGET_S = 1.0
TRADING_DAYS = 252


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def numpy_reference(
    close: np.ndarray, open_: np.ndarray, weights: np.ndarray, cost: float
) -> np.ndarray:
    """Daily returns of holding ``weights`` (decided at t's close, filled at t+1's open),
    paying ``cost`` per unit of traded weight: the same economics without order simulation."""
    held = np.vstack([np.zeros((1, weights.shape[1])), weights[:-1]])
    before = np.vstack([np.zeros((1, weights.shape[1])), held[:-1]])
    prev_close = np.vstack([open_[:1], close[:-1]])
    # A weight changed at t's open earns open->close on the new weight, prev_close->open on the old.
    gap = open_ / prev_close - 1.0
    intraday = close / open_ - 1.0
    rets = (before * gap).sum(axis=1) + (held * intraday).sum(axis=1)
    return rets - cost * np.abs(held - before).sum(axis=1)


def sharpe(rets: np.ndarray) -> float:
    std = float(np.std(rets, ddof=1))
    return float(np.mean(rets)) / std * np.sqrt(TRADING_DAYS) if std > 0 else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--years", type=int, default=20)
    ap.add_argument("--assets", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(DOMAIN))
    import harness  # sets NUMBA_CACHE_DIR (a persistent per-machine cache) before numba loads
    import prices
    import strategy

    n_bars = args.years * TRADING_DAYS
    data = prices.synthetic_universe(args.assets, n_bars, seed=0)
    period = harness.Period("all", 0, n_bars)
    print(f"data: {args.assets} assets x {n_bars} daily bars ({args.years} years), synthetic")
    print(f"numba cache: {os.environ['NUMBA_CACHE_DIR']}")

    t0 = time.perf_counter()
    import vectorbt  # noqa: F401

    import_s = time.perf_counter() - t0
    strat_s, weights = _timed(
        lambda: harness.to_weights(strategy.positions(data["close"], data), data["close"]), 1
    )
    t0 = time.perf_counter()
    harness.backtest(data, weights, period)
    warm_s = time.perf_counter() - t0
    bt_s, res = _timed(lambda: harness.backtest(data, weights, period), args.repeats)

    close, open_ = data["close"].to_numpy(), data["open"].to_numpy()
    w = weights.fillna(0.0).to_numpy()
    cost = harness.FEES + harness.SLIPPAGE
    ref_s, ref = _timed(lambda: numpy_reference(close, open_, w, cost), args.repeats)

    print(f"import vectorbt: {import_s:.2f} s")
    print(f"strategy positions(): {strat_s:.3f} s")
    print(f"first backtest (numba warm-up: cache load or compile): {warm_s:.2f} s")
    print("---")
    print(f"backtest_s: {bt_s:.4f}   (median of {args.repeats}, after warm-up)")
    print(f"numpy_reference_s: {ref_s:.4f}")
    verdict = "met" if bt_s < TARGET_S else "MISSED"
    print(f"backtest_vs_target: {bt_s / TARGET_S:.3f}   (target < 1.0: {verdict})")
    print(f"backtest_vs_numpy: {bt_s / ref_s:.1f}x")
    print(f"warmup_vs_backtest: {warm_s / bt_s:.1f}x")
    print(f"orders: {res['trades']}")
    print(f"sharpe_vectorbt: {sharpe(res['returns']):.4f}")
    print(f"sharpe_numpy_reference: {sharpe(ref):.4f}   (same economics, should be close)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
