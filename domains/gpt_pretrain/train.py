"""A small GPT trained from scratch for the budget the harness gives (gpt_pretrain's editable file).

Change anything here: model, optimizer, schedule. Keep three things: `build_model(config)` returns
a module mapping token ids (batch, seq) to logits (batch, seq, vocab), since the evaluator rebuilds
the model with it; training stays under `if __name__ == "__main__":`; and `harness.start_budget()`
runs right before the first timed step (the engine's hard limit counts the budget from there).
val_bpb is measured afterwards by `python evaluate.py`, on tokens this file never sees.
"""

import math
import sys
import time

import prepare
import torch
import torch.nn as nn
import torch.nn.functional as F

from autoresearch import harness

# The preset (autoresearch.toml) picks a column of the per-preset knobs below.
PRESET = harness.env_str("GPT_PRESET", "cpu")

DEPTH = {"cpu": 4, "mps": 6, "gpu": 8}[PRESET]  # transformer blocks
WIDTH = {"cpu": 256, "mps": 384, "gpu": 512}[PRESET]  # residual stream width
N_HEADS = {"cpu": 4, "mps": 6, "gpu": 4}[PRESET]  # attention heads (WIDTH must divide by it)
BATCH_SIZE = {"cpu": 16, "mps": 32, "gpu": 64}[PRESET]  # sequences per optimizer step
MLP_RATIO = 4  # MLP hidden width / WIDTH
LR = 3e-3  # peak AdamW learning rate of the block matrices
EMBED_LR = 3e-3  # peak learning rate of the embedding and the output head
WEIGHT_DECAY = 0.1  # AdamW decay, matrices only
ADAM_BETA1 = 0.9  # AdamW first-moment decay
ADAM_BETA2 = 0.95  # AdamW second-moment decay
WARMUP_RATIO = 0.05  # share of the budget spent ramping the learning rate up
WARMDOWN_RATIO = 0.4  # share of the budget at the end spent decaying it
FINAL_LR_FRAC = 0.05  # learning rate at the end of the budget, as a share of the peak
GRAD_CLIP = 1.0  # max gradient norm (0: off)
COMPILE = PRESET == "gpu"  # torch.compile pays back its warm-up only over long GPU runs
UNTIMED_STEPS = 3 if COMPILE else 0  # first steps (compile warm-up), run before the budget
LOG_EVERY_S = 5.0  # seconds between progress lines


class Block(nn.Module):
    def __init__(self, width: int, n_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.up = nn.Linear(width, mlp_ratio * width, bias=False)
        self.down = nn.Linear(mlp_ratio * width, width, bias=False)
        # Zero output projections: every block starts as the identity, which trains faster.
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.down.weight)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(F.rms_norm(x, (c,))).view(b, t, 3, self.n_heads, -1).unbind(2)
        q, k = (
            rope(F.rms_norm(q, q.shape[-1:]), cos, sin),
            rope(F.rms_norm(k, k.shape[-1:]), cos, sin),
        )
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.down(F.relu(self.up(F.rms_norm(x, (c,)))).square())


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class GPT(nn.Module):
    def __init__(
        self, vocab_size: int, seq_len: int, depth: int, width: int, n_heads: int, mlp_ratio: int
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.blocks = nn.ModuleList(Block(width, n_heads, mlp_ratio) for _ in range(depth))
        self.head = nn.Linear(width, vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=1.0)
        nn.init.normal_(self.head.weight, std=0.02)
        half = width // n_heads // 2
        freq = 1.0 / 10000 ** (torch.arange(half) / half)
        angle = torch.outer(torch.arange(seq_len), freq)[None, :, None, :]
        self.register_buffer("cos", angle.cos(), persistent=False)
        self.register_buffer("sin", angle.sin(), persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = F.rms_norm(self.embed(idx), (self.embed.embedding_dim,))
        for block in self.blocks:
            x = block(x, self.cos[:, :t], self.sin[:, :t])
        return self.head(F.rms_norm(x, (x.shape[-1],)))


def build_model(config: dict) -> nn.Module:
    return GPT(**config)


def flops_per_token(config: dict) -> float:
    """Training FLOPs per token: 6 per matmul weight, plus attention scores and values."""
    d, n = config["width"], config["depth"]
    matmul_params = n * (4 + 2 * config["mlp_ratio"]) * d * d + config["vocab_size"] * d
    return 6 * matmul_params + 12 * n * d * config["seq_len"]


def lr_scale(progress: float) -> float:
    """Learning-rate multiplier at this share of the budget: warm up, hold, warm down."""
    if progress < WARMUP_RATIO:
        return (progress + 1e-3) / WARMUP_RATIO
    if progress > 1 - WARMDOWN_RATIO:
        frac = (1 - progress) / WARMDOWN_RATIO
        return FINAL_LR_FRAC + (1 - FINAL_LR_FRAC) * max(frac, 0.0)
    return 1.0


def main() -> None:
    t_start = time.time()
    budget_s = harness.time_budget_s()  # the engine's: train.py never picks its own
    torch.manual_seed(harness.seed())
    device = prepare.device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = dict(
        vocab_size=prepare.vocab_size(),
        seq_len=prepare.seq_len(),
        depth=DEPTH,
        width=WIDTH,
        n_heads=N_HEADS,
        mlp_ratio=MLP_RATIO,
    )
    model = build_model(config).to(device)
    matrices = [p for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("blocks")]
    others = [
        p for n, p in model.named_parameters() if not (p.ndim == 2 and n.startswith("blocks"))
    ]
    optimizer = torch.optim.AdamW(
        [
            dict(params=matrices, lr=LR, weight_decay=WEIGHT_DECAY),
            dict(params=others, lr=EMBED_LR, weight_decay=0.0),
        ],
        betas=(ADAM_BETA1, ADAM_BETA2),
        fused=device.type == "cuda",
    )
    for group in optimizer.param_groups:
        group["peak_lr"] = group["lr"]
    step_fn = torch.compile(model) if COMPILE else model
    loader = prepare.TrainLoader(BATCH_SIZE)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M params, {config}, device {device}, budget {budget_s:g}s")

    budget = None
    step, tokens, timed_tokens, last_log = 0, 0, 0, 0.0
    while budget is None or not budget.done:
        if step == UNTIMED_STEPS:
            # Start-up is over: the budget's clock starts, and the engine's hard limit with it.
            budget = harness.start_budget(budget_s)
        scale = lr_scale(budget.fraction if budget else 0.0)
        for group in optimizer.param_groups:
            group["lr"] = group["peak_lr"] * scale
        x, y = next(loader)
        with torch.autocast(device.type, dtype, enabled=dtype != torch.float32):
            logits = step_fn(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        if GRAD_CLIP:
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()  # also waits for the device, so the step time is real
        if not math.isfinite(loss_value) or loss_value > 100:
            print(f"FAIL: loss is {loss_value} at step {step}: training diverged")
            sys.exit(1)
        step += 1
        tokens += x.numel()
        timed_tokens += x.numel() if budget else 0
        if budget and budget.elapsed_s - last_log >= LOG_EVERY_S:
            last_log = budget.elapsed_s
            print(
                f"step {step:5d} | loss {loss_value:.4f} | lr x{scale:.2f} | "
                f"{timed_tokens / budget.elapsed_s / 1e3:.1f}k tok/s | "
                f"{budget.elapsed_s:.0f}/{budget_s:g}s"
            )

    training_s = budget.elapsed_s
    peak = prepare.peak_flops(device, dtype)
    stats = dict(
        training_seconds=training_s,
        total_seconds=time.time() - t_start,
        peak_mem_mb=prepare.peak_memory_mb(device),
        mfu_percent=100 * flops_per_token(config) * timed_tokens / max(training_s, 1e-9) / peak,
        total_tokens_M=tokens / 1e6,
        num_steps=step,
        num_params_M=n_params / 1e6,
    )
    prepare.save_checkpoint(model, config, stats)
    harness.print_summary(stats)  # val_bpb comes from `python evaluate.py`, not from here


if __name__ == "__main__":
    main()
