"""The trusted evaluator of gpt_pretrain (fixed; the harness runs it as `eval_command`).

    python evaluate.py

Scores val_bpb on a fixed slice of validation tokens that train.py is never handed, checks that
the model is causal, and prints the `---` summary the objective records. Under the engine the
tokens come from $AUTORESEARCH_EVAL_DATA_DIR, a folder only this process sees, checksummed by
the engine before and after every run.

Candidate code never runs in this process: an isolated worker (autoresearch.harness.Worker:
`python -I`, a minimal environment without the data settings, its own process group) loads this
file, imports train.py there, rebuilds the model from the checkpoint (weights_only=True) and
only answers "logits for these token rows". Its prints are kept out of this output (shown,
prefixed, only when it fails). Cross-entropy, byte counts, the causality check and the summary
all happen here, so train.py cannot patch them.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import prepare
import torch
import torch.nn.functional as F

from autoresearch.harness import IsolatedCallError, Worker, env_str, print_summary

# Causality: logits before the changed position may differ only by float noise. A leak small
# enough to pass moves the loss by a negligible amount.
CAUSAL_TOLERANCE = 1e-3
# Check rows (each tests one position with the future replaced): as many as scored rows, at
# least this many, every position of a row when that is fewer. Positions are drawn afresh each
# run, so a model that peeks at 2% of positions escapes one run's 128 checks with odds ~7%, and
# the repeats of a promising candidate with odds far smaller. Checking costs about as much as
# scoring.
MIN_CHECK_ROWS = 128
# Loading the model, or one forward pass, taking longer than this is a hung model.
MODEL_CALL_TIMEOUT_S = 600.0

LogitsFn = Callable[[np.ndarray], torch.Tensor]


def scored_rows(n_tokens: int, seq_len: int, batch: int) -> int:
    """Rows score() uses: each takes seq_len + 1 tokens, in whole batches."""
    rows = n_tokens // (seq_len + 1)
    return rows - rows % max(1, min(batch, rows))


@torch.no_grad()
def score(
    logits_fn: LogitsFn,
    tokens: np.ndarray,
    token_bytes: np.ndarray,
    seq_len: int,
    batch: int,
    check_rows: int | None = None,
) -> tuple[float, float]:
    """(val_bpb, causality error) from one stream of batches, scoring and checking interleaved.

    val_bpb = summed cross-entropy (nats) of the targets / their summed UTF-8 bytes / ln 2, over
    rows of ``seq_len`` inputs, one token apart (document separators hold no bytes and count in
    neither sum). Check rows keep a scored row up to position t, take the rest from another row
    (the token at t+1 always differs) and must give the same logits at t: the largest change,
    relative to the logits' scale, is the causality error (~0 for a causal model). Check batches
    have the scoring shape and come in random order (os.urandom) among the scoring batches, so
    the model cannot tell them apart by shape or position in the stream.
    """
    rows = scored_rows(tokens.size, seq_len, batch)
    if rows < 1:
        raise SystemExit(f"only {tokens.size} validation tokens: need more than {seq_len}")
    batch = min(batch, rows)
    # Row i is tokens[i*(seq_len+1) :][: seq_len + 1]: its last target is a token no row holds
    # as input, so no position can read its target from another row of the batch (the check
    # rows below catch a peek within the row).
    starts = np.arange(rows)[:, None] * (seq_len + 1) + np.arange(seq_len)[None, :]
    x_all = tokens[starts].astype(np.int64)
    y_all = torch.from_numpy(tokens[starts + 1].astype(np.int64))
    nbytes_of = torch.from_numpy(token_bytes.astype(np.int64))
    vocab = token_bytes.size

    rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
    positions = seq_len - 1  # a cut at t replaces t+1 onwards
    n_check = check_rows if check_rows is not None else min(positions, max(rows, MIN_CHECK_ROWS))
    n_check = -(-n_check // batch) * batch if positions > 0 else 0
    cuts = np.concatenate(
        [rng.permutation(positions)[:n_check], rng.integers(0, max(positions, 1), n_check)]
    )[:n_check]
    base = rng.integers(0, rows, n_check)
    donor = (base + 1 + rng.integers(0, max(rows - 1, 1), n_check)) % rows
    checks = x_all[donor].copy()
    for j, (b, t) in enumerate(zip(base, cuts, strict=True)):
        checks[j, : t + 1] = x_all[b, : t + 1]
        if checks[j, t + 1] == x_all[b, t + 1]:
            checks[j, t + 1] = (x_all[b, t + 1] + 1 + rng.integers(vocab - 1)) % vocab
    scored_at: dict[tuple[int, int], torch.Tensor] = {}
    checked_at: dict[int, torch.Tensor] = {}

    total_nats, total_bytes = 0.0, 0
    order = rng.permutation(rows // batch + n_check // batch)
    for k in order.tolist():
        is_check = k >= rows // batch
        i = (k - rows // batch if is_check else k) * batch
        x = checks[i : i + batch] if is_check else x_all[i : i + batch]
        logits = logits_fn(x)
        if tuple(logits.shape) != (*x.shape, vocab):
            raise SystemExit(
                f"the model returned logits of shape {tuple(logits.shape)}; expected "
                f"(batch, seq_len, vocab) = {(*x.shape, vocab)}"
            )
        if is_check:
            for r in range(batch):
                checked_at[i + r] = logits[r, int(cuts[i + r])].float().cpu()
            continue
        for r in range(batch):
            for t in cuts[base == i + r].tolist():
                scored_at[i + r, t] = logits[r, t].float().cpu()
        y = y_all[i : i + batch].to(logits.device).reshape(-1)
        nats = F.cross_entropy(logits.float().reshape(-1, vocab), y, reduction="none")
        nbytes = nbytes_of.to(logits.device)[y]
        total_nats += float(nats[nbytes > 0].double().sum())
        total_bytes += int(nbytes.sum())

    worst = 0.0
    for j, (b, t) in enumerate(zip(base.tolist(), cuts.tolist(), strict=True)):
        ref = scored_at[b, t]
        diff = float((checked_at[j] - ref).abs().max()) / max(1.0, float(ref.abs().max()))
        worst = max(worst, diff) if math.isfinite(diff) else math.inf
    return total_nats / total_bytes / math.log(2), worst


# ---------------------------------------------------------------- the model's process
# These two run in the isolated worker (autoresearch.harness.Worker loads this file there),
# never in the evaluator: train.py is imported only on that side.

_model: torch.nn.Module | None = None
_device = torch.device("cpu")


def load_model(checkpoint: str, device: str) -> None:
    """Rebuild train.py's model from the checkpoint, read before train.py is imported."""
    global _model, _device
    ckpt = load_checkpoint(Path(checkpoint))
    train = importlib.import_module("train")
    if not hasattr(train, "build_model"):
        raise SystemExit("train.py must define build_model(config) -> nn.Module")
    model = train.build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    _device = torch.device(device)
    _model = model.to(_device).eval()


@torch.no_grad()
def logits(x: np.ndarray) -> np.ndarray:
    assert _model is not None, "load_model() first"
    dev = _device
    with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
        out = _model(torch.from_numpy(x).to(dev))
    out_dtype = torch.float16 if dev.type == "cuda" else torch.float32  # halves the transfer
    return out.detach().to(out_dtype).cpu().numpy()


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"no checkpoint at {path}: train.py must call prepare.save_checkpoint")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != prepare.CHECKPOINT_FORMAT:
        raise SystemExit(f"{path} is not a checkpoint written by prepare.save_checkpoint")
    return ckpt


def validation_dir(s: prepare.Settings) -> Path:
    """The evaluator's own folder under the engine (AUTORESEARCH_EVAL_DATA_DIR, which no
    candidate's sandbox holds), else the cache a run by hand builds."""
    directory = prepare.prepared_dir(prepare.EVAL_DATA_VAR, s)
    if directory is not None:
        return directory
    if os.environ.get(prepare.DATA_VAR):
        raise SystemExit(
            f"{prepare.DATA_VAR} is set but {prepare.EVAL_DATA_VAR} is not: the evaluator "
            "reads validation tokens only from its own folder, never the training side's"
        )
    return prepare.build_cache(s)


def validation_tokens(s: prepare.Settings) -> tuple[np.ndarray, np.ndarray]:
    """The fixed slice of validation tokens and the byte count of every token id."""
    directory = validation_dir(s)
    meta = json.loads((directory / "meta.json").read_text())
    val = np.memmap(directory / "val.bin", dtype=meta["dtype"], mode="r")
    return np.asarray(val[: s.eval_tokens + 1]), np.load(directory / "token_bytes.npy")


def main() -> None:
    t0 = time.time()
    s = prepare.Settings.from_env()
    dev = prepare.device(s)
    tokens, token_bytes = validation_tokens(s)
    path = prepare.checkpoint_path().resolve()
    ckpt = load_checkpoint(path)
    vocab = token_bytes.size
    # train.py reads its preset at import; nothing else of this environment reaches it there.
    env = {"GPT_PRESET": env_str("GPT_PRESET", "cpu")}
    largest_answer_mb = s.eval_batch * s.seq_len * vocab * 4 / 2**20 + 1  # float32 logits
    try:
        with Worker(
            __file__,
            timeout_s=MODEL_CALL_TIMEOUT_S,
            env=env,
            output="tail",
            max_reply_mb=largest_answer_mb,
        ) as model:
            model.call("load_model", str(path), dev.type)

            def logits_fn(x: np.ndarray) -> torch.Tensor:
                out = model.call("logits", x)
                if not isinstance(out, np.ndarray) or out.dtype not in (np.float16, np.float32):
                    raise SystemExit("the model process answered something other than logits")
                return torch.from_numpy(out).to(dev)  # cross-entropy on the device

            bpb, err = score(logits_fn, tokens, token_bytes, s.seq_len, s.eval_batch)
    except IsolatedCallError as e:
        raise SystemExit(f"the model process failed: {e}") from None
    if err > CAUSAL_TOLERANCE:
        raise SystemExit(
            f"the model is not causal: changing later tokens changed earlier logits "
            f"(relative change {err:.3g} > {CAUSAL_TOLERANCE}); val_bpb not recorded"
        )
    stats = ckpt["stats"]  # train.py's own figures, recorded beside val_bpb, not trusted
    eval_s = time.time() - t0
    params = sum(v.numel() for v in ckpt["state_dict"].values())
    scored = scored_rows(tokens.size, s.seq_len, s.eval_batch)
    print_summary(
        {
            "val_bpb": bpb,
            "training_seconds": float(stats.get("training_seconds", 0.0)),
            "total_seconds": float(stats.get("total_seconds", 0.0)) + eval_s,
            "peak_mem_mb": float(stats.get("peak_mem_mb", 0.0)),  # training's (the model's own)
            "mfu_percent": float(stats.get("mfu_percent", 0.0)),
            "total_tokens_M": float(stats.get("total_tokens_M", 0.0)),
            "num_steps": int(stats.get("num_steps", 0)),
            "num_params_M": params / 1e6,
            "eval_seconds": eval_s,
            "eval_tokens": scored * s.seq_len,
        }
    )


if __name__ == "__main__":
    main()
