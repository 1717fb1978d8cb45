"""The trusted evaluator of gpt_pretrain (fixed; the harness runs it as `eval_command`).

    python evaluate.py

Loads the checkpoint train.py saved (weights_only=True), rebuilds the model with train.py's
`build_model`, scores val_bpb on a fixed slice of validation tokens that train.py is never
handed, checks that the model is causal, and prints the `---` summary the objective records.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import prepare
import torch
import torch.nn.functional as F

# Causality: logits before the changed position may differ only by float noise. A leak small
# enough to pass moves the loss by a negligible amount.
CAUSAL_TOLERANCE = 1e-3

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def evaluate_bpb(
    logits_fn: LogitsFn,
    tokens: np.ndarray,
    token_bytes: np.ndarray,
    seq_len: int,
    batch: int,
    dev: torch.device | None = None,
) -> float:
    """Summed cross-entropy (nats) of the targets / summed UTF-8 bytes of the targets / ln 2.

    Rows of ``seq_len`` tokens, back to back. Document separators hold no bytes and are left out
    of both sums.
    """
    dev = dev or torch.device("cpu")
    rows = (tokens.size - 1) // seq_len
    if rows < 1:
        raise SystemExit(f"only {tokens.size} validation tokens: need more than {seq_len}")
    n = rows * seq_len
    x_all = torch.from_numpy(tokens[:n].astype(np.int64)).view(rows, seq_len)
    y_all = torch.from_numpy(tokens[1 : n + 1].astype(np.int64)).view(rows, seq_len)
    nbytes_of = torch.from_numpy(token_bytes.astype(np.int64))
    vocab = token_bytes.size
    total_nats, total_bytes = 0.0, 0
    for i in range(0, rows, batch):
        x, y = x_all[i : i + batch].to(dev), y_all[i : i + batch]
        logits = logits_fn(x)
        if tuple(logits.shape) != (*x.shape, vocab):
            raise SystemExit(
                f"the model returned logits of shape {tuple(logits.shape)}; expected "
                f"(batch, seq_len, vocab) = {(*x.shape, vocab)}"
            )
        flat = logits.float().cpu().reshape(-1, vocab)
        nats = F.cross_entropy(flat, y.reshape(-1), reduction="none")
        nbytes = nbytes_of[y.reshape(-1)]
        total_nats += float(nats[nbytes > 0].double().sum())
        total_bytes += int(nbytes.sum())
    return total_nats / total_bytes / math.log(2)


@torch.no_grad()
def causality_error(logits_fn: LogitsFn, x: torch.Tensor, vocab: int) -> float:
    """Largest change of a logit before position t when tokens from t on (and the other rows
    of the batch) are replaced, relative to the logits' scale. A causal model gives ~0."""
    gen = torch.Generator().manual_seed(0)
    base = logits_fn(x).float()
    worst = 0.0
    for t in (1, x.shape[1] // 2, x.shape[1] - 1):
        changed = x.clone()
        changed[0, t:] = torch.randint(0, vocab, (x.shape[1] - t,), generator=gen).to(x.device)
        if x.shape[0] > 1:
            changed[1:] = torch.randint(0, vocab, changed[1:].shape, generator=gen).to(x.device)
        diff = (logits_fn(changed).float()[0, :t] - base[0, :t]).abs().max()
        worst = max(worst, float(diff) / max(1.0, float(base[0, :t].abs().max())))
    return worst


def load_model(path: Path, dev: torch.device) -> tuple[torch.nn.Module, dict]:
    if not path.exists():
        raise SystemExit(f"no checkpoint at {path}: train.py must call prepare.save_checkpoint")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != prepare.CHECKPOINT_FORMAT:
        raise SystemExit(f"{path} is not a checkpoint written by prepare.save_checkpoint")
    prepare._EVALUATING = True  # train.py must not start training when imported here
    sys.dont_write_bytecode = True  # no __pycache__ in the candidate's worktree
    train = importlib.import_module("train")
    if not hasattr(train, "build_model"):
        raise SystemExit("train.py must define build_model(config) -> nn.Module")
    model = train.build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(dev).eval(), ckpt


def validation_tokens(s: prepare.Settings) -> tuple[np.ndarray, np.ndarray]:
    """The fixed slice of validation tokens and the byte count of every token id."""
    directory = prepare.build_cache(s)
    meta = json.loads((directory / "meta.json").read_text())
    val = np.memmap(directory / "val.bin", dtype=meta["dtype"], mode="r")
    return np.asarray(val[: s.eval_tokens + 1]), np.load(directory / "token_bytes.npy")


def main() -> None:
    t0 = time.time()
    s = prepare.Settings.from_env()
    dev = prepare.device(s)
    tokens, token_bytes = validation_tokens(s)
    model, ckpt = load_model(prepare.checkpoint_path(), dev)

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            return model(x)

    bpb = evaluate_bpb(logits_fn, tokens, token_bytes, s.seq_len, s.eval_batch, dev)
    # After scoring: the check's inputs then teach a stateful model nothing it could use.
    n_rows = min(2, tokens.size // s.seq_len)  # two rows also catch peeking across the batch
    rows = torch.from_numpy(tokens[: n_rows * s.seq_len].astype(np.int64)).view(n_rows, s.seq_len)
    err = causality_error(logits_fn, rows.to(dev), token_bytes.size)
    if err > CAUSAL_TOLERANCE:
        raise SystemExit(
            f"the model is not causal: changing later tokens changed earlier logits "
            f"(relative change {err:.3g} > {CAUSAL_TOLERANCE}); val_bpb not recorded"
        )
    stats = ckpt["stats"]
    eval_s = time.time() - t0
    params = sum(v.numel() for v in ckpt["state_dict"].values())
    summary = {
        "val_bpb": f"{bpb:.6f}",
        "training_seconds": f"{stats.get('training_seconds', 0.0):.1f}",
        "total_seconds": f"{stats.get('total_seconds', 0.0) + eval_s:.1f}",
        "peak_mem_mb": f"{max(stats.get('peak_mem_mb', 0.0), prepare.peak_memory_mb(dev)):.1f}",
        "mfu_percent": f"{stats.get('mfu_percent', 0.0):.2f}",
        "total_tokens_M": f"{stats.get('total_tokens_M', 0.0):.2f}",
        "num_steps": f"{int(stats.get('num_steps', 0))}",
        "num_params_M": f"{params / 1e6:.2f}",
        "eval_seconds": f"{eval_s:.1f}",
        "eval_tokens": f"{(tokens.size - 1) // s.seq_len * s.seq_len}",
    }
    print("---")
    for key, value in summary.items():
        print(f"{key + ':':<18}{value}")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip atexit hooks and threads a candidate module may have left: nothing may follow the block.
    os._exit(0)


if __name__ == "__main__":
    main()
