"""Fixed tasks of rl_gsm8k: loaders (problems + gold answers), answer extraction, checks, rewards.

A task is three functions, named in autoresearch.toml's [env] as ``module:function``:

- a loader ``load(split, n, seed) -> list[{"question": str, "answer": str}]``: ``split`` is
  "train" or "test" (the source's own split: GSM8K's files, or a procedural generator's seed
  stream), ``n`` how many the harness wants (a loader may return more or fewer), ``seed`` the
  data seed. prepare.py deduplicates by normalised question text and makes train, selection
  and holdout disjoint, whatever the loader returns (RL_LOADER);
- a check ``check(completion, answer, *, strict) -> bool``: is this completion right? The
  evaluator reports accuracy with ``strict=False`` and ``accuracy_strict`` with ``strict=True``
  (RL_CHECK);
- a reward ``reward(completions, answers) -> list[float]``: the task's training signal, which
  train.py may shape further (RL_REWARD; train.py's own code, so never trusted).

The check runs in the evaluator, so its module must be a fixed file of the domain (never
train.py). Candidates cannot edit this file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

Problem = dict[str, str]

# A number as written in a math answer: an optional dollar sign and a sign attached to the
# digits ("-5", "-$5", "$-5"), thousands separators, a decimal part. A minus after a digit or a
# letter ("5-3") or followed by a space ("5 - 3") is an operator, not a sign.
_NUMBER = re.compile(
    r"(?<![\w.])(?:\$\s?)?([-−]?)\$?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?!\d)"
)
_BOXED = re.compile(r"\\boxed\s*\{")
_HASHES = "####"
GSM8K_HUB_NAME = "openai/gsm8k"
GSM8K_SIZES = {"train": 7473, "test": 1319}


# ---------------------------------------------------------------- answers


def parse_number(text: str) -> Decimal | None:
    """The first number in ``text`` as a Decimal ("$1,000.50" -> 1000.50, "−3" -> -3)."""
    m = _NUMBER.search(text)
    return _to_decimal(m) if m else None


def _to_decimal(m: re.Match[str]) -> Decimal | None:
    try:
        value = Decimal(m.group(2).replace(",", ""))
    except InvalidOperation:
        return None
    return -value if m.group(1) else value


def _boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}``, braces balanced."""
    out = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def extract_answer(completion: str) -> tuple[Decimal | None, str]:
    """The completion's final answer and where it came from, in this order: the last
    ``\\boxed{}`` holding a number ("boxed"), the first number after the last ``####``
    ("hash"), the last number anywhere ("last"); (None, "none") when there is no number."""
    for content in reversed(_boxed_contents(completion)):
        numbers = list(_NUMBER.finditer(content))
        if numbers:
            return _to_decimal(numbers[-1]), "boxed"
    if _HASHES in completion:
        value = parse_number(completion.rsplit(_HASHES, 1)[1])
        if value is not None:
            return value, "hash"
    numbers = list(_NUMBER.finditer(completion))
    if numbers:
        return _to_decimal(numbers[-1]), "last"
    return None, "none"


def check_number(completion: str, answer: str, *, strict: bool = False) -> bool:
    """Numeric equality of the extracted answer and the gold one ("18.00" equals "18").
    ``strict`` counts only an answer marked with ``\\boxed{}`` or ``####``."""
    gold = parse_number(answer)
    value, where = extract_answer(completion)
    if gold is None or value is None:
        return False
    if strict and where not in ("boxed", "hash"):
        return False
    return value == gold


def correctness_reward(completions: Sequence[str], answers: Sequence[str]) -> list[float]:
    """1.0 for a right answer (lenient extraction), else 0.0."""
    return [float(check_number(c, a)) for c, a in zip(completions, answers, strict=True)]


def gsm8k_gold(solution: str) -> str:
    """GSM8K's gold answer: what follows ``####`` in the solution, without commas."""
    if _HASHES not in solution:
        raise ValueError(f"no '####' in GSM8K solution {solution[:80]!r}")
    return solution.rsplit(_HASHES, 1)[1].strip().replace(",", "")


# ---------------------------------------------------------------- loaders


def gsm8k(split: str, n: int, seed: int) -> list[Problem]:
    """GSM8K (train 7,473 / test 1,319): local files in its JSONL format (RL_GSM8K_FILES, a
    folder holding train.jsonl and test.jsonl), else the hub copy through ``datasets`` (needs
    the network). ``n`` and ``seed`` are unused: every problem is returned."""
    import os

    from datasets import load_dataset

    from autoresearch import harness

    local = os.environ.get("RL_GSM8K_FILES", "").strip()
    cache = str(harness.cache_dir() / "hf-datasets")
    if local:
        path = Path(local).expanduser() / f"{split}.jsonl"
        if not path.is_file():
            raise SystemExit(f"RL_GSM8K_FILES={local}: no {split}.jsonl there (GSM8K's format)")
        rows = load_dataset("json", data_files=str(path), split="train", cache_dir=cache)
    else:
        try:
            rows = load_dataset(GSM8K_HUB_NAME, "main", split=split, cache_dir=cache)
        except Exception as e:
            raise SystemExit(
                f"could not load {GSM8K_HUB_NAME} ({type(e).__name__}: {e}). The gpu preset "
                "fetches GSM8K from the Hugging Face hub when it prepares its data, which needs "
                "the network (prepare_network = true). Offline, point RL_GSM8K_FILES at a "
                "folder with GSM8K's train.jsonl and test.jsonl, or use the offline task: "
                "RL_LOADER = 'tasks:gsm_symbolic'."
            ) from None
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise SystemExit(f"GSM8K {split} row {i}: needs string 'question' and 'answer'")
        out.append({"question": row["question"], "answer": gsm8k_gold(row["answer"])})
    return out


def _reasoning_gym(name: str, split: str, n: int, seed: int, **config: Any) -> list[Problem]:
    import reasoning_gym

    # reasoning-gym seeds item i with seed + i, so seeds s and s + 1 share all but one item:
    # train and test take seeds far apart (a hash), and prepare.py still removes any problem
    # the two share (a small generator repeats problems).
    digest = hashlib.sha256(f"{name}:{split}:{seed}".encode()).digest()
    ds = reasoning_gym.create_dataset(
        name, size=n, seed=int.from_bytes(digest[:4], "big"), **config
    )
    return [{"question": str(x["question"]), "answer": str(x["answer"])} for x in ds]


def gsm_symbolic(split: str, n: int, seed: int) -> list[Problem]:
    """GSM8K-style templated word problems from reasoning-gym (offline)."""
    return _reasoning_gym("gsm_symbolic", split, n, seed)


def chain_sum(split: str, n: int, seed: int) -> list[Problem]:
    """The cpu preset's task: "a + b" or "a - b" with a, b below 100, from reasoning-gym. Small
    enough that SmolLM2-135M-Instruct gets about a third right before training (measured)."""
    return _reasoning_gym(
        "chain_sum", split, n, seed, min_terms=2, max_terms=2, min_digits=1, max_digits=2
    )


def jsonl(split: str, n: int, seed: int) -> list[Problem]:
    """Your own problems offline: RL_JSONL_DIR holds train.jsonl and test.jsonl, one
    ``{"question": ..., "answer": ...}`` per line."""
    import os

    folder = Path(os.environ.get("RL_JSONL_DIR", "")).expanduser()
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        raise SystemExit(f"RL_JSONL_DIR={folder}: no {split}.jsonl there")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("question", "answer")
        ):
            raise SystemExit(f"{path}:{lineno}: needs string 'question' and 'answer'")
        out.append({"question": row["question"], "answer": row["answer"]})
    return out
