"""Acceptance policies: keep, discard or measure more. ``greedy`` is the upstream rule; the
noise-aware ones (``threshold``, ``repeated``, ``sequential``) measure the noise first;
``paired`` decides a throughput or latency benchmark on side-by-side A/B pairs alone.

``POLICIES`` maps a config name to its class; installed packages add their own through the
``autoresearch.acceptance`` entry-point group.
"""

from autoresearch._registry import ACCEPTANCE_GROUP as _GROUP
from autoresearch._registry import Registry as _Registry
from autoresearch._registry import publish as _publish
from autoresearch.acceptance._base import (
    Acceptance,
    Decision,
    Evidence,
    Greedy,
    Verdict,
    make_acceptance,
)
from autoresearch.acceptance._paired import Paired, machine_summary
from autoresearch.acceptance._policies import NoiseAware, Repeated, Sequential, Threshold
from autoresearch.acceptance._stats import (
    bootstrap_p_better,
    median_interval,
    pooled_sigma,
    welch_t_test,
)

POLICIES = _Registry(
    "acceptance policy",
    _GROUP,
    {
        "greedy": "autoresearch.acceptance._base:Greedy",
        "paired": "autoresearch.acceptance._paired:Paired",
        "repeated": "autoresearch.acceptance._policies:Repeated",
        "sequential": "autoresearch.acceptance._policies:Sequential",
        "threshold": "autoresearch.acceptance._policies:Threshold",
    },
)

__all__ = [
    "POLICIES",
    "Acceptance",
    "Decision",
    "Evidence",
    "Greedy",
    "NoiseAware",
    "Paired",
    "Repeated",
    "Sequential",
    "Threshold",
    "Verdict",
    "bootstrap_p_better",
    "machine_summary",
    "make_acceptance",
    "median_interval",
    "pooled_sigma",
    "welch_t_test",
]

_publish(globals(), __all__, "autoresearch.acceptance")
