"""The trusted evaluator of gpt_pretrain (fixed; the harness runs it as `eval_command`).

    python evaluate.py

Scores val_bpb on a fixed slice of validation tokens that train.py is never handed, checks that
the model is causal, and prints the `---` summary the objective records.

Candidate code never runs in this process: a child (`python evaluate.py --serve`) imports
train.py, rebuilds the model from the checkpoint (weights_only=True) and only answers "logits
for these token rows" over a pipe. Cross-entropy, byte counts, the causality check and the
summary all happen here, so train.py cannot patch them.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import math
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np
import prepare
import torch
import torch.nn.functional as F

# Causality: logits before the changed position may differ only by float noise. A leak small
# enough to pass moves the loss by a negligible amount.
CAUSAL_TOLERANCE = 1e-3
# Check rows (each tests one position with the future replaced): as many as scored rows, at
# least this many, every position of a row when that is fewer. Positions are drawn afresh each
# run, so a model that peeks at 2% of positions escapes one run's 128 checks with odds ~7%, and
# the repeats of a promising candidate with odds far smaller. Checking costs about as much as
# scoring.
MIN_CHECK_ROWS = 128
STDERR_TAIL_LINES = 40  # lines of the model process's stderr shown when it fails

# Wire format, little-endian. Request: rows, cols (int64), then rows*cols int64 token ids.
# Answer: ndim, itemsize (int64), ndim dims (int64), then the logits (float16 or float32).
_REQUEST = struct.Struct("<2q")
_ANSWER = struct.Struct("<2q")
_DIM = struct.Struct("<q")

LogitsFn = Callable[[np.ndarray], torch.Tensor]


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
    rows of ``seq_len`` tokens back to back (document separators hold no bytes and count in
    neither sum). Check rows keep a scored row up to position t, take the rest from another row
    (the token at t+1 always differs) and must give the same logits at t: the largest change,
    relative to the logits' scale, is the causality error (~0 for a causal model). Check batches
    have the scoring shape and come in random order (os.urandom) among the scoring batches, so
    the model cannot tell them apart by shape or position in the stream.
    """
    rows = (tokens.size - 1) // seq_len
    if rows < 1:
        raise SystemExit(f"only {tokens.size} validation tokens: need more than {seq_len}")
    batch = min(batch, rows)
    rows -= rows % batch  # every batch has the same shape
    n = rows * seq_len
    x_all = tokens[:n].astype(np.int64).reshape(rows, seq_len)
    y_all = torch.from_numpy(tokens[1 : n + 1].astype(np.int64)).view(rows, seq_len)
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


# ---------------------------------------------------------------- the model process


def _read_exact(stream: object, size: int) -> bytearray:
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise EOFError
        got += n
    return buf


class ModelProcess:
    """train.py's model in a child process, asked for logits over a pipe; killed on close."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: close() ends its children too
        )
        # Kept, not printed: lines the candidate writes must not reach the recorded output.
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(_REQUEST.pack(*x.shape) + x.astype("<i8").tobytes())
            self.proc.stdin.flush()
            ndim, itemsize = _ANSWER.unpack(_read_exact(self.proc.stdout, _ANSWER.size))
            if not 0 <= ndim <= 8 or itemsize not in (2, 4):
                self.fail(f"the model process answered a bad header ({ndim}, {itemsize})")
            shape = struct.unpack(f"<{ndim}q", _read_exact(self.proc.stdout, _DIM.size * ndim))
            if shape != (*x.shape, self.vocab):
                self.fail(
                    f"the model returned logits of shape {shape}; expected "
                    f"(batch, seq_len, vocab) = {(*x.shape, self.vocab)}"
                )
            data = _read_exact(self.proc.stdout, math.prod(shape) * itemsize)
        except (BrokenPipeError, EOFError):
            self.fail("the model process stopped")
        dtype = np.dtype("<f2" if itemsize == 2 else "<f4")
        return torch.from_numpy(np.frombuffer(data, dtype).reshape(shape))

    def fail(self, message: str) -> NoReturn:
        self.close()
        tail = "\n".join(f"  model> {line}" for line in self.stderr)
        raise SystemExit(f"{message}; its stderr ends:\n{tail}" if tail else message)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.drain.join(timeout=1)  # the last lines, unless a runaway child holds the pipe


def serve() -> None:
    """The child: rebuild train.py's model, then answer logits for each request until EOF."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # train.py's prints go to stderr, never into the answers
    s = prepare.Settings.from_env()
    dev = prepare.device(s)
    ckpt = load_checkpoint(prepare.checkpoint_path())
    prepare._EVALUATING = True  # train.py must not start training when imported here
    sys.dont_write_bytecode = True  # no __pycache__ in the candidate's worktree
    train = importlib.import_module("train")
    if not hasattr(train, "build_model"):
        raise SystemExit("train.py must define build_model(config) -> nn.Module")
    model = train.build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    model = model.to(dev).eval()
    out_dtype = torch.float16 if dev.type == "cuda" else torch.float32  # halves the transfer
    requests = sys.stdin.buffer
    while True:
        try:
            rows, cols = _REQUEST.unpack(_read_exact(requests, _REQUEST.size))
            data = _read_exact(requests, rows * cols * 8)
        except EOFError:
            return
        x = torch.frombuffer(data, dtype=torch.int64).view(rows, cols).to(dev)
        with torch.no_grad(), torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(x)
        out = logits.detach().to(out_dtype).cpu().contiguous().numpy()
        answers.write(_ANSWER.pack(out.ndim, out.itemsize))
        answers.write(struct.pack(f"<{out.ndim}q", *out.shape))
        answers.write(out.data)
        answers.flush()


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"no checkpoint at {path}: train.py must call prepare.save_checkpoint")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != prepare.CHECKPOINT_FORMAT:
        raise SystemExit(f"{path} is not a checkpoint written by prepare.save_checkpoint")
    return ckpt


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
    ckpt = load_checkpoint(prepare.checkpoint_path())
    model = ModelProcess(token_bytes.size)
    try:

        def logits_fn(x: np.ndarray) -> torch.Tensor:
            return model(x).to(dev)  # cross-entropy on the device: the GPU preset's is large

        bpb, err = score(logits_fn, tokens, token_bytes, s.seq_len, s.eval_batch)
    finally:
        model.close()
    if err > CAUSAL_TOLERANCE:
        raise SystemExit(
            f"the model is not causal: changing later tokens changed earlier logits "
            f"(relative change {err:.3g} > {CAUSAL_TOLERANCE}); val_bpb not recorded"
        )
    stats = ckpt["stats"]
    eval_s = time.time() - t0
    params = sum(v.numel() for v in ckpt["state_dict"].values())
    rows = (tokens.size - 1) // s.seq_len
    scored = rows - rows % min(s.eval_batch, rows)  # as score() does: whole batches only
    summary = {
        "val_bpb": f"{bpb:.6f}",
        "training_seconds": f"{stats.get('training_seconds', 0.0):.1f}",
        "total_seconds": f"{stats.get('total_seconds', 0.0) + eval_s:.1f}",
        "peak_mem_mb": f"{stats.get('peak_mem_mb', 0.0):.1f}",  # training's (the model's own)
        "mfu_percent": f"{stats.get('mfu_percent', 0.0):.2f}",
        "total_tokens_M": f"{stats.get('total_tokens_M', 0.0):.2f}",
        "num_steps": f"{int(stats.get('num_steps', 0))}",
        "num_params_M": f"{params / 1e6:.2f}",
        "eval_seconds": f"{eval_s:.1f}",
        "eval_tokens": f"{scored * s.seq_len}",
    }
    print("---")
    for key, value in summary.items():
        print(f"{key + ':':<18}{value}")
    sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main()
