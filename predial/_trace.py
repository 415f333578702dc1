"""A traced resolution, for operators and adapter authors (`predial check`).

`Resolver.explain(lead)` runs one lead through the pipeline without the cache and
records what happened: each adapter attempt with its timing and raw answer or error,
the policy's verdict on each phone the CRM returned, and the final resolution or
refusal. Raw values are kept as the adapter returned them: mask them before showing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ._faults import safe_repr
from ._models import Lead, Resolution
from ._phone import mask_phone
from ._redaction import redact
from .errors import Unresolvable

__all__ = ["Attempt", "PhoneVerdict", "Trace"]


@dataclass(repr=False)
class Attempt:
    """One call to the adapter."""

    number: int
    started: float  # seconds since the trace began
    duration: float
    raw: object = None
    error: str | None = None
    retry_after: float | None = None
    wait: float | None = None  # the backoff slept before the next attempt

    def __repr__(self) -> str:
        # Raw answers and errors hold numbers: masked, as every repr that reaches a log.
        return (
            f"Attempt(number={self.number!r}, started={self.started!r}, "
            f"duration={self.duration!r}, raw={redact(safe_repr(self.raw), limit=200)}, "
            f"error={redact(self.error) if self.error is not None else None!r}, "
            f"retry_after={self.retry_after!r}, wait={self.wait!r})"
        )


@dataclass(repr=False)
class PhoneVerdict:
    """The phone policy's verdict on one phone of the CRM's answer, in pick order."""

    value: object
    label: str | None
    primary: bool
    e164: str | None = None
    reason: str | None = None
    message: str | None = None

    def __repr__(self) -> str:
        return (
            f"PhoneVerdict(value={mask_phone(self.value)!r}, "
            f"label={redact(safe_repr(self.label))}, primary={redact(safe_repr(self.primary))}, "
            f"e164={mask_phone(self.e164) if self.e164 else None!r}, reason={self.reason!r})"
        )


@dataclass
class Trace:
    """Everything `explain` saw while resolving one lead."""

    lead: Lead
    adapter: str | None = None
    plugin: str | None = None
    breaker: str | None = None
    #: The shared tier's state when the resolver has one (`RedisTier.describe()`).
    shared: dict[str, Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    verdicts: list[PhoneVerdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome_reason: str | None = None
    resolution: Resolution | None = None
    refusal: Unresolvable | None = None
    elapsed: float = 0.0
    started: float = field(default_factory=time.monotonic, repr=False)
