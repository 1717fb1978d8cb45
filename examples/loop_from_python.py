"""Run a research loop from Python: a toy domain, the Optuna knob proposer, five experiments.

python examples/loop_from_python.py [FOLDER] [--experiments N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from autoresearch import Event, Loop
from autoresearch.testing import make_toy_domain


def show(event: Event) -> None:
    if event.record is not None:
        r = event.record
        print(
            f"#{r.id} {r.status.value:<8} score={r.value}  best={event.best_value}  {r.description}"
        )
    else:
        print("·", event.message)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?", help="where to write the toy domain (default: temp)")
    parser.add_argument("--experiments", type=int, default=5)
    args = parser.parse_args()
    root = Path(args.folder) if args.folder else Path(tempfile.mkdtemp())
    domain = make_toy_domain(root / "toy")  # params.py (editable), run.py (fixed)
    loop = Loop.from_dir(domain, proposer="knob", on_event=show)
    summary = loop.run(max_experiments=args.experiments)
    print(
        f"baseline {summary.baseline_value} -> best {summary.best_value} "
        f"on branch {summary.branch} ({summary.counts})"
    )


if __name__ == "__main__":
    main()
