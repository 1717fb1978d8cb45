"""Where and how a candidate's command runs: the Sandbox contract, the local sandbox, and
process containment (process groups, cgroups, run markers, capped logs)."""

from autoresearch.execution._sandbox import LocalSandbox, RunSpec, Sandbox

__all__ = ["LocalSandbox", "RunSpec", "Sandbox"]
