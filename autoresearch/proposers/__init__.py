"""Proposers: who suggests the next candidate. One module each; the LLM proposer is ``llm/``.

``PROPOSERS`` maps a config or CLI name to its class; installed packages add their own through
the ``autoresearch.proposers`` entry-point group.
"""

from autoresearch._registry import PROPOSERS_GROUP as _GROUP
from autoresearch._registry import Registry as _Registry
from autoresearch._registry import publish as _publish
from autoresearch.proposers._agent import Agent
from autoresearch.proposers._agent_config import AgentConfig
from autoresearch.proposers._base import Proposer, ProposerOptions, ProposerSettings, make_proposer
from autoresearch.proposers._knob import Knob
from autoresearch.proposers._scripted import Scripted
from autoresearch.proposers.llm import LLM

PROPOSERS = _Registry(
    "proposer",
    _GROUP,
    {
        "agent": "autoresearch.proposers._agent:Agent",
        "knob": "autoresearch.proposers._knob:Knob",
        "llm": "autoresearch.proposers.llm._proposer:LLM",
        "scripted": "autoresearch.proposers._scripted:Scripted",
    },
)

__all__ = [
    "LLM",
    "PROPOSERS",
    "Agent",
    "AgentConfig",
    "Knob",
    "Proposer",
    "ProposerOptions",
    "ProposerSettings",
    "Scripted",
    "make_proposer",
]

_publish(globals(), __all__, "autoresearch.proposers")
