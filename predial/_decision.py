"""Who is asking for the decision being made: the audit record's id and origin.

The service names each answer (`decisionId`) before it calls the resolver; the
resolver's audit record carries the same id, so a dialer's log line, the service's
access log and the audit trail join on it. Library callers get an id from the audit
log itself. A context variable, so concurrent resolves on one loop never mix them up.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import NamedTuple

__all__ = ["DecisionContext", "current_decision"]


class DecisionContext(NamedTuple):
    decision_id: str | None  # None: the audit log makes one
    origin: str  # "service", "library", or "warm" (Resolver.warm: fetched, not dialled)


#: Set by the service around each resolve; None for a library call.
current_decision: ContextVar[DecisionContext | None] = ContextVar("predial_decision", default=None)
