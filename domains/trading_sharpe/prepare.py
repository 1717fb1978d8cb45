"""Fixed prepare step of the trading domain: the engine runs it once, as prepare_command.

    AUTORESEARCH_DATA_DIR=... AUTORESEARCH_EVAL_DATA_DIR=... python prepare.py

Reads the configured source (prices.load_prices) and saves the in-sample bars alone into
$AUTORESEARCH_DATA_DIR, the only data `python harness.py insample` (the candidate's command)
can read, and the whole history (walk-forward windows, locked holdout) into
$AUTORESEARCH_EVAL_DATA_DIR, which only `python harness.py evaluate` sees. The engine
checksums both and mounts them read-only. The synthetic universe's seed reaches this step
alone (data_seed_env): a candidate cannot regenerate the future from it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness import split
from prices import DATA_VAR, EVAL_DATA_VAR, DataError, load_prices, save_bars


def main() -> int:
    shared, full = os.environ.get(DATA_VAR), os.environ.get(EVAL_DATA_VAR)
    if not shared or not full:
        print(
            f"set {DATA_VAR} and {EVAL_DATA_VAR} (the engine does); by hand, "
            "`python harness.py insample|evaluate` reads the source itself",
            file=sys.stderr,
        )
        return 2
    try:
        data, describe = load_prices()
        n_bars = len(data["close"])
        insample, _, _ = split(n_bars)
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    save_bars(Path(full), data, describe, n_bars)
    head = {k: v.iloc[: insample.end] for k, v in data.items()}
    save_bars(Path(shared), head, describe, n_bars)
    print(f"data: {describe}; {insample.end} in-sample bars shared, {n_bars} for the evaluator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
