"""LLM: asks any OpenAI-compatible chat endpoint (OpenAI, vLLM, a llama.cpp server,
Ollama) for one edit, applies it to the current best's files, and retries a malformed answer
with the precise error. Transport faults are retried with backoff; what each proposal cost
is put on the Candidate, and spending stops before a budget would be exceeded.

The API key is read from the environment variable the config names, handed to the client
and nowhere else: it is not stored on the proposer, logged, or put in any error message.
"""

from __future__ import annotations

import logging
import os
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoresearch._errors import BudgetExhausted, ConfigError, ProposalError
from autoresearch._layout import Layout
from autoresearch._types import Candidate, Context, ExperimentRecord
from autoresearch.proposers._base import (
    Proposer,
    ProposerOptions,
    ProposerSettings,
    require_program,
)
from autoresearch.proposers._prompt import (
    candidate_schema,
    register_secret,
    render_context,
    retry_message,
    system_prompt,
)
from autoresearch.proposers.llm._client import (
    MAX_ERROR_CHARS,
    LLMError,
    Spend,
    error_message,
    retry_after_s,
    safe_url,
    status_hint,
)
from autoresearch.proposers.llm._config import LLMConfig
from autoresearch.proposers.llm._edits import EditFormatError, apply_blocks, parse_answer
from autoresearch.proposers.llm._local_model import LocalModelServer, server_command
from autoresearch.proposers.llm._pricing import Price, price_for

if TYPE_CHECKING:
    from autoresearch._config import ResearchConfig

log = logging.getLogger("autoresearch.llm")

# A request that could not be given at least this many output tokens within the budget is
# not sent: the answer would be cut off and the money wasted.
MIN_OUTPUT_TOKENS = 256
# Conservative prompt-size estimate before the server counts: few tokenizers average under
# three characters per token on code and English.
CHARS_PER_TOKEN_UPPER = 3
TOKENS_PER_MESSAGE = 8
# Usage estimate when a server returns none.
CHARS_PER_TOKEN_TYPICAL = 4
BACKOFF_JITTER = 0.25
PLACEHOLDER_KEY = "unused"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class LLM(Proposer):
    """Proposes one edit per call through the official ``openai`` client.

    ``max_tokens`` / ``max_cost_usd`` are run-wide limits: a request is sent only if it fits
    in what is left, its output cap lowered to fit; else :class:`BudgetExhausted`.
    """

    name = "llm"
    Config = LLMConfig

    def __init__(
        self,
        config: LLMConfig | None = None,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str | None = None,
        local_model: str | None = None,
        max_tokens: int | None = None,
        max_cost_usd: float | None = None,
        server: LocalModelServer | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``config`` holds the ``[proposer.llm]`` settings; ``model``/``base_url``/``api_key_env``
        override its fields. ``local_model`` (``smollm2``, a GGUF path, ``vllm:NAME``) is
        started on loopback by ``start``; the rest is checked here, before a run begins."""
        self.config = config = config or LLMConfig()
        self.base_url = base_url or config.base_url
        self._local_spec = local_model
        if local_model is not None:
            server_command(local_model, 0)  # a missing model or llama.cpp fails now
        self.model = str(model or config.model or "")
        if not self.model and local_model is None and server is None:
            raise ConfigError(
                "llm proposer: no model. Pass --model NAME (or --local-model smollm2), or set "
                "[proposer.llm] model in autoresearch.toml."
            )
        self.max_tokens = max_tokens
        self.max_cost_usd = max_cost_usd
        self._server = server
        self._sleep = sleep
        self._spent = Spend()
        self._dropped_params: set[str] = set()
        self._last_cap = config.max_output_tokens
        self._env_name = api_key_env or config.api_key_env
        self._client: Any = None
        self.price: Price | None = None
        local = local_model is not None or server is not None
        host = urllib.parse.urlparse(self.base_url).hostname if self.base_url else None
        self._loopback = local or host in _LOOPBACK_HOSTS
        if not self._loopback and self.base_url is None and not os.environ.get(self._env_name):
            raise ConfigError(
                f"llm proposer: the environment variable {self._env_name} is not set. Export "
                "the API key there, name another variable with [proposer.llm] api_key_env, or "
                "use --base-url for a server that needs no key."
            )
        if server is not None:
            self.base_url, self.model = server.base_url, server.model
        if not local or server is not None:
            self._connect()
        self.check_budget(max_cost_usd, max_tokens)

    @classmethod
    def from_config(cls, config: ResearchConfig, domain_dir: Path, options: ProposerOptions) -> LLM:
        return cls(
            config.proposer.llm,
            model=options.model,
            base_url=options.base_url,
            api_key_env=options.api_key_env,
            local_model=options.local_model,
        )

    @property
    def json_mode(self) -> bool:
        if self.config.json_schema is not None:
            return self.config.json_schema
        return self._server is not None and self._server.is_llama_cpp

    def check_budget(self, max_cost_usd: float | None, max_tokens: int | None) -> None:
        local = self._local_spec is not None or self._server is not None
        if max_cost_usd is not None and not local and price_for(self.model, self.config) is None:
            raise ConfigError(
                f"llm proposer: no price is known for model {self.model!r}, so "
                "--max-cost-usd cannot be enforced. Set [proposer.llm] price_in_per_mtok_usd "
                "and price_out_per_mtok_usd in autoresearch.toml (USD per million tokens)."
            )

    def check_files(self, config: ResearchConfig, read: Callable[[str], str | None]) -> None:
        require_program(config, read, "llm")

    def start(self, settings: ProposerSettings) -> None:
        # Run-wide limits: a limit given to the constructor stays when the run sets none.
        if settings.max_tokens is not None:
            self.max_tokens = settings.max_tokens
        if settings.max_cost_usd is not None:
            self.max_cost_usd = settings.max_cost_usd
        if self._local_spec is not None and self._server is None:
            log_path = Layout(settings.domain_dir).local_model_log
            self._server = LocalModelServer(self._local_spec, log_path).start()
            self.base_url, self.model = self._server.base_url, self._server.model
            self._connect()

    def _connect(self) -> None:
        import openai  # Imported here: `import autoresearch` must not import openai.

        self.price = price_for(self.model, self.config)
        key = None if self._loopback else os.environ.get(self._env_name)
        if key:
            register_secret(key)
        http_client = None
        if self._loopback:
            # A proxy from the environment must not swallow loopback traffic.
            http_client = openai.DefaultHttpxClient(trust_env=False)
        self._client = openai.OpenAI(
            # A local server gets a placeholder: the real key must not leave for loopback.
            api_key=key or PLACEHOLDER_KEY,
            base_url=self.base_url,
            timeout=self.config.request_timeout_s,
            max_retries=0,  # Retries are ours: bounded, logged, Retry-After honoured.
            http_client=http_client,
        )

    # -- the Proposer contract ---------------------------------------------------------

    def restore(self, history: Sequence[ExperimentRecord]) -> None:
        # Budgets are run-wide: a resumed run counts what it spent before.
        self._spent.prompt_tokens += sum(r.tokens for r in history)
        self._spent.cost_usd += sum(r.cost_usd for r in history)

    def propose(self, context: Context) -> Candidate:
        base = [
            {"role": "system", "content": system_prompt(self.json_mode)},
            {
                "role": "user",
                "content": render_context(context, recent=self.config.history_recent),
            },
        ]
        messages = list(base)
        this = Spend()
        errors: list[str] = []
        attempts = 1 + self.config.max_format_retries
        for attempt in range(1, attempts + 1):
            text = self._complete(messages, this, context.files)
            try:
                parsed = parse_answer(text)
                edits = apply_blocks(
                    context.files,
                    parsed.blocks,
                    editable_globs=context.editable_globs,
                    whole_file_max_lines=self.config.whole_file_max_lines,
                )
            except EditFormatError as e:
                if this.cut_off:
                    e = EditFormatError(
                        [
                            "your answer was cut off: it reached the output token limit "
                            f"({self._last_cap} tokens). Send a shorter answer: fewer or "
                            "smaller blocks, no explanation outside the fields",
                            *e.problems,
                        ]
                    )
                errors.append(str(e))
                log.info("answer %d/%d could not be applied:\n%s", attempt, attempts, e)
                # Only the last answer and its error go back: the retry prompt stays bounded.
                messages = [
                    *base,
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": retry_message(str(e))},
                ]
                continue
            return Candidate(
                description=parsed.description,
                edits=edits,
                hypothesis=parsed.hypothesis,
                meta=self._meta(this, attempt, errors),
                tokens=this.tokens,
                cost_usd=this.cost_usd,
            )
        raise ProposalError(
            f"the model's answer could not be applied after {attempts} attempts; last error:\n"
            f"{errors[-1]}",
            this.tokens,
            this.cost_usd,
        )

    def close(self) -> None:
        try:
            if self._client is not None:
                self._client.close()
        finally:
            if self._server is not None:
                self._server.stop()

    # -- budgets -----------------------------------------------------------------------

    @property
    def spent_tokens(self) -> int:
        return self._spent.tokens

    @property
    def spent_cost_usd(self) -> float:
        return self._spent.cost_usd

    def estimate_next_cost(self, context: Context) -> tuple[int, float]:
        """An upper estimate of one request for ``context``: (tokens, USD)."""
        chars = len(system_prompt(self.json_mode)) + len(
            render_context(context, recent=self.config.history_recent)
        )
        prompt = chars // CHARS_PER_TOKEN_UPPER + 2 * TOKENS_PER_MESSAGE
        out = self.config.max_output_tokens
        cost = self.price.cost_usd(prompt, out) if self.price else 0.0
        return prompt + out, cost

    def _output_cap(self, messages: list[dict[str, str]], this: Spend) -> int:
        prompt = sum(
            len(m["content"]) // CHARS_PER_TOKEN_UPPER + TOKENS_PER_MESSAGE for m in messages
        )
        cap = self.config.max_output_tokens
        context_tokens = self._server.context_tokens if self._server is not None else None
        if context_tokens is not None:
            # The server rejects prompt + max_tokens beyond its context window.
            room = context_tokens - prompt
            if room < min(MIN_OUTPUT_TOKENS, cap):
                raise LLMError(
                    f"the prompt (~{prompt} tokens) leaves no room for an answer in the local "
                    f"model's {context_tokens}-token context; shorten program.md or the "
                    "editable files, or lower [proposer.llm] history_recent",
                    this.tokens,
                    this.cost_usd,
                )
            cap = min(cap, room)
        limits = []
        if self.max_tokens is not None:
            left = self.max_tokens - self._spent.tokens - prompt
            limits.append(f"--max-tokens {self.max_tokens} (spent {self._spent.tokens})")
            cap = min(cap, left)
        if self.max_cost_usd is not None and self.price is not None:
            left_usd = self.max_cost_usd - self._spent.cost_usd - self.price.cost_usd(prompt, 0)
            limits.append(f"--max-cost-usd {self.max_cost_usd} (spent ${self._spent.cost_usd:.4f})")
            if self.price.out_per_mtok_usd > 0:
                cap = min(cap, int(left_usd * 1e6 / self.price.out_per_mtok_usd))
            elif left_usd < 0:
                cap = 0
        if cap < min(MIN_OUTPUT_TOKENS, self.config.max_output_tokens):
            raise BudgetExhausted(
                f"budget reached: the next request (~{prompt} prompt tokens) would exceed "
                + " and ".join(limits),
                this.tokens,
                this.cost_usd,
            )
        return cap

    # -- one chat completion, with bounded retries ------------------------------------

    def _complete(
        self, messages: list[dict[str, str]], this: Spend, files: Mapping[str, str]
    ) -> str:
        import openai

        retries = self.config.max_retries
        attempt = 0
        while True:
            self._last_cap = self._output_cap(messages, this)
            kwargs = self._request(messages, self._last_cap, files)
            wait_s: float | None = None
            try:
                response = self._client.chat.completions.create(**kwargs)
            except openai.APIConnectionError as e:
                kind = "timed out" if isinstance(e, openai.APITimeoutError) else "connection failed"
                problem = f"request to {self._where()} {kind}"
                if self._server is not None and not self._server.running:
                    raise LLMError(
                        f"{problem}: the local model server has exited. {self._server.log_hint()}",
                        this.tokens,
                        this.cost_usd,
                    ) from None
            except openai.APIStatusError as e:
                problem = f"{self._where()} answered HTTP {e.status_code}: {error_message(e)}"
                # Not counted as an attempt: at most one adaptation per known parameter.
                if e.status_code == 400 and self._drop_unsupported(error_message(e)):
                    continue
                if e.status_code in (429, 503):  # both may say when to come back
                    wait_s = retry_after_s(e.response.headers)
                if e.status_code < 500 and e.status_code not in (408, 409, 429):
                    raise LLMError(
                        status_hint(e.status_code, problem), this.tokens, this.cost_usd
                    ) from None
            else:
                return self._account(response, messages, this)
            if attempt >= retries:
                raise LLMError(
                    f"{problem} (gave up after {retries + 1} attempts)", this.tokens, this.cost_usd
                )
            backoff = self.config.retry_backoff_s * 2**attempt
            backoff *= 1 + BACKOFF_JITTER * random.random()
            wait = min(wait_s if wait_s is not None else backoff, self.config.max_retry_wait_s)
            attempt += 1
            log.warning("%s; retry %d/%d in %.1f s", problem, attempt, retries, wait)
            self._sleep(wait)

    def _request(
        self, messages: list[dict[str, str]], cap: int, files: Mapping[str, str]
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages}
        cap_name = "max_completion_tokens" if "max_tokens" in self._dropped_params else "max_tokens"
        kwargs[cap_name] = cap
        if "temperature" not in self._dropped_params:
            kwargs["temperature"] = self.config.temperature
        if self.json_mode and "response_format" not in self._dropped_params:
            schema = candidate_schema(files)
            if self._server is not None and self._server.is_llama_cpp:
                # llama-cpp-python takes the schema on a json_object format.
                kwargs["response_format"] = {"type": "json_object", "schema": schema}
            else:
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "candidate", "schema": schema},
                }
        return kwargs

    def _drop_unsupported(self, message: str) -> bool:
        """Adapt once to a server that rejects a parameter (reasoning models reject
        max_tokens and temperature; some servers reject response_format)."""
        lowered = message.lower()
        if not any(w in lowered for w in ("support", "unrecognized", "unknown", "extra")):
            return False
        for param in ("max_tokens", "temperature", "response_format"):
            if param in lowered and param not in self._dropped_params:
                self._dropped_params.add(param)
                log.warning("the server rejected %r; retrying without it", param)
                return True
        return False

    def _account(self, response: Any, messages: list[dict[str, str]], this: Spend) -> str:
        text = ""
        this.cut_off = False
        if response.choices:
            text = response.choices[0].message.content or ""
            this.cut_off = response.choices[0].finish_reason == "length"
        usage = response.usage
        if usage is not None:
            prompt, completion = int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
        else:
            prompt = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN_TYPICAL
            completion = len(text) // CHARS_PER_TOKEN_TYPICAL
            this.estimated = self._spent.estimated = True
        cost = self.price.cost_usd(prompt, completion) if self.price else 0.0
        for spend in (this, self._spent):
            spend.prompt_tokens += prompt
            spend.completion_tokens += completion
            spend.cost_usd += cost
            spend.requests += 1
        return text

    def _where(self) -> str:
        return f"model {self.model!r} at {safe_url(self.base_url) or 'the OpenAI API'}"

    def _meta(self, this: Spend, attempts: int, errors: list[str]) -> dict[str, object]:
        meta: dict[str, object] = {
            "model": self.model,
            "attempts": attempts,
            "requests": this.requests,
            "prompt_tokens": this.prompt_tokens,
            "completion_tokens": this.completion_tokens,
        }
        if this.estimated:
            meta["tokens_estimated"] = True
        if errors:
            meta["format_errors"] = [e[:MAX_ERROR_CHARS] for e in errors]
        return meta
