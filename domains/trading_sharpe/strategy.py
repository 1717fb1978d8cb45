"""The strategy: close prices in, target portfolio weights out. The only file a candidate edits.

positions(close, ohlcv) gets every bar up to "now" (date index x asset columns) and returns
a DataFrame of the same shape: the weight of each asset held after each bar's close, as a
fraction of equity (negative = short). The harness fills it at the next bar's open, charges
fees and slippage, and scales any row whose absolute weights sum above 1 down to 1.
Also accepted: a bool frame (long/flat, equal weight) or an (entries, exits) pair of bool frames.

Rules the harness enforces: a weight on bar t may use only bars up to t (it re-runs the
strategy on truncated data and fails a strategy whose past positions change), no NaN weights
(fill warm-up rows with 0), enough trades to mean something. Each call runs in a fresh process
of its own, where the harness and prices modules cannot be imported.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FAST_WINDOW = 20  # bars of the fast moving average (the trend signal's reaction speed)
SLOW_WINDOW = 100  # bars of the slow moving average (the trend it compares against)
VOL_WINDOW = 40  # bars of realized volatility used to size each asset (inverse-vol weights)
SHORT_WEIGHT = 0.0  # 0 = long/flat; 1 = shorts as large as longs in a downtrend
REBALANCE_EVERY = 5  # bars between weight updates; fewer updates mean less turnover and cost
GROSS_EXPOSURE = 1.0  # fraction of equity at work when every asset has a signal


def positions(close: pd.DataFrame, ohlcv: dict[str, pd.DataFrame]) -> pd.DataFrame:
    fast = close.rolling(FAST_WINDOW).mean()
    slow = close.rolling(SLOW_WINDOW).mean()
    trend = np.sign(fast - slow)
    signal = trend.where(trend > 0, trend * SHORT_WEIGHT)
    vol = close.pct_change().rolling(VOL_WINDOW).std()
    inv_vol = 1.0 / vol.replace(0.0, np.nan)
    raw = signal * inv_vol
    # Normalize by the inverse vol of the whole universe, so weights sum to GROSS_EXPOSURE
    # when every asset carries a signal, and less when only some do.
    weights = raw.div(inv_vol.sum(axis=1), axis=0) * GROSS_EXPOSURE
    weights = weights.fillna(0.0)
    # Hold the weights between rebalance bars (counted from the first bar: causal).
    keep = np.arange(len(weights)) % REBALANCE_EVERY == 0
    return weights.where(pd.Series(keep, index=weights.index), axis=0).ffill().fillna(0.0)
