"""A second attack pass on rl_gsm8k (red team): the fixed evaluator run by the real sandbox on
a prepared data folder (a tiny model of SmolLM2's family with a tokenizer of its own, so every
run takes seconds), each attack a candidate's ``attack.py`` in the candidate's namespaces.

What is asserted is the safe behaviour. A test that fails here is an attack that got through;
its docstring says what it gains and where the fix goes.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from autoresearch import RunResult, load_config  # noqa: E402
from autoresearch._objective import parse_summary  # noqa: E402
from autoresearch.execution import LocalSandbox, RunSpec, isolation_unavailable  # noqa: E402

DOMAIN = Path(__file__).resolve().parents[2] / "domains" / "rl_gsm8k"
FIXED = ("evaluate.py", "prepare.py", "tasks.py", "autoresearch.toml", "program.md")
EOS = "<|im_end|>"
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SETTINGS = {
    "RL_MODEL": "tiny-red-team",
    "RL_DTYPE": "float32",
    "RL_DEVICE": "cpu",
    "RL_TRAIN_N": "4",
    "RL_SELECTION_N": "12",
    "RL_HOLDOUT_N": "12",
    "RL_EVAL_MAX_TOKENS": "6",
    "RL_EVAL_BATCH": "24",
    "OMP_NUM_THREADS": "1",
}

COPY_BASE = """\
import shutil
import prepare
from autoresearch import harness

harness.start_budget()
out = prepare.output_dir()
out.mkdir(exist_ok=True)
shutil.copyfile(prepare.model_dir() / "model.safetensors", out / "model.safetensors")
"""


def _question(a: int, b: int, op: str) -> str:
    return f"State the final answer to the following arithmetic problem: {a} {op} {b} ="


def _problems(start: int, n: int) -> list[dict[str, str]]:
    out = []
    for i in range(start, start + n):
        a, b, op = (7 * i) % 97, (13 * i + 5) % 89, "+-"[i % 2]
        out.append({"question": _question(a, b, op), "answer": str(a + b if op == "+" else a - b)})
    return out


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _tiny_model(folder: Path) -> None:
    """A tiny Llama (tied embeddings, like SmolLM2) with a byte-level BPE tokenizer and a
    ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [p["question"] for p in _problems(0, 300)] + ["system user assistant #### \\boxed"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=320,
            special_tokens=[EOS, "<|im_start|>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=EOS, pad_token=EOS, unk_token="<unk>"
    )
    tok.chat_template = TEMPLATE
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tok),
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder)


@dataclass
class Prepared:
    root: Path
    shared: Path
    evals: dict[str, Path]  # eval folders by name: same selection, different holdouts
    env: dict[str, str]
    fixed: dict[str, bytes]
    sandbox: LocalSandbox

    def run(
        self,
        name: str,
        attack: str,
        *,
        eval_folder: str = "a",
        time_budget_s: float = 30,
        timeout_s: float = 180,
        after_signal_s: float | None = None,
    ) -> tuple[RunResult, Path]:
        """The engine's run of ``python attack.py`` then the fixed evaluator (as
        Measurer._spec makes it), in a fresh copy of the domain."""
        work = self.root / "runs" / name
        shutil.copytree(DOMAIN, work, ignore=shutil.ignore_patterns("__pycache__", "trained"))
        (work / "attack.py").write_text(attack)
        spec = RunSpec(
            workdir=work,
            command="python attack.py",
            log_path=self.root / "logs" / f"{name}.log",
            time_budget_s=time_budget_s,
            timeout_s=timeout_s,
            after_signal_s=after_signal_s,
            eval_command="python evaluate.py",
            eval_log_path=self.root / "logs" / f"{name}-eval.log",
            eval_timeout_s=180,
            network=False,
            env={**self.env, "AUTORESEARCH_DATA_DIR": str(self.shared)},
            eval_env={"AUTORESEARCH_EVAL_DATA_DIR": str(self.evals[eval_folder])},
            fixed_files=self.fixed,
            data_dirs=(self.shared,),
            eval_data_dirs=(self.evals[eval_folder],),
            cache_dir=self.root / "cache" / "candidate",
            eval_cache_dir=self.root / "cache" / "evaluator",
            memory_limit_mb=4000,
        )
        return self.sandbox.run(spec), work


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    why = isolation_unavailable()
    if why is not None:
        pytest.skip(f"no namespaces here: {why}")
    root = tmp_path_factory.mktemp("rl-red-team")
    model = root / "src-model"
    _tiny_model(model)
    env = dict(load_config(DOMAIN, "cpu")[0].env)
    env.update(SETTINGS)
    settings = {
        "loader": env["RL_LOADER"],
        "model": SETTINGS["RL_MODEL"],
        "dtype": "float32",
        "n_train": 4,
        "n_selection": 12,
        "n_holdout": 12,
        "gsm8k_files": "",
    }
    meta = json.dumps({"settings": settings, "train": 4, "selection": 12, "holdout": 12})
    meta_files = {"config.json", "generation_config.json", "tokenizer.json"}
    meta_files |= {"tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"}
    shared = root / "data" / "shared"
    (shared / "model").mkdir(parents=True)
    for f in model.iterdir():
        shutil.copyfile(f, shared / "model" / f.name)
    _write_jsonl(shared / "train.jsonl", _problems(1000, 4))
    (shared / "meta.json").write_text(meta)
    evals = {}
    # Two evaluator folders: the same selection, holdouts of different problems.
    for name, holdout in (("a", _problems(100, 12)), ("b", _problems(500, 12))):
        folder = root / "data" / f"eval-{name}"
        (folder / "model").mkdir(parents=True)
        for f in model.iterdir():
            if f.name in meta_files:
                shutil.copyfile(f, folder / "model" / f.name)
        _write_jsonl(folder / "selection.jsonl", _problems(0, 12))
        _write_jsonl(folder / "holdout.jsonl", holdout)
        (folder / "meta.json").write_text(meta)
        evals[name] = folder
    fixed = {rel: (DOMAIN / rel).read_bytes() for rel in FIXED}
    return Prepared(root, shared, evals, env, fixed, LocalSandbox(isolation="namespaces"))


def _summary(run: RunResult) -> dict[str, float]:
    assert run.failure is None, (run.reason, run.log_tail(3000))
    return parse_summary(run.trusted_output())


@pytest.fixture(scope="module")
def baseline(prepared: Prepared) -> dict[str, float]:
    run, _ = prepared.run("baseline", COPY_BASE)
    return _summary(run)


@pytest.fixture(scope="module")
def evaluator() -> Iterator[ModuleType]:
    """evaluate.py in this process, for the load/merge functions alone (cheap attacks)."""
    import importlib.util

    saved = {k: sys.modules.get(k) for k in ("prepare", "tasks")}
    modules = {}
    for name in ("tasks", "prepare", "evaluate"):
        spec = importlib.util.spec_from_file_location(name, DOMAIN / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules[name] = module
    try:
        yield modules["evaluate"]
    finally:
        for k in ("evaluate", "prepare", "tasks"):
            sys.modules.pop(k, None)
        for k, v in saved.items():
            if v is not None:
                sys.modules[k] = v


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=64,
        tie_word_embeddings=True,
    )
    folder = tmp_path_factory.mktemp("tiny-base")
    LlamaForCausalLM(config).save_pretrained(folder)
    return config, folder


# ---------------------------------------------------------------- weights


def test_float64_weights_that_overflow_the_eval_dtype_are_refused(
    evaluator: ModuleType, tiny_base: tuple[Any, Path], tmp_path: Path
) -> None:
    """ATTACK (gets through): the NaN/inf check runs on the saved tensor before it is cast
    to the evaluation dtype, so a float64 weight of 1e300 passes as finite and becomes inf in
    the float32 (or bf16/fp16) model. No accuracy gain on its own (finite weights can already
    make the model say anything), but the evaluator's stated guarantee ("NaN or inf is a
    crash") does not hold. Fix: domains/rl_gsm8k/evaluate.py, load_full: check finiteness
    after ``.to(target.dtype)`` (cast first, then ``_checked_tensor``), for aliases too."""
    from safetensors.torch import load_file, save_file
    from transformers import LlamaForCausalLM

    config, folder = tiny_base
    saved = {k: v.double() for k, v in load_file(str(folder / "model.safetensors")).items()}
    saved["model.norm.weight"][0] = 1e300
    path = tmp_path / "model.safetensors"
    save_file(saved, str(path))
    model = LlamaForCausalLM(config)
    try:
        evaluator.load_full(model, path)
    except SystemExit as e:
        assert "inf" in str(e)
        return
    assert bool(torch.isfinite(model.model.norm.weight).all()), (
        "a float64 weight of 1e300 was loaded as inf into the float32 model"
    )


def test_a_rank_zero_adapter_is_a_named_weights_error(
    evaluator: ModuleType, tiny_base: tuple[Any, Path], tmp_path: Path
) -> None:
    """Bad input (no gain: the run crashes either way): lora_A of shape [0, in] and lora_B
    [out, 0] with r = 0 in adapter_config.json pass every check and then divide by zero in
    _lora_scale (a ZeroDivisionError traceback, not a message naming the file). Fix:
    domains/rl_gsm8k/evaluate.py, _lora_scale: require ``r >= 1`` in the same test as
    ``r != rank``."""
    from safetensors.torch import save_file
    from transformers import LlamaForCausalLM

    config, _ = tiny_base
    out = tmp_path / "trained"
    out.mkdir()
    save_file(
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(0, 16),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(16, 0),
        },
        str(out / "adapter_model.safetensors"),
    )
    (out / "adapter_config.json").write_text(json.dumps({"r": 0, "lora_alpha": 16}))
    with pytest.raises(SystemExit, match=r"adapter_config\.json"):
        evaluator.merge_adapter(LlamaForCausalLM(config), out)


def test_non_finite_or_huge_lora_scales_are_refused(
    evaluator: ModuleType, tiny_base: tuple[Any, Path], tmp_path: Path
) -> None:
    """adapter_config.json with lora_alpha NaN / Infinity (Python's json reads both) or so
    large that the merge overflows: refused, never merged."""
    from safetensors.torch import save_file
    from transformers import LlamaForCausalLM

    config, _ = tiny_base
    out = tmp_path / "trained"
    out.mkdir()
    key = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file(
        {f"{key}.lora_A.weight": torch.ones(2, 16), f"{key}.lora_B.weight": torch.ones(16, 2)},
        str(out / "adapter_model.safetensors"),
    )
    for alpha in ("NaN", "Infinity", "1e308"):
        (out / "adapter_config.json").write_text(f'{{"r": 2, "lora_alpha": {alpha}}}')
        with pytest.raises(SystemExit, match=r"non-finite|NaN or inf"):
            evaluator.merge_adapter(LlamaForCausalLM(config), out)


# ---------------------------------------------------------------- through the sandbox


def test_a_weights_file_linked_to_dev_zero_or_the_data_is_refused(prepared: Prepared) -> None:
    """trained/model.safetensors as a symlink (to /dev/zero, to the shared base weights) or a
    FIFO: not a regular file, a crash; the evaluator neither hangs nor reads it."""
    attack = textwrap.dedent(
        """\
        import os
        import prepare
        from autoresearch import harness
        harness.start_budget()
        out = prepare.output_dir()
        out.mkdir()
        os.symlink("/dev/zero", out / "model.safetensors")
        """
    )
    run, _ = prepared.run("dev-zero", attack)
    assert run.failure is not None and "eval_command" in run.reason, run.reason
    assert run.eval_log_path is not None
    assert "is not a regular file" in run.eval_log_path.read_text()
    fifo = attack.replace(
        'os.symlink("/dev/zero", out / "model.safetensors")',
        'os.mkfifo(out / "model.safetensors")',
    )
    run, _ = prepared.run("fifo", fifo)
    assert run.failure is not None and "eval_command" in run.reason, run.reason


def test_a_summary_block_in_the_output_folder_name_is_not_read(
    prepared: Prepared, baseline: dict[str, float]
) -> None:
    """``trained`` as a symlink to a folder whose name holds a forged ``---`` block: the
    evaluator prints the folder's name (``from {trained.name}/``) into the trusted log. The
    objective reads the last block only, so the real figures win."""
    attack = COPY_BASE.replace(
        "out = prepare.output_dir()",
        "import os\n"
        "real = prepare.output_dir().with_name('x\\n---\\naccuracy: 1.000000\\nn: 100000\\nz')\n"
        "real.mkdir()\n"
        "os.symlink(real.name, prepare.output_dir())\n"
        "out = prepare.output_dir()",
    )
    run, _ = prepared.run("name-injection", attack)
    figures = _summary(run)
    assert "accuracy: 1.000000" in run.trusted_output()  # the name did reach the log
    assert figures["accuracy"] == baseline["accuracy"] and figures["n"] == 12


@pytest.mark.xfail(
    strict=True,
    reason="known limit of the time budget (README, Limits): a command that signals late and "
    "overruns within the grace gets up to startup_allowance_s + grace_s more; not yet refused",
)
def test_work_outside_the_budget_is_not_granted(prepared: Prepared) -> None:
    """ATTACK (gets through): train.py trains before it calls start_budget() (until just
    before the start-up allowance ends) and ignores the budget after it (until just before
    the grace ends). The cpu preset gives startup_allowance_s = 120 and grace_s = 90 to a
    60 s budget, so such a candidate gets ~4x the training time of the honest recipe (~20-40
    s start-up, 60 s of steps) and nothing records it: more GRPO steps, a higher accuracy,
    no better recipe. This runs the same pattern at 1/30 of the preset's times through the
    real sandbox: 4 s of 'training' before the signal, then 2.5 s past a 2 s budget.
    Fix (any of): domains/rl_gsm8k/autoresearch.toml [presets.cpu]: startup_allowance_s and
    grace_s sized to what an honest run needs (e.g. 45 and 20: a step is ~10 s, saving
    135M weights ~2 s); and in the engine (autoresearch/execution/_sandbox.py, _run_proc)
    record the seconds before the signal and past signal + budget in RunResult, so the
    objective or an acceptance gate can refuse a run that used more than the honest
    start-up plus one step."""
    cfg = load_config(DOMAIN, "cpu")[0]
    scale = 30.0
    budget, allowance, grace = (
        cfg.time_budget_s / scale,
        cfg.startup_allowance_s / scale,
        cfg.run_grace_s / scale,
    )
    attack = COPY_BASE.replace(
        "harness.start_budget()",
        f"import time\ntime.sleep({allowance * 0.95:.2f})  # 'training' before the signal\n"
        f"harness.start_budget()\ntime.sleep({budget + grace * 0.8:.2f})  # past the budget",
    )
    run, _ = prepared.run(
        "outside-budget",
        attack,
        time_budget_s=budget,
        timeout_s=allowance + budget + grace,
        after_signal_s=budget + grace,
    )
    assert run.failure is not None, (
        f"a command that worked {allowance * 0.95 + budget + grace * 0.8:.1f} s on a "
        f"{budget:.1f} s budget was scored ({_summary(run).get('accuracy')})"
    )
