"""The trusted evaluator of rl_gsm8k (fixed; the engine runs it as `eval_command`).

    python evaluate.py

Accuracy on the selection problems (which decide keeps) and on the holdout problems (recorded
as holdout, never used to decide, never printed: the log reaches the proposer on failures).

Nothing of train.py runs here, in this process or any other: the architecture (config.json),
the tokenizer, the chat template, the system prompt and the generation settings all come from
the harness (the evaluator's own data folder and autoresearch.toml's [env]); from what train.py
saved only tensors are read, with safetensors (no pickle), and they must match the trusted
architecture key for key and shape for shape (a mismatch is a crash). A LoRA adapter is merged
here, W += (alpha / r) * B @ A, into the base weights of the prepared (checksummed) model.
Greedy decoding, batched: vLLM when it is installed and a GPU is there, else HF generate.
Answers are checked by the task's check function (a fixed file: RL_CHECK).

Figures: ``accuracy`` (lenient extraction: \\boxed{} -> #### -> last number), its standard
error ``accuracy_se`` and ``n``; ``accuracy_strict`` (only a \\boxed{} or #### answer counts).
The holdout's go to rl_metrics.json beside them, for the objective.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import prepare
import torch

from autoresearch.harness import print_summary

METRICS_FILE = "rl_metrics.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
# What an adapter's name of a weight looks like in peft's files.
PEFT_PREFIX = "base_model.model."
LORA_PARTS = (".lora_A.weight", ".lora_B.weight")
# Largest adapter_config.json read (it holds two numbers that matter).
MAX_ADAPTER_CONFIG_BYTES = 1 << 20


class WeightsError(SystemExit):
    """What train.py saved does not fit the harness's architecture."""


def accuracy_figures(correct: Sequence[bool]) -> tuple[float, float, int]:
    """(accuracy, its binomial standard error, n)."""
    n = len(correct)
    if n == 0:
        return 0.0, 0.0, 0
    p = sum(correct) / n
    return p, math.sqrt(p * (1 - p) / n), n


# ---------------------------------------------------------------- weights


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.is_symlink() or not path.is_file():
        raise WeightsError(f"{path} is not a regular file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a safetensors file ({e})") from None


def _expected(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights by name, tied aliases dropped (one name per storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in model.state_dict(keep_vars=True).items():
        ptr = t.data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            out[name] = t
    return out


def _checked_tensor(name: str, got: torch.Tensor, shape: torch.Size, where: Path) -> torch.Tensor:
    if tuple(got.shape) != tuple(shape):
        raise WeightsError(
            f"{where}: {name} has shape {tuple(got.shape)}, the architecture's is {tuple(shape)}"
        )
    if not got.is_floating_point():
        raise WeightsError(f"{where}: {name} is {got.dtype}, not a floating-point tensor")
    if not bool(torch.isfinite(got).all()):
        raise WeightsError(f"{where}: {name} holds NaN or inf")
    return got


def _as(got: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``got`` in ``like``'s dtype (a non-float tensor is left for the check to refuse)."""
    return got.to(like.dtype) if got.is_floating_point() else got


def load_full(model: torch.nn.Module, path: Path) -> None:
    """Every weight from ``path``: exactly the architecture's names (tied aliases may be
    absent or equal) and shapes."""
    saved = _read_safetensors(path)
    expected = _expected(model)
    all_names = dict(model.state_dict(keep_vars=True))
    unknown = sorted(set(saved) - set(all_names))
    missing = sorted(set(expected) - set(saved))
    if unknown or missing:
        raise WeightsError(
            f"{path}: the weights do not match the architecture: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unknown)} unknown "
            f"(e.g. {unknown[:3]})"
        )
    with torch.no_grad():
        for name, target in expected.items():
            # Cast first, then check: a float64 1e300 is finite until it becomes inf here.
            target.copy_(_checked_tensor(name, _as(saved[name], target), target.shape, path))
        for name in set(saved) - set(expected):  # a tied alias: must hold the same values
            alias = all_names[name]
            got = _checked_tensor(name, _as(saved[name], alias), alias.shape, path)
            if not torch.equal(got, alias):
                raise WeightsError(f"{path}: {name} is tied to another weight but differs from it")


def _lora_scale(config_path: Path, rank: int) -> float:
    """alpha / r (or alpha / sqrt(r) with rsLoRA) from peft's adapter_config.json: numbers
    only; every other field is ignored, the architecture is the harness's."""
    if config_path.is_symlink() or not config_path.is_file():
        raise WeightsError(f"{config_path}: missing (peft writes it beside the adapter)")
    if config_path.stat().st_size > MAX_ADAPTER_CONFIG_BYTES:
        raise WeightsError(f"{config_path}: too large for an adapter config")
    try:
        cfg = json.loads(config_path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{config_path}: not JSON ({e})") from None
    r, alpha = cfg.get("r"), cfg.get("lora_alpha")
    if (
        type(r) is not int
        or r < 1
        or r != rank
        or not isinstance(alpha, (int, float))
        or isinstance(alpha, bool)
    ):
        raise WeightsError(
            f"{config_path}: r must be {rank} (the adapter's rank) and lora_alpha a number"
        )
    if cfg.get("use_dora") or cfg.get("modules_to_save"):
        raise WeightsError(
            f"{config_path}: only plain LoRA adapters are merged (no DoRA, no modules_to_save)"
        )
    scale = float(alpha) / (math.sqrt(r) if cfg.get("use_rslora") else r)
    if not math.isfinite(scale):
        raise WeightsError(f"{config_path}: lora_alpha gives a non-finite scale")
    return scale


def merge_adapter(model: torch.nn.Module, folder: Path) -> int:
    """Merge peft's LoRA adapter into the base weights; returns the number of merged weights.
    Every tensor must be a lora_A/lora_B pair of a linear weight of the architecture."""
    path = folder / ADAPTER_WEIGHTS
    saved = _read_safetensors(path)
    weights = dict(model.named_parameters())
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in saved.items():
        part = next((p for p in LORA_PARTS if key.endswith(p)), None)
        if part is None or not key.startswith(PEFT_PREFIX):
            raise WeightsError(f"{path}: {key} is not a LoRA weight (lora_A/lora_B only)")
        target = key[len(PEFT_PREFIX) : -len(part)] + ".weight"
        if target not in weights or weights[target].dim() != 2:
            raise WeightsError(f"{path}: {key} adapts {target}, not a linear weight of the model")
        pairs.setdefault(target, {})[part] = tensor
    if not pairs:
        raise WeightsError(f"{path}: holds no LoRA weights")
    ranks = set()
    for target, pair in pairs.items():
        if len(pair) != 2:
            raise WeightsError(f"{path}: {target} has only one of lora_A/lora_B")
        a, b = pair[LORA_PARTS[0]], pair[LORA_PARTS[1]]
        out_f, in_f = weights[target].shape
        r = a.shape[0] if a.dim() == 2 else -1
        _checked_tensor(f"{target} lora_A", a, torch.Size([r, in_f]), path)
        _checked_tensor(f"{target} lora_B", b, torch.Size([out_f, r]), path)
        ranks.add(r)
    if len(ranks) != 1:
        raise WeightsError(f"{path}: adapters of different ranks {sorted(ranks)}")
    scale = _lora_scale(folder / ADAPTER_CONFIG, ranks.pop())
    with torch.no_grad():
        for target, pair in pairs.items():
            w = weights[target]
            delta = pair[LORA_PARTS[1]].float() @ pair[LORA_PARTS[0]].float()
            w.add_((scale * delta).to(w.dtype))
            if not bool(torch.isfinite(w).all()):
                raise WeightsError(f"{path}: merging {target} gave NaN or inf")
    return len(pairs)


def build_model(s: prepare.Settings, trained: Path) -> tuple[Any, str]:
    """The harness's architecture with the trained weights; (model, what was loaded)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    meta = prepare.eval_dir(s) / prepare.MODEL_DIR
    config = AutoConfig.from_pretrained(meta)
    dtype = getattr(torch, s.dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    base = prepare.train_dir(s) / prepare.MODEL_DIR / prepare.WEIGHTS_FILE  # checksummed
    load_full(model, base)
    if (trained / prepare.WEIGHTS_FILE).exists():
        load_full(model, trained / prepare.WEIGHTS_FILE)
        what = "full weights"
    elif (trained / ADAPTER_WEIGHTS).exists():
        what = f"a LoRA adapter of {merge_adapter(model, trained)} weights, merged"
    else:
        raise WeightsError(
            f"no {prepare.WEIGHTS_FILE} or {ADAPTER_WEIGHTS} in {trained}: train.py must save "
            "what it trained there (model.save_pretrained(prepare.output_dir()))"
        )
    return model.eval(), what


# ---------------------------------------------------------------- generation


def tokenizer(s: prepare.Settings) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(prepare.eval_dir(s) / prepare.MODEL_DIR)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def prompts(tok: Any, questions: Sequence[str], s: prepare.Settings) -> list[str]:
    return [
        tok.apply_chat_template(prepare.messages(q, s), add_generation_prompt=True, tokenize=False)
        for q in questions
    ]


@torch.no_grad()
def generate_hf(
    model: Any, tok: Any, texts: Sequence[str], s: prepare.Settings, dev: str
) -> tuple[list[str], int]:
    """Greedy completions in batches of RL_EVAL_BATCH, and the tokens generated."""
    model.to(dev)
    out, n_tokens = [], 0
    stop = {t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None}
    for i in range(0, len(texts), s.eval_batch):
        enc = tok(
            list(texts[i : i + s.eval_batch]),
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        ).to(dev)
        gen = model.generate(
            **enc,
            max_new_tokens=s.eval_max_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )[:, enc["input_ids"].shape[1] :]
        for row in gen.tolist():
            ended = next((j for j, t in enumerate(row) if t in stop), len(row))
            n_tokens += min(ended + 1, len(row))
            out.append(tok.decode(row[:ended], skip_special_tokens=True))
    return out, n_tokens


def vllm_usable(dev: str) -> bool:
    return dev == "cuda" and importlib.util.find_spec("vllm") is not None


def generate_vllm(
    model: Any, tok: Any, texts: Sequence[str], s: prepare.Settings
) -> tuple[list[str], int]:
    """The same greedy completions through vLLM, from a folder this process writes: the
    harness's config and tokenizer, the weights just built."""
    from vllm import LLM, SamplingParams

    folder = Path(tempfile.mkdtemp(prefix="rl-eval-model-"))
    try:
        meta = prepare.eval_dir(s) / prepare.MODEL_DIR
        for f in meta.iterdir():
            shutil.copyfile(f, folder / f.name)
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in _expected(model).items()},
            str(folder / prepare.WEIGHTS_FILE),
        )
        llm = LLM(
            model=str(folder),
            dtype=s.dtype,
            seed=0,
            enforce_eager=True,
            gpu_memory_utilization=float(os.environ.get("RL_VLLM_GPU_MEMORY", "0.5")),
        )
        params = SamplingParams(temperature=0.0, max_tokens=s.eval_max_tokens)
        results = llm.generate(list(texts), params, use_tqdm=False)
        return [r.outputs[0].text for r in results], sum(
            len(r.outputs[0].token_ids) for r in results
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def score(
    completions: Sequence[str], answers: Sequence[str], check: Callable[..., Any]
) -> dict[str, float | int]:
    lenient = [bool(check(c, a, strict=False)) for c, a in zip(completions, answers, strict=True)]
    strict = [bool(check(c, a, strict=True)) for c, a in zip(completions, answers, strict=True)]
    acc, se, n = accuracy_figures(lenient)
    acc_strict, se_strict, _ = accuracy_figures(strict)
    return {
        "accuracy": acc,
        "accuracy_se": se,
        "n": n,
        "accuracy_strict": acc_strict,
        "accuracy_strict_se": se_strict,
    }


def main() -> None:
    t0 = time.time()
    s = prepare.Settings.from_env()
    dev = prepare.device(s)
    check = prepare.load_function(s.check, trusted=True)
    folder = prepare.eval_dir(s)
    selection = prepare.read_jsonl(folder / "selection.jsonl")
    holdout = prepare.read_jsonl(folder / "holdout.jsonl")
    trained = prepare.output_dir().resolve()
    model, what = build_model(s, trained)
    tok = tokenizer(s)
    engine = "vllm" if vllm_usable(dev) else "hf"

    def generate(split: list[dict[str, str]]) -> tuple[list[str], int, float]:
        texts = prompts(tok, [p["question"] for p in split], s)
        t_gen = time.time()
        if engine == "vllm":
            completions, n_tokens = generate_vllm(model, tok, texts, s)
        else:
            completions, n_tokens = generate_hf(model, tok, texts, s, dev)
        return completions, n_tokens, time.time() - t_gen

    # The selection and the holdout are generated and timed apart: every printed figure
    # (the proposer sees them) comes from the selection alone, so a model that answers the
    # holdout's questions longer or shorter tells nothing.
    completions, n_tokens, gen_s = generate(selection)
    sel = score(completions, [p["answer"] for p in selection], check)
    eval_s = time.time() - t0
    hold: dict[str, float | int] = {}
    if holdout:
        h_completions, h_tokens, _ = generate(holdout)
        hold = score(h_completions, [p["answer"] for p in holdout], check)
        hold["mean_completion_tokens"] = h_tokens / len(holdout)
    figures: dict[str, float | int] = {
        **sel,
        "eval_seconds": eval_s,
        "eval_tokens_per_s": n_tokens / max(gen_s, 1e-9),
        "mean_completion_tokens": n_tokens / max(len(selection), 1),
    }
    # Written before the summary is printed: the objective checks the two agree.
    Path(METRICS_FILE).write_text(
        json.dumps({"selection": sel, "holdout": hold, "engine": engine}, indent=1), "utf-8"
    )
    print(f"model: the harness's architecture with {what} from {trained.name!r}")
    print(f"generation: {engine}, greedy, max {s.eval_max_tokens} new tokens, batch {s.eval_batch}")
    # No problem, answer or completion is printed: this log reaches the proposer on failures.
    print(f"selection: {len(selection)} problems; holdout: {len(holdout)} (figures not shown)")
    print_summary(figures)


if __name__ == "__main__":
    main()
