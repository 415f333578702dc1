"""Calling windows: may a number be called at an instant, and if not, from when.

Work in progress for issue 15 (branch issue15-wip): the evaluator core. A verdict
considers every time zone any source places the callee in, and allows the call only
inside every zone's window under every rule that applies (the Genesys / LiveVox
intersection); a window closing within `closing_margin` counts as closed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import geocoder, timezone

__all__ = ["Rule", "Ruleset", "Verdict", "ZoneSource", "evaluate", "load_ruleset"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: The lead's metadata keys read for its location, by default.
DEFAULT_KEYS: Mapping[str, tuple[str, ...]] = {
    "state": ("state",),
    "timezone": ("timezone", "timeZone"),
}


@dataclass(frozen=True, slots=True)
class ZoneSource:
    """A time zone the callee may be in, and what said so."""

    zone: str
    source: str  # "number", "area-code", "lead.state", "lead.timezone", "unknown"
    state: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    states: frozenset[str] | None  # None: every state
    start: time
    end: time
    days: frozenset[int]  # weekday numbers (Monday 0)
    state_holidays: bool
    calls_per_24h: int | None
    source: str
    verified: bool

    def applies(self, states: frozenset[str]) -> bool:
        return self.states is None or bool(self.states & states)


@dataclass(frozen=True, slots=True)
class Ruleset:
    name: str
    version: str
    rules: tuple[Rule, ...]
    split_area_codes: Mapping[str, tuple[str, ...]]
    state_zones: Mapping[str, tuple[str, ...]]
    unknown_zones: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str | None  # None when allowed; "outside_calling_window"
    next_allowed_at: datetime | None
    zones: tuple[ZoneSource, ...]
    rules: tuple[str, ...]  # "us@2026.12.0:us.fl.hours", ...


@cache
def load_ruleset(name: str) -> Ruleset:
    """The ruleset shipped as `rules/<name>.toml`."""
    text = resources.files(__package__).joinpath("rules", f"{name}.toml").read_text()
    data: dict[str, Any] = tomllib.loads(text)
    rules = tuple(
        Rule(
            id=raw["id"],
            states=None if raw["states"] == "*" else frozenset(raw["states"]),
            start=time.fromisoformat(raw["start"]),
            end=time.fromisoformat(raw["end"]),
            days=frozenset(_DAYS.index(day) for day in raw.get("days", _DAYS)),
            state_holidays=bool(raw.get("state_holidays", False)),
            calls_per_24h=raw.get("calls_per_24h"),
            source=raw["source"],
            verified=bool(raw["verified"]),
        )
        for raw in data["rules"]
    )
    return Ruleset(
        name=name,
        version=data["version"],
        rules=rules,
        split_area_codes={k: tuple(v) for k, v in data["split_area_codes"].items()},
        state_zones={k: tuple(v) for k, v in data["state_zones"].items()},
        unknown_zones=tuple(data["unknown_zones"]),
    )


def evaluate(
    phone_number: str,
    at: datetime | None = None,
    *,
    lead: Any = None,
    rules: str | Ruleset = "us",
    closing_margin: timedelta = timedelta(minutes=1),
) -> Verdict:
    """Whether `phone_number` (E.164) may be called at `at` (aware; default now)."""
    ruleset = load_ruleset(rules) if isinstance(rules, str) else rules
    instant = (at or datetime.now(UTC)).astimezone(UTC)
    zones = _zones(phone_number, lead, ruleset)
    states = frozenset(z.state for z in zones if z.state)
    applied = tuple(rule for rule in ruleset.rules if rule.applies(states))
    names = tuple(f"{ruleset.name}@{ruleset.version}:{rule.id}" for rule in applied)
    if _open(instant, zones, applied, closing_margin):
        return Verdict(True, None, None, zones, names)
    return Verdict(
        False,
        "outside_calling_window",
        _next_open(instant, zones, applied, closing_margin),
        zones,
        names,
    )


def _zones(phone_number: str, lead: Any, ruleset: Ruleset) -> tuple[ZoneSource, ...]:
    found: list[ZoneSource] = []
    state = None
    try:
        parsed = phonenumbers.parse(phone_number)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and parsed.country_code == 1:
        state = _state_of(geocoder.description_for_number(parsed, "en"))
        for zone in timezone.time_zones_for_number(parsed):
            if zone != "Etc/Unknown" and len(timezone.time_zones_for_number(parsed)) < 10:
                found.append(ZoneSource(zone, "number", state))
        area_code = str(parsed.national_number)[:3]
        for zone in ruleset.split_area_codes.get(area_code, ()):
            found.append(ZoneSource(zone, "area-code", state))
    metadata = getattr(lead, "metadata", None) or (lead if isinstance(lead, Mapping) else {})
    lead_state = _first(metadata, DEFAULT_KEYS["state"])
    if lead_state and lead_state.upper() in ruleset.state_zones:
        code = lead_state.upper()
        found += [ZoneSource(z, "lead.state", code) for z in ruleset.state_zones[code]]
    lead_zone = _first(metadata, DEFAULT_KEYS["timezone"])
    if lead_zone:
        found.append(ZoneSource(lead_zone, "lead.timezone", None))
    if not found:
        found = [ZoneSource(z, "unknown", None) for z in ruleset.unknown_zones]
    unique: dict[tuple[str, str], ZoneSource] = {}
    for source in found:
        unique.setdefault((source.zone, source.source), source)
    return tuple(unique.values())


def _first(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = metadata.get(key) if isinstance(metadata, Mapping) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


_STATE_NAMES = {
    "washington state": "WA",
    "washington d.c.": "DC",
}


def _state_of(description: str) -> str | None:
    """`Pensacola, FL` → FL; `Idaho` → ID (phonenumbers' geocoder wording)."""
    head, _, tail = description.rpartition(", ")
    if head and len(tail) == 2 and tail.isupper():
        return tail
    return _STATE_NAMES.get(description.lower()) or _by_name().get(description.lower())


@cache
def _by_name() -> dict[str, str]:
    names = (
        "AL Alabama,AK Alaska,AZ Arizona,AR Arkansas,CA California,CO Colorado,"
        "CT Connecticut,DE Delaware,FL Florida,GA Georgia,HI Hawaii,ID Idaho,IL Illinois,"
        "IN Indiana,IA Iowa,KS Kansas,KY Kentucky,LA Louisiana,ME Maine,MD Maryland,"
        "MA Massachusetts,MI Michigan,MN Minnesota,MS Mississippi,MO Missouri,MT Montana,"
        "NE Nebraska,NV Nevada,NH New Hampshire,NJ New Jersey,NM New Mexico,NY New York,"
        "NC North Carolina,ND North Dakota,OH Ohio,OK Oklahoma,OR Oregon,PA Pennsylvania,"
        "RI Rhode Island,SC South Carolina,SD South Dakota,TN Tennessee,TX Texas,UT Utah,"
        "VT Vermont,VA Virginia,WV West Virginia,WI Wisconsin,WY Wyoming,PR Puerto Rico"
    )
    return {name.lower(): code for code, _, name in (e.partition(" ") for e in names.split(","))}


def _open(
    instant: datetime,
    zones: tuple[ZoneSource, ...],
    rules: tuple[Rule, ...],
    margin: timedelta,
) -> bool:
    for source in zones:
        local = instant.astimezone(ZoneInfo(source.zone))
        for rule in rules:
            if not _inside(local, rule, margin):
                return False
    return True


def _inside(local: datetime, rule: Rule, margin: timedelta) -> bool:
    if local.weekday() not in rule.days:
        return False
    start = datetime.combine(local.date(), rule.start, local.tzinfo)
    end = datetime.combine(local.date(), rule.end, local.tzinfo)
    # Wall-clock arithmetic in one zone: compare as UTC so a DST day is right.
    return start.astimezone(UTC) <= local.astimezone(UTC) and (
        local.astimezone(UTC) + margin < end.astimezone(UTC)
    )


def _next_open(
    instant: datetime,
    zones: tuple[ZoneSource, ...],
    rules: tuple[Rule, ...],
    margin: timedelta,
) -> datetime | None:
    """The first instant after `instant` at which every window is open: an
    intersection of windows opens when one of them opens, so only window starts are
    candidates (8 days of them, in every zone)."""
    candidates: set[datetime] = set()
    for source in zones:
        zone = ZoneInfo(source.zone)
        today: date = instant.astimezone(zone).date()
        for offset in range(9):
            day = today + timedelta(days=offset)
            for rule in rules:
                start = datetime.combine(day, rule.start, zone).astimezone(UTC)
                if start > instant:
                    candidates.add(start)
    for candidate in sorted(candidates):
        if _open(candidate, zones, rules, margin):
            return candidate
    return None
