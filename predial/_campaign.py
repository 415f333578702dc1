"""A campaign as the resolver sees it: which adapter, with what settings and policy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._cache import CacheSettings
from ._phone import PhonePolicy
from .compliance._gate import Compliance

__all__ = ["Campaign", "RetrySettings"]


@dataclass(frozen=True)
class Campaign:
    """One Lupitor campaign and the CRM adapter that owns its leads' numbers.

    `settings` are passed to the adapter's constructor as keyword arguments; they
    often hold secrets, so they are left out of the repr. `default_region` reads
    national-format numbers; `policy` overrides the whole phone policy;
    `label_preference`, `deadline` and `cache` (TTLs; the size is the resolver's)
    override the resolver's defaults for this campaign. `compliance` opts the
    campaign into the gate before every dial: a ruleset name (`"us"`) or a
    `predial.compliance.Compliance` with do-not-call lists, sources and caps; None
    (the default) checks nothing beyond the CRM's own do-not-call flag.
    """

    id: str
    adapter: str
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)
    default_region: str | None = None
    policy: PhonePolicy | None = None
    label_preference: Sequence[str] | None = None
    deadline: float | None = None
    cache: CacheSettings | None = None
    compliance: Compliance | str | None = None
    #: Where the campaign was configured (`predial.toml: campaigns[2]`), for errors.
    origin: str | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        """Where errors say the campaign is, followed by `.adapter` or `.settings.x`:
        its place in the file (`predial.toml: campaigns[2]`) or, for one built in
        code, the call that built it (`Campaign('c')`)."""
        return self.origin or f"Campaign({self.id!r})"

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("Campaign.id must not be empty")
        if not self.adapter:
            raise ValueError(f"campaign {self.id!r}: adapter must name an adapter")
        if self.deadline is not None and not 0 < self.deadline < math.inf:
            raise ValueError(
                f"campaign {self.id!r}: deadline must be a finite number of seconds > 0"
            )
        try:
            settings = Compliance.of(self.compliance)
        except (TypeError, ValueError, LookupError) as error:
            raise ValueError(f"campaign {self.id!r}: compliance: {error}") from None
        object.__setattr__(self, "compliance", settings)

    @property
    def compliance_settings(self) -> Compliance | None:
        """The campaign's `Compliance`, or None when it has not opted in."""
        assert not isinstance(self.compliance, str)  # normalised in __post_init__
        return self.compliance

    def phone_policy(self) -> PhonePolicy:
        """The policy for this campaign's numbers, with its default region."""
        if self.policy is None:
            return PhonePolicy(default_region=self.default_region)
        if self.default_region and self.policy.default_region is None:
            return replace(self.policy, default_region=self.default_region)
        return self.policy


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retries of `AdapterUnavailable` inside the deadline.

    Waits grow as `initial * 2**n` up to `maximum`, with full jitter; a CRM's
    `retry_after` replaces the wait when it fits in the time left.
    """

    attempts: int = 3
    initial: float = 0.05
    maximum: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not (0 <= self.initial < math.inf and 0 <= self.maximum < math.inf):
            raise ValueError("backoff waits must be finite numbers of seconds >= 0")
