"""Where and how a candidate's command runs: the Sandbox contract, the local sandbox, and
process containment (process groups, cgroups, run markers, capped logs)."""

from autoresearch._registry import publish as _publish
from autoresearch.execution._sandbox import LocalSandbox, RunSpec, Sandbox

__all__ = ["LocalSandbox", "RunSpec", "Sandbox"]

_publish(globals(), __all__, "autoresearch.execution")
