"""The toy domain: two constants in ``params.py``, a fixed ``run.py`` that prints a score."""

from __future__ import annotations

import textwrap
from pathlib import Path

from autoresearch._git import init_repo

TOY_PARAMS = '''\
"""Knobs of the toy objective. The score is lowest at X=3, Y=1."""
X = 0.0  # first coordinate
Y = 0.0  # second coordinate
'''

TOY_RUN = '''\
"""Fixed harness: prints the score of params.py in the upstream summary format."""
import os
import random

import params

rng = random.Random(int(os.environ.get("AUTORESEARCH_SEED", "0")))
noise = float(os.environ.get("TOY_NOISE", "0")) * rng.gauss(0, 1)
score = (params.X - 3) ** 2 + (params.Y - 1) ** 2 + 1 + noise
print("training...")
print("---")
print(f"score: {score:.6f}")
'''

TOY_PROGRAM = "# Toy\nLower the score by changing X and Y in params.py.\n"
# The score of the unmodified toy (X=0, Y=0) without noise.
TOY_BASELINE_SCORE = 11.0


def toy_score(x: float, y: float) -> float:
    """The toy's noiseless score: (X-3)^2 + (Y-1)^2 + 1."""
    return (x - 3) ** 2 + (y - 1) ** 2 + 1


def make_toy_domain(
    path: Path,
    *,
    command: str = "python run.py",
    extra_toml: str = "",
    git: bool = False,
    time_budget_s: float = 10,
    noise: float = 0.0,
) -> Path:
    """Write a small domain folder: editable ``params.py`` (constants X, Y), fixed ``run.py``
    printing ``score`` (minimize; best 1.0 at X=3, Y=1), knobs for both constants.
    ``noise`` adds a seeded Gaussian of that spread to each run's score (``TOY_NOISE``);
    ``git`` commits the folder in a repository of its own."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "params.py").write_text(TOY_PARAMS)
    (path / "run.py").write_text(TOY_RUN)
    (path / "program.md").write_text(TOY_PROGRAM)
    (path / "autoresearch.toml").write_text(
        textwrap.dedent(f"""\
        name = "toy"
        description = "A two-constant toy objective for tests"
        editable = ["params.py"]
        fixed = ["run.py"]
        command = "{command}"
        time_budget_s = {time_budget_s}

        [env]
        TOY_NOISE = "{noise}"

        [objective]
        metric = "score"
        direction = "minimize"

        [[proposer.knobs]]
        name = "x"
        file = "params.py"
        constant = "X"
        type = "float"
        low = -5.0
        high = 5.0

        [[proposer.knobs]]
        name = "y"
        file = "params.py"
        constant = "Y"
        type = "float"
        low = -5.0
        high = 5.0
        """)
        + extra_toml
    )
    if git:
        init_repo(path)
    return path
