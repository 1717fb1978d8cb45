"""Fixed harness of gpt_pretrain: data, tokenizer, cache, and the API train.py uses.

Candidates cannot edit this file (the harness hash-checks it before every run). The evaluator
is evaluate.py; train.py gets training tokens only: nothing here hands out validation tokens.

    python prepare.py     build the data (the engine runs it once, as prepare_command)

Under the engine, prepare_command writes the training side (train.bin, meta.json,
token_bytes.npy, tokenizer.json) into $AUTORESEARCH_DATA_DIR, the only data folder train.py's
sandbox holds, and val.bin (with its own meta.json and token_bytes.npy) into
$AUTORESEARCH_EVAL_DATA_DIR, which only the evaluator sees. By hand, without those variables,
everything goes into one cache folder under harness.cache_dir(), built on first use.

Settings come from the environment, set by the [env] table of autoresearch.toml's presets;
the time budget and the seed come from the engine (autoresearch.harness).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoresearch import harness

# Bump when the cache layout or the split changes: old caches are then ignored, not misread.
CACHE_VERSION = 2
# A document goes to validation when its content hash falls in this share (percent).
VAL_PERCENT = 5
CHECKPOINT_FORMAT = 1
BYTE_VOCAB_SIZE = 257  # 256 byte values + the document separator
ENCODE_CHUNK_DOCS = 10_000  # BPE encodes this many documents per call (bounds memory)
BPE_TRAIN_BYTES = 100_000_000  # BPE merges are learned from this much training text at most
# Folders the engine's prepare step fills: the training side, and the evaluator's own.
DATA_VAR = "AUTORESEARCH_DATA_DIR"
EVAL_DATA_VAR = "AUTORESEARCH_EVAL_DATA_DIR"
# Settings that change the tokens (the rest only change how they are used).
DATA_SETTINGS = ("dataset", "dataset_files", "text_field", "tokenizer", "max_bytes")
# What the evaluator needs beside val.bin: written to its folder too, so it trusts no file of
# the training side.
EVAL_FILES = ("meta.json", "token_bytes.npy")


@dataclass(frozen=True)
class Settings:
    dataset: str = "stdlib"  # stdlib | a .parquet/.jsonl[.gz]/.txt file or folder | hf:owner/name
    dataset_files: str = ""  # hf: comma-separated files of the dataset repo to fetch
    text_field: str = "text"  # column / key holding a document's text
    tokenizer: str = "byte"  # "byte" or "bpe"
    vocab_size: int = 4096  # bpe only
    max_bytes: int = 0  # cap on the corpus read (0: all of it)
    seq_len: int = 256  # context length of training and evaluation
    eval_tokens: int = 32768  # validation tokens scored (a fixed slice)
    eval_batch: int = 16  # sequences per evaluation forward pass
    device: str = "cpu"  # cpu, cuda or mps

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            dataset=harness.env_str("GPT_DATASET", cls.dataset),
            dataset_files=harness.env_str("GPT_DATASET_FILES", cls.dataset_files),
            text_field=harness.env_str("GPT_TEXT_FIELD", cls.text_field),
            tokenizer=harness.env_str("GPT_TOKENIZER", cls.tokenizer),
            vocab_size=harness.env_int("GPT_VOCAB_SIZE", cls.vocab_size),
            max_bytes=harness.env_int("GPT_MAX_BYTES", cls.max_bytes),
            seq_len=harness.env_int("GPT_SEQ_LEN", cls.seq_len),
            eval_tokens=harness.env_int("GPT_EVAL_TOKENS", cls.eval_tokens),
            eval_batch=harness.env_int("GPT_EVAL_BATCH", cls.eval_batch),
            device=harness.env_str("GPT_DEVICE", cls.device),
        )


# ---------------------------------------------------------------- documents


def _read_file(path: Path, text_field: str) -> Iterator[str]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            raise SystemExit(
                f"{path}: no column {text_field!r} (columns: {pf.schema_arrow.names}); "
                "set GPT_TEXT_FIELD"
            )
        for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
            yield from (t for t in batch.column(0).to_pylist() if t)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    text = json.loads(line).get(text_field)
                    if not isinstance(text, str):
                        raise SystemExit(
                            f"{path}:{lineno}: no string field {text_field!r}; set GPT_TEXT_FIELD"
                        )
                    yield text
    else:
        yield path.read_text(encoding="utf-8", errors="replace")


def _hf_files(s: Settings) -> list[Path]:
    repo = s.dataset.removeprefix("hf:")
    names = [f.strip() for f in s.dataset_files.split(",") if f.strip()]
    if not names:
        raise SystemExit(
            f"GPT_DATASET={s.dataset}: set GPT_DATASET_FILES to the repo's files "
            "(e.g. sample/10BT/000_00000.parquet)"
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise SystemExit(
            "GPT_DATASET names a Hugging Face dataset: pip install huggingface_hub"
        ) from None
    out = []
    for name in names:
        try:
            local = hf_hub_download(
                repo, name, repo_type="dataset", cache_dir=harness.cache_dir() / "hf"
            )
            out.append(Path(local))
        except Exception as e:
            raise SystemExit(
                f"could not fetch {name} of dataset {repo} ({e}). This needs the network; "
                "offline, point GPT_DATASET at local .parquet/.jsonl files."
            ) from None
    return out


def _source_files(s: Settings) -> list[Path]:
    if s.dataset == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    if s.dataset.startswith("hf:"):
        return _hf_files(s)
    path = Path(s.dataset).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    if path.is_file():
        return [path]
    raise SystemExit(
        f"GPT_DATASET={s.dataset}: no such file or folder (or use 'stdlib', 'hf:owner/name')"
    )


def iter_documents(s: Settings) -> Iterator[str]:
    """The corpus as documents, in a fixed order, up to ``max_bytes``."""
    total = 0
    for path in _source_files(s):
        for text in _read_file(path, s.text_field):
            yield text
            total += len(text.encode("utf-8"))
            if s.max_bytes and total >= s.max_bytes:
                return


def is_validation(text: str) -> bool:
    """By content hash, so the split does not depend on order and duplicates stay on one side."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < VAL_PERCENT


# ---------------------------------------------------------------- tokenizers


def _bytes_to_unicode() -> dict[int, str]:
    # The printable stand-in for each byte used by byte-level BPE (the GPT-2 table).
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _head(docs: list[str], max_bytes: int) -> Iterator[str]:
    total = 0
    for doc in docs:
        if total >= max_bytes:
            return
        total += len(doc)
        yield doc


class Tokenizer:
    """Byte-level (ids 0-255 are bytes, 256 separates documents) or a byte-level BPE."""

    def __init__(self, bpe: Any = None) -> None:
        self.bpe = bpe
        if bpe is None:
            self.vocab_size = BYTE_VOCAB_SIZE
            self.bos_id = 256
            raw = [bytes([b]) for b in range(256)] + [b""]
        else:
            self.vocab_size = bpe.get_vocab_size()
            self.bos_id = bpe.token_to_id("<|bos|>")
            to_byte = {c: b for b, c in _bytes_to_unicode().items()}
            raw = []
            for i in range(self.vocab_size):
                piece = bpe.id_to_token(i)
                # A BPE token may hold part of a UTF-8 character: count its raw bytes, not the
                # bytes of its decoded text (upstream #384).
                raw.append(b"" if i == self.bos_id else bytes(to_byte[c] for c in piece))
        self.raw_bytes = raw
        self.token_bytes = np.array([len(r) for r in raw], dtype=np.int32)

    @classmethod
    def train_bpe(cls, docs: list[str], vocab_size: int) -> Tokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<|bos|>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(_head(docs, BPE_TRAIN_BYTES), trainer)
        # A literal "<|bos|>" in a document is text: encode its bytes, not the separator (which
        # holds no bytes and would drop them from val_bpb).
        tok.encode_special_tokens = True
        return cls(tok)

    def encode_docs(self, docs: list[str]) -> np.ndarray:
        """Each document preceded by the separator, concatenated."""
        dtype = np.uint16 if self.vocab_size <= 2**16 else np.uint32
        parts = []
        if self.bpe is None:
            for d in docs:
                parts += [
                    np.array([self.bos_id], dtype),
                    np.frombuffer(d.encode(), np.uint8).astype(dtype),
                ]
        else:
            for i in range(0, len(docs), ENCODE_CHUNK_DOCS):
                chunk = docs[i : i + ENCODE_CHUNK_DOCS]
                for enc in self.bpe.encode_batch(chunk, add_special_tokens=False):
                    parts += [np.array([self.bos_id], dtype), np.array(enc.ids, dtype)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)


# ---------------------------------------------------------------- the cache


def cache_dir(s: Settings) -> Path:
    data = data_settings(s)
    if s.dataset == "stdlib":
        data["python"] = sys.version.split()[0]
    elif not s.dataset.startswith("hf:"):
        data["files"] = [
            (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in _source_files(s)
        ]
    data["version"] = CACHE_VERSION
    key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return harness.cache_dir() / "gpt_pretrain" / f"{s.tokenizer}-{key}"


def data_settings(s: Settings) -> dict[str, Any]:
    """The settings the tokens depend on."""
    data: dict[str, Any] = {k: v for k, v in asdict(s).items() if k in DATA_SETTINGS}
    if s.tokenizer == "bpe":
        data["vocab_size"] = s.vocab_size
    return data


def build_cache(s: Settings) -> Path:
    """Tokenize the corpus once: train.bin, val.bin, token_bytes.npy, meta.json, tokenizer.json."""
    final = cache_dir(s)
    if (final / "meta.json").exists():
        return final
    check_tokenizer(s)
    # Build beside the final folder and rename: concurrent runs never see half a cache.
    tmp = final.with_name(f"{final.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    tokenize(s, tmp)
    try:
        tmp.rename(final)
    except OSError:  # another run finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_data(s: Settings, shared: Path, eval_dir: Path) -> None:
    """The engine's prepare step: the training side into ``shared``, val.bin into ``eval_dir``
    (the engine builds both in fresh folders, checksums them and mounts them read-only)."""
    tokenize(s, shared, eval_dir)
    for name in EVAL_FILES:  # separate mounts: a copy, not a rename
        shutil.copyfile(shared / name, eval_dir / name)


def check_tokenizer(s: Settings) -> None:
    if s.tokenizer not in ("byte", "bpe"):
        raise SystemExit(f"GPT_TOKENIZER={s.tokenizer}: use 'byte' or 'bpe'")


def tokenize(s: Settings, out: Path, val_out: Path | None = None) -> dict[str, Any]:
    """Split and tokenize the corpus into ``out``: train.bin, val.bin (into ``val_out`` if
    given), token_bytes.npy, meta.json and (bpe) tokenizer.json. Returns the meta."""
    check_tokenizer(s)
    t0 = time.time()
    train_docs: list[str] = []
    val_docs: list[str] = []
    for doc in iter_documents(s):
        (val_docs if is_validation(doc) else train_docs).append(doc)
    if not train_docs or not val_docs:
        raise SystemExit(
            f"GPT_DATASET={s.dataset}: {len(train_docs)} training and {len(val_docs)} "
            "validation documents; the corpus needs more documents"
        )
    tok = Tokenizer.train_bpe(train_docs, s.vocab_size) if s.tokenizer == "bpe" else Tokenizer()
    val_out = val_out or out
    for folder in (out, val_out):
        folder.mkdir(parents=True, exist_ok=True)
    if tok.bpe is not None:
        tok.bpe.save(str(out / "tokenizer.json"))
    train, val = tok.encode_docs(train_docs), tok.encode_docs(val_docs)
    train.tofile(out / "train.bin")
    val.tofile(val_out / "val.bin")
    np.save(out / "token_bytes.npy", tok.token_bytes)
    meta = {
        "vocab_size": tok.vocab_size,
        "bos_id": tok.bos_id,
        "dtype": train.dtype.name,
        "train_tokens": int(train.size),
        "val_tokens": int(val.size),
        "train_docs": len(train_docs),
        "val_docs": len(val_docs),
        "settings": asdict(s),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(
        f"data: tokenized {s.dataset} in {time.time() - t0:.1f}s "
        f"({meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens)",
        flush=True,
    )
    return meta


def prepared_dir(var: str, s: Settings) -> Path | None:
    """The folder the engine's prepare step filled (``var`` names it), checked to hold tokens
    of these settings; None when the variable is unset (a run by hand)."""
    raw = os.environ.get(var)
    if not raw:
        return None
    directory = Path(raw)
    if not (directory / "meta.json").is_file():
        raise SystemExit(
            f"{var}={raw}: no meta.json there. The engine's prepare step "
            '(prepare_command = "python prepare.py") writes it; unset the variable to '
            "build a cache by hand."
        )
    made_with = {k: _meta(directory)["settings"].get(k) for k in data_settings(s)}
    if made_with != data_settings(s):
        raise SystemExit(
            f"{var}={raw}: tokenized with {made_with}, but this run's settings are "
            f"{data_settings(s)}; the engine prepares the data again when the settings change"
        )
    return directory


def train_dir(s: Settings) -> Path:
    """Where train.py's tokens are: the engine's training-side folder, else the cache."""
    return prepared_dir(DATA_VAR, s) or build_cache(s)


def _meta(directory: Path) -> dict:
    return json.loads((directory / "meta.json").read_text())


def _train_tokens(directory: Path) -> np.ndarray:
    return np.memmap(directory / "train.bin", dtype=_meta(directory)["dtype"], mode="r")


# ---------------------------------------------------------------- the API train.py uses


def device(s: Settings | None = None) -> torch.device:
    """The preset's device, or a clear stop when this machine lacks it."""
    name = (s or Settings.from_env()).device
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"the preset needs a CUDA GPU, but torch {torch.__version__} sees none. "
            "Use --preset cpu here, or install a CUDA build of torch."
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise SystemExit(
            "the preset needs Apple's MPS, which is not available here. Use --preset cpu."
        )
    if name not in ("cpu", "cuda", "mps"):
        raise SystemExit(f"GPT_DEVICE={name}: use cpu, cuda or mps")
    return torch.device(name)


def vocab_size(s: Settings | None = None) -> int:
    return int(_meta(train_dir(s or Settings.from_env()))["vocab_size"])


def seq_len(s: Settings | None = None) -> int:
    return (s or Settings.from_env()).seq_len


class TrainLoader:
    """Endless random windows of the training tokens: ``next(loader)`` gives (x, y) int64 tensors of
    shape (batch_size, seq_len), y shifted by one."""

    def __init__(self, batch_size: int, s: Settings | None = None) -> None:
        self.s = s or Settings.from_env()
        self.batch_size = batch_size
        self.tokens = _train_tokens(train_dir(self.s))
        if self.tokens.size <= self.s.seq_len + 1:
            raise SystemExit(f"only {self.tokens.size} training tokens: the corpus is too small")
        self.rng = np.random.default_rng(harness.seed())
        self.device = device(self.s)

    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.s.seq_len
        starts = self.rng.integers(0, self.tokens.size - t - 1, self.batch_size)
        rows = torch.from_numpy(
            np.stack([self.tokens[i : i + t + 1] for i in starts]).astype(np.int64)
        )
        if self.device.type == "cuda":
            rows = rows.pin_memory().to(self.device, non_blocking=True)
        else:
            rows = rows.to(self.device)
        return rows[:, :-1], rows[:, 1:]


def peak_flops(dev: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s that MFU is measured against: GPT_PEAK_TFLOPS if set, else a matmul measured here
    once (cached), so MFU means the same on any machine."""
    peak_tflops = harness.env_float("GPT_PEAK_TFLOPS", 0.0)
    if peak_tflops > 0:
        return peak_tflops * 1e12
    name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"{dev.type}-{torch.get_num_threads()}t"
    )
    path = harness.cache_dir() / "gpt_pretrain" / "peak_flops.json"
    key = f"{name}/{dtype}"
    known = json.loads(path.read_text()) if path.exists() else {}
    if key not in known:
        known[key] = measure_matmul_flops(dev, dtype)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    return float(known[key])


def measure_matmul_flops(dev: torch.device, dtype: torch.dtype, n: int = 0, reps: int = 8) -> float:
    """Best FLOP/s of a square matmul (n=1024 on CPU, 8192 on accelerators)."""
    n = n or (1024 if dev.type == "cpu" else 8192)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    best = math.inf
    for _ in range(reps + 1):
        _sync(dev)
        t0 = time.perf_counter()
        a @ b
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def peak_memory_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    if dev.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def checkpoint_path() -> Path:
    return Path(harness.env_str("GPT_CHECKPOINT", "checkpoint.pt"))


def save_checkpoint(model: torch.nn.Module, model_config: dict, stats: dict[str, float]) -> Path:
    """Weights plus plain data only, so the evaluator can load it with weights_only=True.
    Written before any evaluation, so a failing evaluation never loses the run (upstream #7)."""
    json.dumps(model_config)  # raises early if the config is not plain data
    path = checkpoint_path()
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "state_dict": state,
            "model_config": model_config,
            "stats": {k: float(v) for k, v in stats.items()},
        },
        tmp,
    )
    os.replace(tmp, path)
    return path


def main() -> None:
    s = Settings.from_env()
    shared, eval_dir = os.environ.get(DATA_VAR), os.environ.get(EVAL_DATA_VAR)
    if bool(shared) != bool(eval_dir):
        raise SystemExit(f"set both {DATA_VAR} and {EVAL_DATA_VAR}, or neither")
    if shared and eval_dir:
        write_data(s, Path(shared), Path(eval_dir))
        print(f"data ready: training side in {shared}, validation in {eval_dir}")
    else:
        print(f"cache ready: {build_cache(s)}")


if __name__ == "__main__":
    main()
