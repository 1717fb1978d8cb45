"""Whether a run may start without candidate namespaces.

Proposers whose candidates are code the user did not write (an LLM, an external agent, any
third-party proposer) need an isolated sandbox: without one, a candidate reads the driver's
keys, the ledger and the user's files. ``knob`` and ``scripted`` replay the user's own edits
(a constant the user chose, a file the user wrote), so they only warn.
"""

from __future__ import annotations

from typing import Any

from autoresearch._errors import IsolationError

UNSAFE_FLAG = "--unsafe-no-isolation"


def isolation_warnings(sandbox: Any, proposer: Any, *, unsafe_no_isolation: bool) -> list[str]:
    """The warnings to show for this pairing; IsolationError when it must not start."""
    if getattr(sandbox, "isolated", False):
        return []
    why = getattr(sandbox, "isolation_problem", None) or (
        f"{type(sandbox).__name__} does not isolate candidates"
    )
    from autoresearch.execution import exposed_without_isolation

    exposed = "; ".join(exposed_without_isolation())
    from autoresearch.proposers import Knob, Scripted

    name = getattr(proposer, "name", None) or type(proposer).__name__
    if type(proposer) in (Knob, Scripted):  # exactly these: a subclass is someone else's code
        return [f"candidates run without isolation ({why}); they are your own edits ({name})"]
    if not unsafe_no_isolation:
        raise IsolationError(
            f"proposer {name!r} writes code you did not write, and candidates cannot be "
            f"isolated here: {why}. Install bubblewrap and passt (sh .ci/sandbox-packages), "
            f"or pass {UNSAFE_FLAG} (Python: unsafe_no_isolation=True) to run anyway. "
            f"Without isolation a candidate can reach: {exposed}"
        )
    return [f"{UNSAFE_FLAG}: candidates of {name!r} run unisolated and can reach: {exposed}"]
