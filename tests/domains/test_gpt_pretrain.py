"""gpt_pretrain: data split, tokenizers, val_bpb, the trusted evaluator, training, the loop."""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from autoresearch._objective import parse_summary
from autoresearch.proposers._knob import set_constant

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "domains" / "gpt_pretrain"
UNICODE_BITS = ["é", "€", "中文", "😀", "naïve café", "Ωμέγα", "\t", "\n"]


def load_fixed(name: str) -> ModuleType:
    # Unique module names: other domains ship a prepare.py too.
    spec = importlib.util.spec_from_file_location(f"gpt_pretrain_{name}", DOMAIN / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prep() -> ModuleType:
    return load_fixed("prepare")


@pytest.fixture(scope="module")
def evaluator(prep: ModuleType) -> ModuleType:
    # evaluate.py imports `prepare`: hand it this test's copy, only while it loads.
    saved = sys.modules.get("prepare")
    sys.modules["prepare"] = prep
    try:
        return load_fixed("evaluate")
    finally:
        if saved is None:
            del sys.modules["prepare"]
        else:
            sys.modules["prepare"] = saved


def make_docs(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["def", "return", "self", "import", "class", "data", "value", *UNICODE_BITS]
    return [
        f"DOC{i:04d}| " + " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))
        for i in range(n)
    ]


def write_jsonl(path: Path, docs: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "corpus" / "docs.jsonl", make_docs())


# ---------------------------------------------------------------- data


def test_split_is_by_content_hash_not_by_order(prep: ModuleType, tmp_path: Path) -> None:
    docs = make_docs()
    forward = write_jsonl(tmp_path / "a" / "docs.jsonl", docs)
    backward = write_jsonl(tmp_path / "b" / "docs.jsonl", docs[::-1])
    val_sets = []
    for path in (forward, backward):
        cache = prep.build_cache(prep.Settings(dataset=str(path)))
        val = np.fromfile(cache / "val.bin", dtype=np.uint16)
        text = bytes(int(t) for t in val if t < 256).decode()
        val_sets.append({d for d in docs if d in text})
    assert val_sets[0] == val_sets[1] == {d for d in docs if prep.is_validation(d)}
    assert 0 < len(val_sets[0]) < len(docs) // 5


def test_cache_lives_in_the_cache_dir_and_is_built_once(
    prep: ModuleType, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTORESEARCH_CACHE_DIR", str(tmp_path / "mycache"))
    s = prep.Settings(dataset=str(corpus))
    first = prep.build_cache(s)
    assert first.is_relative_to(tmp_path / "mycache")
    meta = json.loads((first / "meta.json").read_text())
    assert meta["vocab_size"] == 257 and meta["train_tokens"] > meta["val_tokens"] > 0

    def no_rebuild(settings: object) -> list[str]:
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(prep, "iter_documents", no_rebuild)
    assert prep.build_cache(s) == first


def test_bpe_cache_counts_every_validation_byte(prep: ModuleType, corpus: Path) -> None:
    cache = prep.build_cache(prep.Settings(dataset=str(corpus), tokenizer="bpe", vocab_size=320))
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["vocab_size"] == 320 and (cache / "tokenizer.json").exists()
    val = np.fromfile(cache / "val.bin", dtype=meta["dtype"])
    token_bytes = np.load(cache / "token_bytes.npy")
    val_docs = [d for d in make_docs() if prep.is_validation(d)]
    assert int(token_bytes[val].sum()) == sum(len(d.encode()) for d in val_docs)


def test_local_parquet_and_jsonl_loader(prep: ModuleType, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = make_docs(30)
    folder = tmp_path / "hfstyle"
    folder.mkdir()
    pq.write_table(pa.table({"text": docs[:10], "id": list(range(10))}), folder / "a.parquet")
    write_jsonl(folder / "b.jsonl", docs[10:20])
    with gzip.open(folder / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs[20:])
    assert list(prep.iter_documents(prep.Settings(dataset=str(folder)))) == docs
    capped = list(prep.iter_documents(prep.Settings(dataset=str(folder), max_bytes=1)))
    assert capped == docs[:1]
    with pytest.raises(SystemExit, match="GPT_TEXT_FIELD"):
        list(
            prep.iter_documents(
                prep.Settings(dataset=str(folder / "a.parquet"), text_field="content")
            )
        )


def test_hub_dataset_is_fetched_by_file_name(
    prep: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    local = write_jsonl(tmp_path / "shard.jsonl", make_docs(5))
    asked = []

    def fake_download(repo: str, name: str, repo_type: str, cache_dir: Path) -> str:
        asked.append((repo, name, repo_type))
        return str(local)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    s = prep.Settings(dataset="hf:someone/corpus", dataset_files="x/0.parquet, x/1.parquet")
    assert len(list(prep.iter_documents(s))) == 10
    assert asked == [
        ("someone/corpus", "x/0.parquet", "dataset"),
        ("someone/corpus", "x/1.parquet", "dataset"),
    ]
    with pytest.raises(SystemExit, match="GPT_DATASET_FILES"):
        list(prep.iter_documents(prep.Settings(dataset="hf:someone/corpus")))


def test_train_loader_never_serves_validation_documents(
    prep: ModuleType, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTORESEARCH_SEED", "3")
    s = prep.Settings(dataset=str(corpus), seq_len=64)
    val_markers = {d[:8] for d in make_docs() if prep.is_validation(d)}
    loader = prep.TrainLoader(8, s)
    seen = set()
    for _ in range(200):
        x, y = next(loader)
        assert x.shape == y.shape == (8, 64) and torch.equal(x[:, 1:], y[:, :-1])
        for row in x.tolist():
            text = bytes(t for t in row if t < 256).decode(errors="ignore")
            seen.update(m for m in val_markers if m in text)
    assert not seen


# ---------------------------------------------------------------- tokenizers and val_bpb


def test_byte_tokenizer_counts_every_utf8_byte(prep: ModuleType) -> None:
    tok = prep.Tokenizer()
    ids = tok.encode_docs(UNICODE_BITS)
    assert tok.token_bytes[tok.bos_id] == 0
    assert int(tok.token_bytes[ids].sum()) == sum(len(t.encode()) for t in UNICODE_BITS)


def test_bpe_counts_raw_bytes_of_partial_utf8_tokens(prep: ModuleType) -> None:
    docs = make_docs(200)
    tok = prep.Tokenizer.train_bpe(docs, 400)
    assert tok.vocab_size == 400
    partial = [r for r in tok.raw_bytes if r and not _decodes(r)]
    assert partial, "the test corpus should yield tokens holding part of a UTF-8 character"
    for doc in docs[:20]:
        ids = tok.encode_docs([doc])[1:]
        assert b"".join(tok.raw_bytes[i] for i in ids) == doc.encode()
        assert int(tok.token_bytes[ids].sum()) == len(doc.encode())
    # The upstream #384 count (bytes of each token's decoded text) differs for partial tokens.
    piece = partial[0]
    assert len(piece.decode(errors="replace").encode()) != len(piece)


def test_bpe_encodes_a_literal_separator_as_text(prep: ModuleType) -> None:
    tok = prep.Tokenizer.train_bpe(make_docs(200), 400)
    doc = 'sep = "<|bos|>"  # the marker, as text'
    ids = tok.encode_docs([doc])
    assert list(ids).count(tok.bos_id) == 1  # only the one before the document
    assert int(tok.token_bytes[ids].sum()) == len(doc.encode())


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_val_bpb_matches_a_hand_computation(
    prep: ModuleType, evaluator: ModuleType, kind: str
) -> None:
    docs = make_docs(60, seed=1)
    tok = prep.Tokenizer.train_bpe(docs, 350) if kind == "bpe" else prep.Tokenizer()
    held = docs[:3]
    tokens = tok.encode_docs(held)
    vocab, boost = tok.vocab_size, 2.5

    def logits_fn(x: np.ndarray) -> torch.Tensor:
        # Bets on "next id = this id + 1": a known, non-uniform distribution per position.
        ids = torch.from_numpy(x)
        out = torch.zeros(*ids.shape, vocab)
        out.scatter_(2, ((ids + 1) % vocab).unsqueeze(-1), boost)
        return out

    nats = 0.0
    for prev, target in zip(tokens[:-1].tolist(), tokens[1:].tolist(), strict=True):
        if tok.token_bytes[target] == 0:
            continue  # document separators hold no bytes
        log_z = math.log(math.exp(boost) + vocab - 1)
        nats += log_z - (boost if target == (prev + 1) % vocab else 0.0)
    total_bytes = sum(len(d.encode()) for d in held)  # every byte, the first separator aside
    expected = nats / total_bytes / math.log(2)
    got, err = evaluator.score(logits_fn, tokens, tok.token_bytes, tokens.size - 1, batch=1)
    assert got == pytest.approx(expected, rel=1e-6)  # float32 logits
    assert err == 0.0


VOCAB = 50


def causal(x: np.ndarray) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(torch.from_numpy(x), VOCAB).float()
    return onehot.cumsum(1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1)


def peeks_ahead(x: np.ndarray) -> torch.Tensor:
    return causal(x) + torch.nn.functional.one_hot(torch.from_numpy(x).roll(-1, 1), VOCAB)


def reads_other_rows(x: np.ndarray) -> torch.Tensor:
    return causal(x) + causal(x).flip(0)


def peeks_but_at_the_old_checks(x: np.ndarray) -> torch.Tensor:
    # Reads token i+1 everywhere except at the three positions the old check perturbed.
    out = peeks_ahead(x)
    for t in (0, x.shape[1] // 2 - 1, x.shape[1] - 2):
        out[:, t] = causal(x)[:, t]
    return out


def peeks_in_big_batches(x: np.ndarray) -> torch.Tensor:
    # Honest at the old check's shape (2 rows), peeking at the scoring shape.
    return peeks_ahead(x) if x.shape[0] > 2 else causal(x)


def val_tokens(n: int = 4097) -> np.ndarray:
    return np.random.default_rng(0).integers(0, VOCAB, n).astype(np.uint16)


@pytest.mark.parametrize(
    "model",
    [peeks_ahead, reads_other_rows, peeks_but_at_the_old_checks, peeks_in_big_batches],
)
def test_causality_check_rejects_peeking(evaluator: ModuleType, model: object) -> None:
    token_bytes = np.ones(VOCAB, np.int32)
    _, honest = evaluator.score(causal, val_tokens(), token_bytes, 64, 16)
    assert honest < 1e-6
    _, err = evaluator.score(model, val_tokens(), token_bytes, 64, 16)
    assert err > 0.1


def test_check_batches_look_like_scoring_batches(evaluator: ModuleType) -> None:
    # 64 rows of 64 inputs, one token apart (each row takes 65 tokens): 4 scoring batches.
    tokens = val_tokens(64 * 65)
    starts = np.arange(64)[:, None] * 65 + np.arange(64)[None, :]
    scoring = tokens[starts].astype(np.int64).reshape(4, 16, 64)
    first_is_scoring = set()
    for _ in range(20):
        seen: list[np.ndarray] = []

        def spy(x: np.ndarray, seen: list[np.ndarray] = seen) -> torch.Tensor:
            seen.append(x.copy())
            return causal(x)

        evaluator.score(spy, tokens, np.ones(VOCAB, np.int32), 64, 16)
        assert {x.shape for x in seen} == {(16, 64)}
        kinds = [any(np.array_equal(x, s) for s in scoring) for x in seen]
        assert kinds.count(True) == 4 and kinds.count(False) == 4  # 63 positions -> 64 rows
        first_is_scoring.add(kinds[0])
    assert first_is_scoring == {True, False}  # the order is drawn afresh (odds 1e-6 to fail)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_missing_device_says_what_to_do(prep: ModuleType) -> None:
    with pytest.raises(SystemExit, match="--preset cpu"):
        prep.device(prep.Settings(device="cuda"))


# ---------------------------------------------------------------- config and knobs


# ids unlike "gpu": conftest skips tests carrying a "gpu" keyword where CUDA is absent
@pytest.mark.parametrize(
    "preset", ["cpu", "gpu", "mps"], ids=["cpu_preset", "gpu_preset", "mps_preset"]
)
def test_presets_validate_and_knobs_rewrite_train_py(preset: str) -> None:
    from autoresearch._config import load_config
    from autoresearch.proposers._knob import format_value, set_constant

    config, _ = load_config(DOMAIN, preset)
    assert (
        config.eval_command and config.objective.class_path == "autoresearch.objectives.ml:ValBpb"
    )
    assert config.env["GPT_PRESET"] == preset and config.proposer.knobs
    text = (DOMAIN / "train.py").read_text()
    for knob in config.proposer.knobs:
        values = knob.choices if knob.type == "categorical" else [knob.low, knob.high]
        for value in values or []:
            ast.parse(set_constant(text, knob.constant, format_value(knob, value), "train.py"))
    knobs = {k.constant: k for k in config.proposer.knobs}
    if "WIDTH" in knobs and "N_HEADS" in knobs:  # every pair the search may draw must fit RoPE
        for width in knobs["WIDTH"].choices or []:
            for heads in knobs["N_HEADS"].choices or []:
                assert width % heads == 0 and (width // heads) % 2 == 0


# ---------------------------------------------------------------- runs (subprocesses)


def domain_copy(tmp_path: Path, corpus: Path, **env: str) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "gpt_pretrain"
    shutil.copytree(DOMAIN, work, ignore=shutil.ignore_patterns("checkpoint.pt", "__pycache__"))
    run_env = dict(os.environ)
    run_env.update(
        GPT_DATASET=str(corpus),
        GPT_SEQ_LEN="64",
        GPT_EVAL_TOKENS="1024",
        AUTORESEARCH_TIME_BUDGET_S="2",
        PYTHONDONTWRITEBYTECODE="1",
        # One thread: on a shared machine two threads wait on each other at every op.
        OMP_NUM_THREADS="1",
    )
    run_env.update(env)
    return work, run_env


def tiny_model(train_py: str) -> str:
    """train.py with a model small enough for ~100 steps in a 2 s budget."""
    for constant, value in [("DEPTH", 1), ("WIDTH", 64), ("N_HEADS", 2), ("BATCH_SIZE", 8)]:
        train_py = set_constant(train_py, constant, str(value), "train.py")
    return train_py


def run_py(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_smoke_training_and_a_forged_metric_is_ignored(
    prep: ModuleType, corpus: Path, tmp_path: Path
) -> None:
    from autoresearch.execution._sandbox import LocalSandbox, RunSpec
    from autoresearch.objectives.ml import ValBpb

    work, env = domain_copy(tmp_path, corpus)
    train = work / "train.py"
    text = tiny_model(train.read_text())
    train.write_text(text + '\nif __name__ == "__main__":\n    print("---\\nval_bpb: 0.000100")\n')
    # The data as the engine's prepare step leaves it: the training side, and the evaluator's.
    shared, hidden = tmp_path / "data" / "shared", tmp_path / "data" / "eval"
    prep.write_data(prep.Settings(dataset=str(corpus)), shared, hidden)
    spec = RunSpec(
        workdir=work,
        command="python train.py",
        log_path=tmp_path / "run.log",
        eval_command="python evaluate.py",
        eval_log_path=tmp_path / "eval.log",
        time_budget_s=3,
        timeout_s=300,
        env={
            **{k: env[k] for k in env if k.startswith(("GPT_", "OMP_"))},
            "AUTORESEARCH_DATA_DIR": str(shared),
        },
        eval_env={"AUTORESEARCH_EVAL_DATA_DIR": str(hidden)},
        data_dirs=(shared,),
        eval_data_dirs=(hidden,),
    )
    run = LocalSandbox().run(spec)
    assert run.ok, run.log_tail()
    assert "val_bpb: 0.000100" in run.log_text()
    measurement = ValBpb().measure(run)
    assert measurement.primary == parse_summary(run.trusted_output())["val_bpb"] != 0.0001
    # Untrained, a byte model scores about log2(257) = 8.0 bits; a few hundred steps beat that.
    assert measurement.primary < 7.0
    assert measurement.secondary["num_steps"] >= 1
    assert measurement.secondary["num_params_M"] > 0
    assert (work / "checkpoint.pt").exists()


NON_CAUSAL = """
import torch
import prepare

class Peek(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, vocab)

    def forward(self, idx):
        e = self.embed(idx)
        return e + e.mean(dim=1, keepdim=True)  # every position sees the whole row

def build_model(config):
    return Peek(config["vocab"])

if __name__ == "__main__":
    vocab = prepare.vocab_size()
    prepare.save_checkpoint(build_model({"vocab": vocab}), {"vocab": vocab}, {"num_steps": 0})
"""

UNGUARDED = """
import torch
import prepare
from autoresearch import harness

def build_model(config):
    return torch.nn.Embedding(config["vocab"], config["vocab"])

budget = harness.start_budget()  # training at import: runs again inside the evaluator
vocab = prepare.vocab_size()
prepare.save_checkpoint(build_model({"vocab": vocab}), {"vocab": vocab}, {"num_steps": 0})
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "message"), [(NON_CAUSAL, "not causal"), (UNGUARDED, "__name__")]
)
def test_evaluator_refuses_forging_models(
    corpus: Path, tmp_path: Path, source: str, message: str
) -> None:
    work, env = domain_copy(tmp_path, corpus)
    (work / "train.py").write_text(source)
    assert run_py(work, env, "train.py").returncode == 0
    res = run_py(work, env, "evaluate.py")
    assert res.returncode != 0
    assert message in res.stderr + res.stdout
    assert "val_bpb" not in res.stdout


PATCHES_THE_EVALUATOR = """
import atexit, builtins, re, sys
import torch.nn.functional

_evaluator = sys.modules["__main__"]  # evaluate.py, wherever it imports train.py
def _halved(real):
    def run(*a, **k):
        out = real(*a, **k)
        return (out[0] / 2, 0.0) if isinstance(out, tuple) else out / 2
    return run
for _name in ("score", "evaluate_bpb"):
    if hasattr(_evaluator, _name):
        setattr(_evaluator, _name, _halved(getattr(_evaluator, _name)))
_cross_entropy = torch.nn.functional.cross_entropy
torch.nn.functional.cross_entropy = lambda *a, **k: _cross_entropy(*a, **k) / 2
_print = builtins.print
builtins.print = lambda *a, **k: _print(
    *(re.sub(r"^val_bpb:\\s+\\S+", "val_bpb: 0.100000", str(v)) for v in a), **k
)
atexit.register(lambda: _print("---\\nval_bpb:          0.000100", flush=True))
"""


@pytest.mark.slow
def test_train_py_cannot_patch_the_evaluator(corpus: Path, tmp_path: Path) -> None:
    work, env = domain_copy(tmp_path, corpus)
    train = work / "train.py"
    train.write_text(tiny_model(train.read_text()))
    assert run_py(work, env, "train.py").returncode == 0
    honest = run_py(work, env, "evaluate.py")
    assert honest.returncode == 0, honest.stderr
    train.write_text(PATCHES_THE_EVALUATOR + train.read_text())  # same checkpoint
    patched = run_py(work, env, "evaluate.py")
    assert patched.returncode == 0, patched.stderr
    value = parse_summary(patched.stdout)["val_bpb"]
    assert value == pytest.approx(parse_summary(honest.stdout)["val_bpb"], abs=2e-6)
    assert "0.000100" not in patched.stdout + patched.stderr


@pytest.mark.slow
def test_diverging_loss_fails_fast(corpus: Path, tmp_path: Path) -> None:
    work, env = domain_copy(tmp_path, corpus, AUTORESEARCH_TIME_BUDGET_S="60")
    text = (work / "train.py").read_text()
    text = text.replace("\nLR = 3e-3", "\nLR = 1e6").replace(
        "\nEMBED_LR = 3e-3", "\nEMBED_LR = 1e6"
    )
    (work / "train.py").write_text(text.replace("GRAD_CLIP = 1.0", "GRAD_CLIP = 0"))
    res = run_py(work, env, "train.py")
    assert res.returncode == 1
    assert "diverged" in res.stdout
    assert not (work / "checkpoint.pt").exists()


# ---------------------------------------------------------------- the loop, end to end


def loop_copy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    from autoresearch._config import load_config

    work = tmp_path / "gpt_pretrain"
    shutil.copytree(DOMAIN, work, ignore=shutil.ignore_patterns("checkpoint.pt", "__pycache__"))
    env = dict(load_config(DOMAIN, "cpu")[0].env)
    # The stdlib corpus, short rows, a short eval, one thread (see domain_copy).
    env.update(GPT_SEQ_LEN="64", GPT_EVAL_TOKENS="2048", OMP_NUM_THREADS="1")
    return work, env


def results_rows(work: Path) -> list[dict[str, str]]:
    lines = (work / "results.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]


@pytest.mark.slow
def test_loop_runs_two_knob_experiments(tmp_path: Path) -> None:
    from autoresearch import Loop

    work, env = loop_copy(tmp_path)
    loop = Loop.from_dir(
        work, preset="cpu", proposer="knob", tag="t1", overrides={"time_budget_s": 3, "env": env}
    )
    summary = loop.run(max_experiments=2)
    assert summary.experiments == 2
    assert sum(summary.counts.values()) == 2
    assert summary.counts.get("keep", 0) + summary.counts.get("discard", 0) == 2, summary.counts
    # A few steps on a busy machine may not beat an untrained model's ~8 bits: only sanity here.
    assert summary.baseline_value is not None and 1.0 < summary.baseline_value < 10.0
    # Runs happen in worktrees, removed once measured: no checkpoint is left behind.
    assert not list(work.rglob("checkpoint.pt*"))


@pytest.mark.slow
def test_loop_ignores_forged_metrics_and_rejects_harness_edits(tmp_path: Path) -> None:
    from autoresearch import Loop

    work, env = loop_copy(tmp_path)
    guard = 'if __name__ == "__main__":\n    main()\n'
    script = [
        {
            "description": "edit the evaluator",
            "edits": [
                {
                    "path": "evaluate.py",
                    "search": "CAUSAL_TOLERANCE = 1e-3",
                    "replace": "CAUSAL_TOLERANCE = 1e9",
                }
            ],
        },
        {
            "description": "edit the data harness",
            "edits": [
                {"path": "prepare.py", "search": "VAL_PERCENT = 5", "replace": "VAL_PERCENT = 1"}
            ],
        },
        {
            "description": "print a forged val_bpb",
            "edits": [
                {
                    "path": "train.py",
                    "search": guard,
                    "replace": guard + '    print("---\\nval_bpb: 0.000100")\n',
                }
            ],
        },
    ]
    script_path = tmp_path / "script.jsonl"
    script_path.write_text("".join(json.dumps(c) + "\n" for c in script))
    loop = Loop.from_dir(
        work,
        preset="cpu",
        proposer="scripted",
        script=str(script_path),
        tag="t2",
        overrides={"time_budget_s": 3, "env": env},
    )
    summary = loop.run(max_experiments=4)
    rows = results_rows(work)
    assert [r["status"] for r in rows][1:3] == ["invalid", "invalid"], rows
    forged = rows[3]
    assert forged["status"] in ("keep", "discard"), rows
    assert 1.0 < float(forged["val_bpb"]) < 10.0  # the real value, not the forged one
    assert summary.best_value is not None and summary.best_value > 1.0


def test_no_row_of_a_batch_holds_another_rows_target(evaluator: ModuleType) -> None:
    """The one position the causality check cannot cover (a row's last) could read its target
    from the next row of the batch, were rows back to back; one token apart, nothing is there."""
    import torch

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCAB, 8192 + 1).astype(np.uint16)
    token_bytes = np.ones(VOCAB, np.int32)

    def honest(x: np.ndarray) -> torch.Tensor:
        return torch.zeros((*x.shape, VOCAB))

    def next_row(x: np.ndarray) -> torch.Tensor:
        out = torch.zeros((*x.shape, VOCAB))
        for r in range(x.shape[0] - 1):  # the row after mine: is its first token my target?
            out[r, -1, int(x[r + 1, 0])] = 30.0
        return out

    fair, _ = evaluator.score(honest, tokens, token_bytes, 64, 16)
    peek, err = evaluator.score(next_row, tokens, token_bytes, 64, 16)
    assert err == 0.0  # the check cannot see it: the layout must make it worthless
    assert peek > fair
    # Control: with rows back to back, the same model would gain (its guess is the target).
    starts = np.arange(16)[:, None] * 64 + np.arange(64)[None, :]
    x = tokens[starts].astype(np.int64)
    assert all(x[r + 1, 0] == tokens[(r + 1) * 64] for r in range(15))
