"""The gate every number passes just before the resolver hands it out.

A campaign opts in with `Campaign(compliance="us")` (or a `Compliance` for more
settings). The checks run cheapest and most final first: the local do-not-call
lists (a hit is permanent), the plugins' external sources, the calling window in the
callee's time zones, and last the frequency caps — last because admitting a call
counts it, and only a call that will be made may count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .._faults import safe_text
from .._selection import COMPLIANCE_REASONS
from ._caps import CapCountUnavailable
from ._windows import LocationKeys, Verdict, evaluate, load_ruleset, shipped_rulesets

__all__ = ["CapsPending", "Compliance", "ComplianceGate", "GateResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Compliance:
    """A campaign's compliance settings (`Campaign(compliance=...)`).

    `rules`: the ruleset of calling windows and caps (`"us"`). `dnc_lists`: the
    local do-not-call lists checked, by name (files in the resolver's `dnc_dir`,
    kept with `predial dnc`). `dnc_sources`: external sources registered by plugins
    (`register_dnc_sources`), by name. `keys`: the lead metadata keys read for the
    callee's location. `closing_margin`: seconds before a window closes that count as
    closed. `caps`: whether the ruleset's frequency caps are enforced.
    """

    rules: str = "us"
    dnc_lists: tuple[str, ...] = ()
    dnc_sources: tuple[str, ...] = ()
    keys: LocationKeys = field(default_factory=LocationKeys)
    closing_margin: float = 60.0
    caps: bool = True
    #: Where the gate's minute buckets start, in seconds (see `ComplianceGate.verdict`).
    bucket_shift: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self) -> None:
        # An unknown ruleset fails here, at start-up, not at the first dial.
        known = shipped_rulesets()
        if self.rules not in known:
            raise ValueError(f"no ruleset {self.rules!r}: predial ships {', '.join(sorted(known))}")
        load_ruleset(self.rules)
        if not 0 <= self.closing_margin < 3600 or math.isnan(self.closing_margin):
            raise ValueError("compliance.closing_margin must be seconds in [0, 3600)")
        # One name given as text is that name, not its letters.
        for attribute in ("dnc_lists", "dnc_sources"):
            value = getattr(self, attribute)
            if isinstance(value, str):
                object.__setattr__(self, attribute, (value,))
        for name in (*self.dnc_lists, *self.dnc_sources):
            if not isinstance(name, str) or not name:
                raise ValueError("compliance: list and source names must be non-empty text")
        # Tuples whatever the caller passed (a list from a config file).
        object.__setattr__(self, "bucket_shift", self.closing_margin % 60)
        object.__setattr__(self, "dnc_lists", tuple(self.dnc_lists))
        object.__setattr__(self, "dnc_sources", tuple(self.dnc_sources))

    @classmethod
    def of(cls, value: str | Compliance | None) -> Compliance | None:
        """`value` as settings: a ruleset name means that ruleset with the defaults."""
        if value is None or isinstance(value, Compliance):
            return value
        if isinstance(value, str):
            return cls(rules=value)
        raise TypeError(
            f"compliance must be a ruleset name such as 'us' or a Compliance, not "
            f"{type(value).__name__}"
        )


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's word on one number: allowed, or why not and until when."""

    verdict: Verdict | None
    reason: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    next_allowed_at: datetime | None = None
    list_name: str | None = None
    detail: str | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is None


class DncLookup(Protocol):
    def first_hit(self, number: str, names: Sequence[str]) -> str | None: ...


class SourceAnswer(Protocol):
    @property
    def hit(self) -> str | None: ...
    @property
    def unavailable(self) -> str | None: ...
    @property
    def retry_after(self) -> float | None: ...


class DncSourceChecker(Protocol):
    def check(self, number: str, names: Sequence[str]) -> Awaitable[SourceAnswer]: ...


class CapCounter(Protocol):
    def admit(self, key: str, limit: int, window: float, now: float) -> Awaitable[float | None]: ...


class ComplianceGate:
    """Runs a campaign's `Compliance` on a number about to be dialled.

    `lists` answers the local do-not-call lists, `sources` the plugins' external
    ones, `counter` the frequency caps (in memory, or shared through Redis);
    `wall_clock` is the time of day the windows are judged at (injectable for tests).
    """

    def __init__(
        self,
        *,
        lists: DncLookup | None,
        sources: DncSourceChecker | None,
        counter: CapCounter,
        wall_clock: Callable[[], datetime],
    ) -> None:
        self.lists = lists
        self.sources = sources
        self.counter = counter
        self.wall_clock = wall_clock
        # Verdicts of the current minute bucket by (settings, exchange, lead location):
        # see `verdict`.
        self._bucket: int | None = None
        self._verdicts: dict[tuple[int, str, tuple[object, ...]], Verdict] = {}
        # The one GateResult of each memoised allowed verdict (by the verdict's id:
        # cleared with the memo, so an id is never reused while held).
        self._passes: dict[int, GateResult] = {}

    def verdict(
        self,
        settings: Compliance,
        number: str,
        metadata: Mapping[str, Any] | None,
        now: datetime,
    ) -> Verdict:
        """`evaluate(number, now, ...)` under the campaign's settings, memoised.

        Exact, not approximate: a verdict changes only when a local time crosses a
        window's start or midnight (the day, a holiday) — whole local minutes — or a
        window's end less the closing margin — whole minutes shifted by the margin —
        and the US zones' offsets are whole minutes, so between two instants of either
        grid every number of one exchange (NPA-NXX: the deepest phonenumbers places a
        NANP number) with the same lead location gets the same verdict. Evaluating
        costs as much as a cache-hit resolve; a dialer works through a list exchange
        by exchange.
        """
        stamp = now.timestamp()
        # Windows open on whole minutes and close on whole minutes less the margin:
        # both grids bound a bucket (one when the margin is whole minutes).
        minute = math.floor(stamp / 60)
        bucket = minute * 2
        if settings.bucket_shift:
            bucket += math.floor((stamp + settings.bucket_shift) / 60) - minute
        if bucket != self._bucket:
            self._verdicts.clear()
            self._passes.clear()
            self._bucket = bucket
        key = None
        if len(number) == 12 and number[:2] == "+1":
            location = _location(metadata, settings.keys) if metadata else ()
            if location is not None:
                key = (id(settings), number[:8], location)
                known = self._verdicts.get(key)
                if known is not None:
                    return known
        verdict = evaluate(
            number,
            now,
            lead=metadata,
            rules=settings.rules,
            keys=settings.keys,
            closing_margin=settings.closing_margin,
        )
        if key is not None and len(self._verdicts) < _MAX_VERDICTS:
            self._verdicts[key] = verdict
        return verdict

    async def check(
        self,
        settings: Compliance,
        number: str,
        metadata: Mapping[str, Any] | None,
        *,
        count: bool = True,
    ) -> GateResult:
        """The gate's word on `number` for a campaign with `settings`. `count=False`
        (`Resolver.explain`, a diagnosis): the caps are not counted, so not checked."""
        if settings.dnc_sources:
            listed = self._listed(settings, number)
            if listed is not None:
                return listed
            refused = await self._ask_sources(settings, number)
            if refused is not None:
                return refused
            checked = self._windows(settings, number, metadata)
        else:
            checked = self.check_now(settings, number, metadata)
        if isinstance(checked, CapsPending):
            if not count:
                return GateResult(checked.verdict)
            return await self.admit(number, checked)
        return checked

    def check_now(
        self, settings: Compliance, number: str, metadata: Mapping[str, Any] | None
    ) -> GateResult | CapsPending:
        """`check` without awaiting, for a campaign without external sources (the
        resolver's hot path: no coroutine when nothing needs one). `CapsPending` when
        a frequency cap applies: `admit` counts the call."""
        if settings.dnc_lists:
            listed = self._listed(settings, number)
            if listed is not None:
                return listed
        return self._windows(settings, number, metadata)

    def _listed(self, settings: Compliance, number: str) -> GateResult | None:
        if not settings.dnc_lists:
            return None
        if self.lists is None:  # the resolver checks at start-up; a guard only
            raise RuntimeError("a campaign names do-not-call lists but no dnc_dir is set")
        try:
            listed = self.lists.first_hit(number, settings.dnc_lists)
        except Exception as error:
            # A list that cannot be read now (damaged, unreadable) fails closed:
            # the number waits, it is not dialled unchecked.
            log.error("do-not-call lists cannot be read: %s", safe_text(error))
            return GateResult(
                None,
                "dnc_list_unreadable",
                retryable=True,
                retry_after=60.0,
                detail=f"a do-not-call list cannot be read ({type(error).__name__})",
            )
        if listed is None:
            return None
        return GateResult(
            None,
            "do_not_call_list",
            list_name=listed,
            detail=f"the number is on the do-not-call list {listed!r}",
        )

    async def _ask_sources(self, settings: Compliance, number: str) -> GateResult | None:
        if self.sources is None:
            raise RuntimeError("a campaign names do-not-call sources but none is registered")
        answer = await self.sources.check(number, settings.dnc_sources)
        if answer.hit is not None:
            return GateResult(
                None,
                "do_not_call_list",
                list_name=answer.hit,
                detail=f"the do-not-call source {answer.hit!r} lists the number",
            )
        if answer.unavailable is not None:
            return GateResult(
                None,
                "dnc_source_unavailable",
                retryable=True,
                retry_after=answer.retry_after,
                detail=f"the do-not-call source {answer.unavailable!r} did not answer",
            )
        return None

    def _windows(
        self, settings: Compliance, number: str, metadata: Mapping[str, Any] | None
    ) -> GateResult | CapsPending:
        now = self.wall_clock()
        verdict = self.verdict(settings, number, metadata, now)
        if not verdict.allowed:
            wait = None
            if verdict.next_allowed_at is not None:
                wait = max(0.0, (verdict.next_allowed_at - now).total_seconds())
            reason = verdict.reason or "outside_calling_window"
            return GateResult(
                verdict,
                reason,
                # A number the ruleset cannot place never will be: skip it.
                retryable=COMPLIANCE_REASONS.get(reason, ("", True))[1],
                retry_after=wait,
                next_allowed_at=verdict.next_allowed_at,
                detail=_window_detail(verdict),
            )
        if settings.caps and verdict.caps:
            return CapsPending(verdict, now)
        passed = self._passes.get(id(verdict))
        if passed is None or passed.verdict is not verdict:
            passed = GateResult(verdict)
            if len(self._passes) < _MAX_VERDICTS:
                self._passes[id(verdict)] = passed
        return passed

    async def admit(self, number: str, pending: CapsPending) -> GateResult:
        """Count the call against each cap of `pending.verdict`, or refuse it."""
        verdict, stamp = pending.verdict, pending.now.timestamp()
        for rule_id, limit, window in verdict.caps:
            try:
                wait = await self.counter.admit(f"{rule_id}:{number}", limit, window, stamp)
            except CapCountUnavailable as unknown:
                return GateResult(
                    verdict,
                    "call_cap_unavailable",
                    retryable=True,
                    retry_after=unknown.retry_after,
                    detail=f"{rule_id}: {unknown}",
                )
            if wait is not None:
                # Whole seconds, rounded up: a dialer retrying at the instant given (the
                # service's nextAllowedAt has no fraction) is admitted, not refused again.
                opens = math.ceil(stamp + wait)
                return GateResult(
                    verdict,
                    "call_cap_reached",
                    retryable=True,
                    retry_after=opens - stamp,
                    next_allowed_at=datetime.fromtimestamp(opens, UTC),
                    detail=f"{rule_id}: at most {limit} calls per {_span(window)}",
                )
        return GateResult(verdict)


@dataclass(frozen=True, slots=True)
class CapsPending:
    """An allowed verdict whose frequency caps are still to be counted (`admit`)."""

    verdict: Verdict
    now: datetime


#: Verdicts held for one minute bucket (a dialer's calls of a minute span fewer
#: exchanges than this).
_MAX_VERDICTS = 50_000


def _location(metadata: Mapping[str, Any] | None, keys: LocationKeys) -> tuple[object, ...] | None:
    """The lead's location values as a hashable key; None when one is not hashable
    (such a lead is evaluated afresh)."""
    if not metadata:
        return ()
    try:
        values = tuple(
            metadata.get(name)
            for names in (keys.postal_code, keys.state, keys.timezone)
            for name in names
        )
    except AttributeError:
        return None
    # Text (or nothing) only: values that compare equal but read differently (98101
    # and 98101.0, 1 and True) must not share a verdict; such a lead is evaluated.
    if all(value is None or type(value) is str for value in values):
        return values
    return None


def _window_detail(verdict: Verdict) -> str:
    if verdict.reason == "number_outside_ruleset":
        return "the ruleset covers no calls to this number's country"
    zones = ", ".join(sorted({zone.zone for zone in verdict.zones}))
    if verdict.next_allowed_at is None:
        return f"outside the calling window in {zones}"
    return (
        f"outside the calling window in {zones}; next allowed at "
        f"{verdict.next_allowed_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    )


def _span(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} hours" if hours != 1 else "hour"
