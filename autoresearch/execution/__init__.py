"""Where and how a candidate's command runs: the Sandbox contract, the local sandbox, its
namespaces (bubblewrap) and process containment (cgroups, run markers, capped logs)."""

from autoresearch._registry import publish as _publish
from autoresearch.execution._bwrap import (
    exposed_without_isolation,
    isolation_unavailable,
    network_stack_unavailable,
)
from autoresearch.execution._gpu import gpu_devices
from autoresearch.execution._sandbox import LocalSandbox, RunSpec, Sandbox

__all__ = [
    "LocalSandbox",
    "RunSpec",
    "Sandbox",
    "exposed_without_isolation",
    "gpu_devices",
    "isolation_unavailable",
    "network_stack_unavailable",
]

_publish(globals(), __all__, "autoresearch.execution")
