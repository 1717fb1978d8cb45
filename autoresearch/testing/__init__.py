"""Tools to test plug-ins the way autoresearch tests its own.

- Stand-ins: ``FakeSandbox`` (runs no process: a handler says what each run printed),
  ``FakeObjective``, ``Scripted`` (a proposer replaying candidates), ``FakeOpenAIServer``
  (an OpenAI-compatible server on loopback), ``make_toy_domain`` (a two-constant domain).
- Records in one call: ``make_context``, ``domain_context``, ``make_record``.
- Checks: ``check_objective`` and ``check_proposer``, one call each; and contract suites to
  inherit in a test module, one per plug-in kind: ``ProposerContract``, ``ObjectiveContract``,
  ``SandboxContract``, ``AcceptanceContract``. A suite is a class of pytest-style ``test_*``
  methods (they use only the built-in ``tmp_path`` fixture: no pytest import here) with a
  factory method to override, the way an Optuna sampler inherits ``optuna.testing``'s; each
  check fails with an AssertionError naming the part of the contract that was broken. The
  subclass's name must start with ``Test`` for pytest to collect it.

Example::

    from autoresearch.testing import ObjectiveContract, ProposerContract, check_objective

    def test_my_objective(tmp_path):
        check_objective(MyObjective(), tmp_path, log_text="---\\nscore: 1.5\\n")

    class TestMyObjective(ObjectiveContract):
        log_text = "---\\nscore: 1.5\\n"

        def make_objective(self):
            return MyObjective()

    class TestHillClimb(ProposerContract):
        def make_proposer(self, domain_dir):
            return HillClimb(seed=0)
"""

from __future__ import annotations

from autoresearch._registry import publish as _publish
from autoresearch.proposers._scripted import Scripted, load_script, parse_candidate
from autoresearch.testing._checks import check_objective, check_proposer
from autoresearch.testing._contract_acceptance import AcceptanceContract
from autoresearch.testing._contract_objective import ObjectiveContract
from autoresearch.testing._contract_proposer import ProposerContract
from autoresearch.testing._contract_sandbox import SandboxContract
from autoresearch.testing._fake_openai import FakeOpenAIServer, Reply
from autoresearch.testing._fakes import (
    FakeObjective,
    FakeRun,
    FakeSandbox,
    domain_context,
    make_context,
    make_record,
    toy_run,
)
from autoresearch.testing._toy import make_toy_domain, toy_score

__all__ = [
    "AcceptanceContract",
    "FakeObjective",
    "FakeOpenAIServer",
    "FakeRun",
    "FakeSandbox",
    "ObjectiveContract",
    "ProposerContract",
    "Reply",
    "SandboxContract",
    "Scripted",
    "check_objective",
    "check_proposer",
    "domain_context",
    "load_script",
    "make_context",
    "make_record",
    "make_toy_domain",
    "parse_candidate",
    "toy_run",
    "toy_score",
]

# Shown as autoresearch.testing.X; the proposer and script helpers keep their own home.
_publish(
    globals(),
    [n for n in __all__ if n not in ("Scripted", "load_script", "parse_candidate")],
    "autoresearch.testing",
)
