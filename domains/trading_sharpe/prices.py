"""Price data for the trading domain (fixed harness: candidates cannot edit this file).

Three sources, chosen by TRADING_DATA:
  synthetic      a seeded regime-switching multi-asset universe (the offline default)
  goog           the real GOOG daily bars that matplotlib ships (2004-08 .. 2008-10)
  PATH           your own OHLCV file (.csv or .parquet), validated with errors that say what to fix

Every source returns a dict of wide DataFrames (date index x asset columns):
open, high, low, close, volume.

Under the engine, prepare.py (its prepare_command) reads the source once and saves the bars
(``save_bars``): the in-sample bars alone into $AUTORESEARCH_DATA_DIR, the only data the
candidate's command can read, and the whole history into $AUTORESEARCH_EVAL_DATA_DIR, which
only the evaluator sees. ``load_for`` reads the folder of the mode that runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoresearch.harness import env_float, env_int, env_str

FIELDS = ("open", "high", "low", "close", "volume")
# The folders the engine's prepare step fills, and the files it writes in each.
DATA_VAR = "AUTORESEARCH_DATA_DIR"
EVAL_DATA_VAR = "AUTORESEARCH_EVAL_DATA_DIR"
BARS_FILE = "bars.npz"
BARS_META_FILE = "bars.json"
# Column names accepted for the date and the asset of a long-format file.
DATE_COLUMNS = ("date", "datetime", "timestamp", "time")
ASSET_COLUMNS = ("symbol", "ticker", "asset")
# Fewer bars than this cannot hold an in-sample period, walk-forward windows and a holdout.
MIN_BARS = 250

# Synthetic universe: regimes are (daily drift, daily vol, AR(1) coefficient of returns).
# Trending regimes carry positive return autocorrelation, so trend rules have a real edge
# there and lose in the choppy, mean-reverting regime; no single knob setting wins everywhere.
REGIMES = (
    (0.0008, 0.010, 0.10),  # calm uptrend
    (-0.0008, 0.016, 0.10),  # volatile downtrend
    (0.0000, 0.012, -0.20),  # choppy, mean-reverting
)
# Daily probability of staying in the current regime (mean regime length ~ 1 / (1 - p) days).
REGIME_STAY_P = 0.99
# Share of each asset's shock that comes from one common market factor.
MARKET_BETA = 0.3


# Bars a year may differ from TRADING_PERIODS_PER_YEAR by this factor (holidays, gaps)
# before the data is refused.
SPACING_TOLERANCE = 1.5
DAYS_PER_YEAR = 365.25


class DataError(Exception):
    """Input data that cannot be used; the message names the file, the column and the fix."""


def load_prices() -> tuple[dict[str, pd.DataFrame], str]:
    """The configured data and a one-line description of it."""
    source = env_str("TRADING_DATA", "synthetic")
    if source == "synthetic":
        seed = env_int("TRADING_DATA_SEED", 7)
        assets = env_int("TRADING_ASSETS", 12)
        years = env_float("TRADING_YEARS", 12.0)
        bars = int(years * 252)
        # The seed stays out of the description: the engine draws a secret one (a candidate
        # that knew it could regenerate the future bars).
        return synthetic_universe(assets, bars, seed), (
            f"synthetic regime-switching universe: {assets} assets x {bars} bars"
        )
    if source == "goog":
        return goog(), "GOOG daily bars 2004-08-19..2008-10-14 (shipped with matplotlib)"
    path = Path(source).expanduser()
    return load_file(path), f"{path.name}"


def load_for(mode: str) -> tuple[dict[str, pd.DataFrame], str, int]:
    """The bars ``mode`` may see, their description, and how many bars the whole history has.

    Under the engine, ``evaluate`` reads the full history from its own folder and ``insample``
    the in-sample bars from the shared one (the command's sandbox holds nothing else); run by
    hand, without those variables, both read the source itself.
    """
    folder = os.environ.get(EVAL_DATA_VAR if mode == "evaluate" else DATA_VAR)
    if folder:
        return load_bars(Path(folder))
    if os.environ.get(DATA_VAR):
        raise DataError(
            f"{DATA_VAR} is set but {EVAL_DATA_VAR} is not: the evaluator reads the full "
            "history only from its own folder"
        )
    data, describe = load_prices()
    return data, describe, len(data["close"])


def save_bars(
    folder: Path, data: dict[str, pd.DataFrame], describe: str, n_bars_total: int
) -> None:
    """Bars as plain arrays (loaded without pickle) and a JSON description."""
    folder.mkdir(parents=True, exist_ok=True)
    close = data["close"]
    index = close.index
    utc = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
    arrays = {k: data[k].to_numpy(dtype=float) for k in FIELDS}
    columns = np.array([str(c) for c in close.columns])
    stamps = np.asarray(utc.as_unit("ns").asi8)
    np.savez(folder / BARS_FILE, index=stamps, columns=columns, **arrays)
    meta = {
        "describe": describe,
        "n_bars_total": n_bars_total,
        "tz": "" if index.tz is None else str(index.tz),
        "index_name": index.name,
        "columns_name": close.columns.name,
    }
    (folder / BARS_META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_bars(folder: Path) -> tuple[dict[str, pd.DataFrame], str, int]:
    """What ``save_bars`` wrote: the frames, the description, the whole history's length."""
    try:
        meta = json.loads((folder / BARS_META_FILE).read_text(encoding="utf-8"))
        with np.load(folder / BARS_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("index", "columns", *FIELDS)}
    except (OSError, ValueError, KeyError) as e:
        raise DataError(
            f"{folder}: the prepared bars cannot be read ({type(e).__name__}: {e}); the "
            "engine's prepare step (python prepare.py) writes them"
        ) from None
    index = pd.DatetimeIndex(arrays["index"].astype("datetime64[ns]"), name=meta["index_name"])
    if meta["tz"]:
        index = index.tz_localize("UTC").tz_convert(meta["tz"])
    columns = pd.Index([str(c) for c in arrays["columns"]], name=meta["columns_name"])
    data = {k: pd.DataFrame(arrays[k], index=index, columns=columns) for k in FIELDS}
    return data, str(meta["describe"]), int(meta["n_bars_total"])


def synthetic_universe(n_assets: int, n_bars: int, seed: int) -> dict[str, pd.DataFrame]:
    """OHLCV for ``n_assets`` correlated assets, each switching between REGIMES."""
    rng = np.random.default_rng(seed)
    drift = np.array([r[0] for r in REGIMES])
    vol = np.array([r[1] for r in REGIMES])
    ar = np.array([r[2] for r in REGIMES])
    n_regimes = len(REGIMES)
    regime = np.empty((n_bars, n_assets), dtype=np.int64)
    regime[0] = rng.integers(0, n_regimes, n_assets)
    switch = rng.random((n_bars, n_assets)) > REGIME_STAY_P
    jumps = rng.integers(1, n_regimes, (n_bars, n_assets))
    for t in range(1, n_bars):
        regime[t] = np.where(switch[t], (regime[t - 1] + jumps[t]) % n_regimes, regime[t - 1])
    market = rng.standard_normal(n_bars)
    idio = rng.standard_normal((n_bars, n_assets))
    shock = MARKET_BETA * market[:, None] + np.sqrt(1 - MARKET_BETA**2) * idio
    rets = np.empty((n_bars, n_assets))
    prev = np.zeros(n_assets)
    for t in range(n_bars):
        k = regime[t]
        prev = drift[k] + ar[k] * (prev - drift[k]) + vol[k] * shock[t]
        rets[t] = prev
    close = 100.0 * np.exp(np.cumsum(rets, axis=0))
    # Opens gap from the previous close; highs and lows bracket open and close.
    gap = 0.3 * vol[regime] * rng.standard_normal((n_bars, n_assets))
    prev_close = np.vstack([close[:1], close[:-1]])
    open_ = prev_close * np.exp(gap)
    span = np.abs(rng.standard_normal((n_bars, n_assets))) * vol[regime] * 0.5
    high = np.maximum(open_, close) * np.exp(span)
    low = np.minimum(open_, close) * np.exp(-span)
    volume = rng.lognormal(13.0, 0.4, (n_bars, n_assets)).round()
    index = pd.bdate_range("2000-01-03", periods=n_bars, name="date")
    columns = pd.Index([f"SYN{i:02d}" for i in range(n_assets)], name="asset")
    arrays = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    return {k: pd.DataFrame(v, index=index, columns=columns) for k, v in arrays.items()}


def goog() -> dict[str, pd.DataFrame]:
    """matplotlib's real GOOG daily bars (1047 rows), adjusted close as close."""
    try:
        from matplotlib import cbook
    except ImportError:
        raise DataError(
            "TRADING_DATA=goog needs matplotlib (it ships the GOOG sample data): "
            "pip install 'autoresearch[trading]'"
        ) from None
    sample: Any = cbook.get_sample_data("goog.npz")
    rows = sample["price_data"]
    index = pd.DatetimeIndex(rows["date"], name="date")
    # Scale open/high/low by the same adjustment as close, so splits do not look like gaps.
    adj = rows["adj_close"] / rows["close"]
    cols = pd.Index(["GOOG"], name="asset")
    data = {
        "open": rows["open"] * adj,
        "high": rows["high"] * adj,
        "low": rows["low"] * adj,
        "close": rows["adj_close"],
        "volume": rows["volume"].astype(float),
    }
    return {k: pd.DataFrame({"GOOG": v}, index=index, columns=cols) for k, v in data.items()}


def load_file(path: Path) -> dict[str, pd.DataFrame]:
    """Read and validate a user's OHLCV file (long format with an asset column, or one asset)."""
    where = f"TRADING_DATA={path}"
    if not path.is_file():
        raise DataError(
            f"{where}: no such file. Use an absolute path (runs happen in a fresh git worktree, "
            "so a relative path only works for a file committed inside the domain folder)."
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            raw = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    date_col = next((c for c in DATE_COLUMNS if c in raw.columns), None)
    if date_col is None:
        raise DataError(
            f"{path}: no date column. Name one of the columns {', '.join(DATE_COLUMNS)} "
            f"(columns found: {', '.join(raw.columns)})."
        )
    if "close" not in raw.columns:
        raise DataError(
            f"{path}: no 'close' column (columns found: {', '.join(raw.columns)}). "
            "Rename your closing price column to 'close'."
        )
    dates = pd.to_datetime(raw[date_col], errors="coerce", utc=False)
    bad = dates.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}: column {date_col!r} row {row + 2} holds {raw[date_col].iloc[row]!r}, "
            "which is not a date. Use ISO dates like 2020-01-31."
        )
    raw[date_col] = dates
    asset_col = next((c for c in ASSET_COLUMNS if c in raw.columns), None)
    if asset_col is None:
        raw["asset"] = path.stem.upper()
        asset_col = "asset"
    if "open" not in raw.columns:
        raw["open"] = raw["close"]  # Without opens, trades fill at the bar's close.
    for col in ("open", "close"):
        values = pd.to_numeric(raw[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: column {col!r} row {row + 2} holds {raw[col].iloc[row]!r}; prices must "
                "be positive numbers. Remove or fill the row."
            )
        raw[col] = values
    for col in ("high", "low", "volume"):
        raw[col] = pd.to_numeric(raw[col], errors="coerce") if col in raw.columns else np.nan
    # Highs and lows must bracket open and close; missing ones fall back to them.
    raw["high"] = raw[["high", "open", "close"]].max(axis=1)
    raw["low"] = raw[["low", "open", "close"]].min(axis=1)
    dup = raw.duplicated([date_col, asset_col])
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(
            f"{path}: row {row + 2} repeats date {raw[date_col].iloc[row].date()} for asset "
            f"{raw[asset_col].iloc[row]!r}. Keep one row per date and asset."
        )
    out: dict[str, pd.DataFrame] = {}
    for field in FIELDS:
        wide = raw.pivot(index=date_col, columns=asset_col, values=field).sort_index()
        wide.index.name = "date"
        wide.columns = pd.Index([str(c) for c in wide.columns], name="asset")
        out[field] = wide.astype(float)
    close = out["close"]
    # Assets listed on different dates: keep the span where every asset trades.
    first = close.apply(pd.Series.first_valid_index).max()
    last = close.apply(pd.Series.last_valid_index).min()
    out = {k: v.loc[first:last].ffill() for k, v in out.items()}
    if len(out["close"]) < MIN_BARS:
        raise DataError(
            f"{path}: {len(out['close'])} bars where every asset has a price; at least "
            f"{MIN_BARS} are needed for in-sample, walk-forward validation and a holdout."
        )
    _check_bar_spacing(path, out["close"].index)
    return out


def _check_bar_spacing(path: Path, index: pd.Index) -> None:
    """Annualised figures assume TRADING_PERIODS_PER_YEAR bars a year (252: daily). Weekly
    or intraday bars under the daily figure would skew every Sharpe ratio silently."""
    declared = env_float("TRADING_PERIODS_PER_YEAR", 252.0)
    span_years = (index[-1] - index[0]).days / DAYS_PER_YEAR
    if span_years <= 0:
        return
    per_year = (len(index) - 1) / span_years
    if not declared / SPACING_TOLERANCE <= per_year <= declared * SPACING_TOLERANCE:
        raise DataError(
            f"{path}: about {per_year:.0f} bars a year, but TRADING_PERIODS_PER_YEAR is "
            f'{declared:g}; set TRADING_PERIODS_PER_YEAR = "{round(per_year)}" in the '
            "[env] table of autoresearch.toml so annualised figures are right."
        )
