"""The LLM proposer: any OpenAI-compatible endpoint, a local model server, SEARCH/REPLACE or
whole-file answers, prices and spend."""

from autoresearch._registry import publish as _publish
from autoresearch.proposers.llm._config import LLMConfig
from autoresearch.proposers.llm._edit_match import EditFormatError
from autoresearch.proposers.llm._local_model import LocalModelServer
from autoresearch.proposers.llm._proposer import LLM

__all__ = [
    "LLM",
    "EditFormatError",
    "LLMConfig",
    "LocalModelServer",
]

_publish(globals(), __all__, "autoresearch.proposers.llm")
