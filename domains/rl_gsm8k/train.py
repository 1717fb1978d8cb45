"""GRPO fine-tuning of a small instruct model on the harness's training problems (trl).

    AUTORESEARCH_TIME_BUDGET_S=60 python train.py

The only file a candidate edits. It trains for the engine's time budget (training steps only:
the budget starts when the first step is about to run), then saves the weights, or the LoRA
adapter, into prepare.output_dir(). evaluate.py scores them with its own architecture,
tokenizer, prompt and greedy decoding; nothing printed here is recorded.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import tempfile
import time
from typing import Any

import prepare

from autoresearch import harness

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is prepared: no hub look-ups
PRESET = harness.env_str("RL_PRESET", "cpu")

# ---------------------------------------------------------------- the recipe
LEARNING_RATE = {"cpu": 1e-5, "gpu": 3e-6}[PRESET]  # AdamW peak; tiny budgets need more
LR_SCHEDULE = "constant"  # constant | cosine | linear, over the fraction of the time budget used
WARMUP_FRACTION = 0.0  # share of the budget spent ramping the learning rate up from 0
WEIGHT_DECAY = 0.0  # AdamW decoupled weight decay
MAX_GRAD_NORM = 1.0  # gradient clipping; GRPO advantages can spike on an all-wrong group
NUM_GENERATIONS = 4  # completions per prompt: the group GRPO normalises rewards within
PROMPTS_PER_STEP = {"cpu": 2, "gpu": 16}[PRESET]  # prompts per micro-batch (x NUM_GENERATIONS)
GRAD_ACCUM = {"cpu": 1, "gpu": 4}[PRESET]  # micro-batches per optimizer step
MAX_COMPLETION_LENGTH = {"cpu": 32, "gpu": 256}[PRESET]  # rollout tokens; longer costs time
TEMPERATURE = 1.0  # rollout sampling temperature: exploration vs. on-policy quality
BETA = 0.0  # KL penalty to the base model (0: no reference model, saves a forward pass)
LOSS_TYPE = "dapo"  # trl loss normalisation: grpo | dapo | dr_grpo | bnpo
SCALE_REWARDS = "group"  # divide advantages by the reward std of: group | batch | none
EPSILON = 0.2  # PPO-style clip range of the probability ratio
USE_LORA = False  # train a LoRA adapter (peft) instead of every weight
LORA_RANK = 16  # adapter rank when USE_LORA
LORA_ALPHA = 32  # adapter scale numerator (the update is scaled by alpha / rank)
MAX_STEPS = 100_000  # an upper bound: the time budget ends training first
FORMAT_WEIGHT = 0.0  # reward for marking the answer with #### or \boxed{} (0: correctness only)
LENGTH_PENALTY = 0.0  # reward lost per completion character beyond 200 (0: off)
SEED_OFFSET = 0  # added to the engine's seed (repeats of a candidate get different seeds)


# ---------------------------------------------------------------- rewards


def _texts(completions: list) -> list[str]:
    # trl hands conversational completions as [{"role": "assistant", "content": ...}].
    return [c[0]["content"] if isinstance(c, list) else str(c) for c in completions]


def correctness_reward(completions: list, answer: list[str], **_: object) -> list[float | None]:
    return list(TASK_REWARD(_texts(completions), answer))


def format_reward(completions: list, **_: object) -> list[float | None]:
    marked = re.compile(r"####\s*[-$]?\s*\d|\\boxed\{")
    return [FORMAT_WEIGHT * bool(marked.search(t)) for t in _texts(completions)]


def length_reward(completions: list, **_: object) -> list[float | None]:
    return [-LENGTH_PENALTY * max(0, len(t) - 200) for t in _texts(completions)]


def lr_multiplier(fraction: float) -> float:
    """The learning rate's multiplier at this fraction of the time budget."""
    if WARMUP_FRACTION > 0 and fraction < WARMUP_FRACTION:
        return fraction / WARMUP_FRACTION
    rest = (fraction - WARMUP_FRACTION) / max(1e-9, 1 - WARMUP_FRACTION)
    if LR_SCHEDULE == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, rest)))
    if LR_SCHEDULE == "linear":
        return max(0.0, 1 - rest)
    return 1.0


TASK_REWARD = prepare.load_function(prepare.Settings.from_env().reward)


def main() -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    t0 = time.time()
    s = prepare.Settings.from_env()
    dev = prepare.device(s)
    seed = harness.seed() + SEED_OFFSET
    torch.manual_seed(seed)
    problems = prepare.train_problems(s)
    data = Dataset.from_list(
        [{"prompt": prepare.messages(p["question"], s), "answer": p["answer"]} for p in problems]
    )
    base = prepare.model_dir(s)
    tok = AutoTokenizer.from_pretrained(base)
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, s.dtype))
    if USE_LORA:
        from peft import LoraConfig, get_peft_model

        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        lora = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=targets)
        model = get_peft_model(model, lora)

    class TimeBudget(TrainerCallback):
        """Starts the budget when training begins; stops when the next step would not fit
        (a step of rollouts takes many seconds on a CPU, and past the grace it is killed)."""

        budget: harness.Budget | None = None
        step_started = 0.0

        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self.budget = harness.start_budget()

        def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self.step_started = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            last_step_s = time.monotonic() - self.step_started
            if self.budget is not None and self.budget.remaining_s < last_step_s:
                control.should_training_stop = True

    clock = TimeBudget()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda _: lr_multiplier(clock.budget.fraction if clock.budget else 0.0)
    )
    batch = PROMPTS_PER_STEP * NUM_GENERATIONS
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="grpo-"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=GRAD_ACCUM,
        num_generations=NUM_GENERATIONS,
        max_completion_length=MAX_COMPLETION_LENGTH,
        temperature=TEMPERATURE,
        beta=BETA,
        loss_type=LOSS_TYPE,
        scale_rewards=SCALE_REWARDS,
        epsilon=EPSILON,
        max_grad_norm=MAX_GRAD_NORM,
        max_steps=MAX_STEPS,
        seed=seed,
        use_cpu=dev == "cpu",
        bf16=dev == "cuda" and s.dtype == "bfloat16",
        use_vllm=dev == "cuda" and importlib.util.find_spec("vllm") is not None,  # colocated
        vllm_mode="colocate",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        gradient_checkpointing=False,  # a 135M model fits: recomputing activations costs ~30%
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[correctness_reward, format_reward, length_reward],
        args=config,
        train_dataset=data,
        processing_class=tok,
        callbacks=[clock],
        optimizers=(optimizer, scheduler),
    )
    trainer.train()
    train_s = clock.budget.elapsed_s if clock.budget else 0.0
    out = prepare.output_dir()
    model.save_pretrained(out)  # peft: adapter_model.safetensors; else model.safetensors
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    harness.print_summary(
        {
            "training_seconds": train_s,
            "total_seconds": time.time() - t0,
            "num_steps": trainer.state.global_step,
            "mean_reward_last": sum(rewards[-5:]) / max(1, len(rewards[-5:])),
        }
    )


if __name__ == "__main__":
    main()
