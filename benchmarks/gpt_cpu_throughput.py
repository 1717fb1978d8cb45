"""Throughput of gpt_pretrain's CPU preset training step, against this machine's fp32 matmul.

    python benchmarks/gpt_cpu_throughput.py [--steps 8] [--rounds 3]

Prints tokens/s and achieved FLOP/s of one full training step (forward, loss, backward, gradient
clip, AdamW) of train.py's CPU model, beside the FLOP/s of a large fp32 matmul measured in the
same process, and their ratio. Rounds interleave the two measurements so that a busy machine
slows both alike; each figure is a median (of steps, of matmuls), and the median round is shown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[1] / "domains" / "gpt_pretrain"
SEQ_LEN = 256  # the CPU preset's GPT_SEQ_LEN
VOCAB_SIZE = 257  # the byte tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    args = parser.parse_args()

    os.environ["GPT_PRESET"] = "cpu"
    sys.path.insert(0, str(DOMAIN))
    import prepare
    import torch
    import torch.nn.functional as F
    import train

    torch.manual_seed(0)
    config = dict(
        vocab_size=VOCAB_SIZE,
        seq_len=SEQ_LEN,
        depth=train.DEPTH,
        width=train.WIDTH,
        n_heads=train.N_HEADS,
        mlp_ratio=train.MLP_RATIO,
    )
    model = train.build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.LR, betas=(0.9, 0.95))
    x = torch.randint(0, VOCAB_SIZE, (train.BATCH_SIZE, SEQ_LEN))
    y = torch.randint(0, VOCAB_SIZE, (train.BATCH_SIZE, SEQ_LEN))

    def step() -> None:
        loss = F.cross_entropy(model(x).view(-1, VOCAB_SIZE), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # allocation and first-touch costs are not throughput
    flops_per_token = train.flops_per_token(config)
    cpu = torch.device("cpu")
    rounds = []
    for _ in range(args.rounds):
        # Medians on both sides: a busy machine's stalls then bias neither figure.
        matmul = statistics.median(
            prepare.measure_matmul_flops(cpu, torch.float32, reps=1) for _ in range(args.steps)
        )
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        tokens_per_s = x.numel() / statistics.median(times)
        achieved = tokens_per_s * flops_per_token
        rounds.append((achieved / matmul, tokens_per_s, achieved, matmul))
    ratio, tokens_per_s, achieved, matmul = sorted(rounds)[len(rounds) // 2]

    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: cpu preset, depth {train.DEPTH}, width {train.WIDTH}, heads {train.N_HEADS}, "
        f"batch {train.BATCH_SIZE} x {SEQ_LEN}, {n_params / 1e6:.2f}M params, "
        f"{flops_per_token / 1e6:.1f} MFLOP/token"
    )
    print(
        f"threads: {torch.get_num_threads()}, torch {torch.__version__}, "
        f"{args.rounds} rounds x {args.steps} steps and matmuls (median round)"
    )
    print(f"train tokens/s:      {tokens_per_s:,.0f}")
    print(f"train FLOP/s:        {achieved / 1e9:.1f} G")
    print(f"fp32 matmul FLOP/s:  {matmul / 1e9:.1f} G")
    print(f"ratio:               {100 * ratio:.1f}%")
    print(f"ratio per round:     {', '.join(f'{100 * r[0]:.1f}%' for r in rounds)}")
    print(f"spread (stdev):      {100 * statistics.pstdev(r[0] for r in rounds):.1f} points")


if __name__ == "__main__":
    main()
