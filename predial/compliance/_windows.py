"""Calling windows: may a number be called at an instant, and if not, from when.

A verdict considers every time zone any source places the callee in (the number's
exchange, its area code, the lead's time zone, state and postal code) and allows the
call only inside every zone's window under every rule that applies: the Genesys /
LiveVox intersection, so a disagreement between sources can only narrow the window.
A window closing within `closing_margin` counts as closed. The rules are data
(`rules/<name>.toml`, versioned, with a CHANGELOG), not code.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from .._phone import mask_phone
from ..errors import ConfigurationError, InvalidPhoneNumber

__all__ = [
    "LocationKeys",
    "Rule",
    "Ruleset",
    "Verdict",
    "ZoneSource",
    "evaluate",
    "load_ruleset",
]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How far ahead `next_allowed_at` looks (days): a Sunday, a holiday weekend and any window
#: of the shipped rules fit in it many times over.
_HORIZON_DAYS = 15
#: A phonenumbers answer with more zones than this names no place (toll-free: 42).
_MAX_NUMBER_ZONES = 10
#: The shape of a callable NANP number in E.164: NPA and NXX never start with 0 or 1.
_NANP = re.compile(r"\+1[2-9]\d{2}[2-9]\d{6}")
#: The default closing margin: dialling stops a minute before a window ends (Genesys).
_ONE_MINUTE = timedelta(minutes=1)
#: A US ZIP Code: five digits, or ZIP+4 with or without its hyphen.
_ZIP = re.compile(r"(\d{5})(?:-?\d{4})?")


@dataclass(frozen=True, slots=True)
class LocationKeys:
    """The lead metadata keys read for the callee's location, first present wins.

    A campaign whose CRM spells them otherwise names its own (`[campaigns.x.compliance]
    keys`); a single name may be given as a string.
    """

    # Sequence: a list from a config file or a single name is accepted; each is held
    # as a tuple once constructed.
    postal_code: Sequence[str] = ("postalCode", "postal_code", "zip", "zipCode")
    state: Sequence[str] = ("state",)
    timezone: Sequence[str] = ("timezone", "timeZone")

    def __post_init__(self) -> None:
        for name in ("postal_code", "state", "timezone"):
            value = getattr(self, name)
            names = (value,) if isinstance(value, str) else value
            if not isinstance(names, Iterable):
                raise ConfigurationError(
                    f"LocationKeys.{name}: give metadata key names as a list of text, "
                    f"not {type(value).__name__}"
                )
            names = tuple(names)
            if not names or not all(isinstance(key, str) and key for key in names):
                raise ConfigurationError(
                    f"LocationKeys.{name}: give one or more non-empty metadata key names"
                )
            # Frozen: the normalised tuple goes in as the dataclass would have put it.
            object.__setattr__(self, name, names)


_DEFAULT_KEYS = LocationKeys()


@dataclass(frozen=True, slots=True)
class ZoneSource:
    """A time zone the callee may be in, and what said so.

    `source`: "number" (phonenumbers' zone for the exchange), "area-code" (the
    ruleset's split area codes, or the zones of the number's state), "lead.timezone",
    "lead.state", "lead.postal_code", or "unknown" (nothing placed the callee).
    `state`: the state (or territory) the source names, when it names one.
    """

    zone: str
    source: str
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


# eq=False: a ruleset is compared and hashed by identity, so the per-ruleset caches
# below can key on it (its tables are dicts, unhashable by value).
@dataclass(frozen=True, slots=True, eq=False)
class Ruleset:
    name: str
    version: str
    rules: tuple[Rule, ...]
    split_area_codes: Mapping[str, tuple[str, ...]]
    state_zones: Mapping[str, tuple[str, ...]]
    unknown_zones: tuple[str, ...]
    regions: frozenset[str] = frozenset({"US"})
    zip3: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def qualified(self, rule: Rule) -> str:
        """`us@2026.12.1:us.fl.hours`: the rule id with the ruleset and its version."""
        return f"{self.name}@{self.version}:{rule.id}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer of `evaluate`.

    `reason`: None when allowed; "outside_calling_window"; or "number_outside_ruleset"
    (a number the ruleset cannot judge: never allowed, `next_allowed_at` None).
    `next_allowed_at`: the exact start of the next instant open in every zone
    considered (aware UTC), or None when none opens within 15 days. `rules`: the
    rules applied, qualified with the ruleset's version. `caps`: (rule id, max calls,
    window seconds) of every applied rule with a frequency cap; the rule id is bare
    (`us.fl.hours`) so a counter outlives a ruleset version bump.
    """

    allowed: bool
    reason: str | None
    next_allowed_at: datetime | None
    zones: tuple[ZoneSource, ...]
    rules: tuple[str, ...]
    caps: tuple[tuple[str, int, float], ...] = ()


@cache
def shipped_rulesets() -> frozenset[str]:
    """The names of the rulesets shipped in `predial/compliance/rules/`."""
    folder = resources.files(__package__).joinpath("rules")
    return frozenset(
        item.name.removesuffix(".toml")
        for item in folder.iterdir()
        if item.name.endswith(".toml") and not item.name.startswith("_")
    )


@cache
def load_ruleset(name: str) -> Ruleset:
    """The ruleset shipped as `rules/<name>.toml` (parsed once)."""
    folder = resources.files(__package__).joinpath("rules")
    path = folder.joinpath(f"{name}.toml")
    if not re.fullmatch(r"[a-z0-9_-]+", name) or name not in shipped_rulesets():
        shipped = ", ".join(sorted(shipped_rulesets()))
        raise ConfigurationError(f"no ruleset {name!r}: predial ships {shipped} (rules='us')")
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    rules = tuple(_rule(name, index, raw) for index, raw in enumerate(data["rules"]))
    needs_holidays = [rule.id for rule in rules if rule.state_holidays]
    if needs_holidays and importlib.util.find_spec("holidays") is None:
        # Fail when the ruleset is loaded (a campaign's start-up), not at the first
        # Alabama lead.
        raise ConfigurationError(
            f"the {name!r} ruleset's rule {needs_holidays[0]} refuses calls on state "
            "holidays, which needs the holidays package: pip install 'predial[compliance]'"
        )
    zip3: dict[str, tuple[str, ...]] = {}
    if "zip3_table" in data:
        text = folder.joinpath(data["zip3_table"]).read_text(encoding="utf-8")
        rows = csv.reader(line for line in text.splitlines() if not line.startswith("#"))
        next(rows)  # the header
        zip3 = {prefix: tuple(states.split()) for prefix, states in rows}
    return Ruleset(
        name=name,
        version=data["version"],
        rules=rules,
        split_area_codes={k: tuple(v) for k, v in data["split_area_codes"].items()},
        state_zones={k: tuple(v) for k, v in data["state_zones"].items()},
        unknown_zones=tuple(data["unknown_zones"]),
        regions=frozenset(data.get("regions", ("US",))),
        zip3=zip3,
    )


def _rule(ruleset: str, index: int, raw: dict[str, Any]) -> Rule:
    try:
        return Rule(
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
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"rules/{ruleset}.toml: rule #{index + 1} ({raw.get('id', 'no id')}) has a "
            f"missing or malformed field: {exc}"
        ) from exc


def evaluate(
    phone_number: str,
    at: datetime | None = None,
    *,
    lead: Any = None,
    rules: str | Ruleset = "us",
    keys: LocationKeys = _DEFAULT_KEYS,
    closing_margin: timedelta | float = _ONE_MINUTE,
) -> Verdict:
    """Whether `phone_number` (E.164) may be called at `at` (aware; default now).

    `lead`: a predial `Lead` (its `metadata` is read) or the metadata mapping itself;
    `keys` names the metadata keys read. `closing_margin` (a timedelta or seconds): a
    window closing within it counts as closed. Raises `InvalidPhoneNumber` (a
    ValueError) for a phone number that is not one, ValueError for a naive `at`.
    """
    ruleset = load_ruleset(rules) if isinstance(rules, str) else rules
    if not isinstance(ruleset, Ruleset):
        raise TypeError(f"rules must be a ruleset name such as 'us', not {type(rules).__name__}")
    instant = _instant(at)
    margin = closing_margin if closing_margin is _ONE_MINUTE else _margin(closing_margin)
    place = _place(phone_number)
    if place.region not in ruleset.regions:
        return Verdict(False, "number_outside_ruleset", None, (), ())
    metadata = _metadata(lead)
    lead_zones = _lead_zones(metadata, keys, ruleset) if metadata else ()
    plan = _plan(place, lead_zones, ruleset)
    if _open(instant, plan.zone_names, plan.checks, margin):
        return Verdict(True, None, None, plan.zones, plan.names, plan.caps)
    return Verdict(
        False,
        "outside_calling_window",
        _next_open(instant, plan.zone_names, plan.checks, margin),
        plan.zones,
        plan.names,
        plan.caps,
    )


def _instant(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if not isinstance(at, datetime):
        raise TypeError(f"evaluate(): at must be an aware datetime, not {type(at).__name__}")
    if at.utcoffset() is None:
        raise ValueError(
            "evaluate(): at is a naive datetime; give an aware one (datetime.now(UTC))"
        )
    instant = at.astimezone(UTC)
    # Windows are looked for up to 15 days on either side: the calendar's ends are
    # out of reach (datetime's range stops at years 1 and 9999).
    if not _EARLIEST <= instant <= _LATEST:
        raise ValueError(
            f"evaluate(): at must be between {_EARLIEST:%Y-%m-%d} and {_LATEST:%Y-%m-%d}"
        )
    return instant


_EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
_LATEST = datetime(9998, 12, 31, tzinfo=UTC)


def _margin(value: timedelta | float) -> timedelta:
    margin = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if not timedelta(0) <= margin < timedelta(hours=1):
        raise ValueError(f"evaluate(): closing_margin must be in [0 s, 1 h), not {value!r}")
    return margin


# ---- where the number places the callee -------------------------------------------


@dataclass(frozen=True, slots=True)
class _Place:
    region: str | None  # phonenumbers' region code: "US", "PR", "CA", "GB"...
    area_code: str | None
    state: str | None
    zones: tuple[str, ...]  # phonenumbers' zones, when they name a place


#: NPA-NXX -> _Place: phonenumbers' zone and geocoder data for NANP go no deeper
#: than the exchange (7-digit prefixes with the country code), so one parse serves
#: every number of an exchange. Bounded by clearing: a dial list spans few exchanges.
_PLACES: dict[str, _Place] = {}
_PLACES_MAX = 50_000


def _place(phone_number: str) -> _Place:
    if isinstance(phone_number, str) and _NANP.fullmatch(phone_number):
        key = phone_number[2:8]
        place = _PLACES.get(key)
        if place is None:
            if len(_PLACES) >= _PLACES_MAX:
                _PLACES.clear()
            place = _PLACES[key] = _lookup(phonenumbers.parse(phone_number))
        return place
    if not isinstance(phone_number, str):
        raise InvalidPhoneNumber(
            "not_a_string",
            phone_number,
            f"evaluate(): phone_number must be an E.164 string such as +12025550123, "
            f"not {type(phone_number).__name__}",
        )
    try:
        parsed = phonenumbers.parse(phone_number)
    except phonenumbers.NumberParseException as exc:
        raise _invalid(phone_number) from exc
    if not phonenumbers.is_possible_number(parsed):
        raise _invalid(phone_number)
    if parsed.country_code == 1:
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if not _NANP.fullmatch(e164):
            raise _invalid(phone_number)
        return _place(e164)
    return _Place(phonenumbers.region_code_for_number(parsed), None, None, ())


def _invalid(phone_number: str) -> InvalidPhoneNumber:
    return InvalidPhoneNumber(
        "not_a_number",
        phone_number,
        f"evaluate(): phone_number {mask_phone(phone_number)!r} is not a phone number; "
        "give it in E.164 (+12025550123)",
    )


def _lookup(parsed: phonenumbers.PhoneNumber) -> _Place:
    region = phonenumbers.region_code_for_number(parsed)
    # Imported here, not with the module: the geocoder's and zones' data are megabytes
    # of Python modules, and `import predial` (every CLI command, every worker) must
    # not load them for a resolver that never evaluates a window.
    from phonenumbers import geocoder, timezone

    state = _state_of(geocoder.description_for_number(parsed, "en"))
    if state is None and region not in (None, "US", "CA"):
        state = region  # a territory (PR, GU...) is its own "state" in the tables
    zones = tuple(timezone.time_zones_for_number(parsed))
    if len(zones) > _MAX_NUMBER_ZONES or "Etc/Unknown" in zones:
        zones = ()
    return _Place(region, str(parsed.national_number)[:3], state, zones)


_STATE_NAMES = {
    "washington state": "WA",
    "washington d.c.": "DC",
    "district of columbia": "DC",
    "u.s. virgin islands": "VI",
    "us virgin islands": "VI",
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
        "VT Vermont,VA Virginia,WV West Virginia,WI Wisconsin,WY Wyoming,PR Puerto Rico,"
        "GU Guam,AS American Samoa,MP Northern Mariana Islands"
    )
    return {name.lower(): code for code, _, name in (e.partition(" ") for e in names.split(","))}


# ---- where the lead places the callee ----------------------------------------------


def _metadata(lead: Any) -> Mapping[str, Any]:
    if lead is None:
        return {}
    if isinstance(lead, Mapping):
        return lead
    metadata = getattr(lead, "metadata", _MISSING)
    if metadata is _MISSING:
        raise TypeError(
            f"evaluate(): lead must be a predial Lead or its metadata mapping, not "
            f"{type(lead).__name__}"
        )
    return metadata if isinstance(metadata, Mapping) else {}


_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a verdict needs besides the instant, for one number and lead location."""

    zones: tuple[ZoneSource, ...]
    zone_names: tuple[str, ...]
    checks: tuple[_Check, ...]
    names: tuple[str, ...]
    caps: tuple[tuple[str, int, float], ...]


@lru_cache(maxsize=4096)
def _plan(place: _Place, lead_zones: tuple[ZoneSource, ...], ruleset: Ruleset) -> _Plan:
    found = [ZoneSource(zone, "number", place.state) for zone in place.zones]
    split = ruleset.split_area_codes.get(place.area_code or "", ())
    found += [ZoneSource(zone, "area-code", place.state) for zone in split]
    if not found and place.state is not None and place.state in ruleset.state_zones:
        # The number names a state but no exchange zone: all of the state's zones.
        found = [ZoneSource(z, "area-code", place.state) for z in ruleset.state_zones[place.state]]
    found += lead_zones
    if not found:
        found = [ZoneSource(zone, "unknown") for zone in ruleset.unknown_zones]
    zones = tuple(dict.fromkeys(found))
    checks, names, caps = _applied(ruleset, frozenset(z.state for z in zones if z.state))
    return _Plan(zones, tuple(dict.fromkeys(z.zone for z in zones)), checks, names, caps)


def _lead_zones(
    metadata: Mapping[str, Any], keys: LocationKeys, ruleset: Ruleset
) -> tuple[ZoneSource, ...]:
    return _lead_place(
        _scalar(_first(metadata, keys.state)),
        _scalar(_first(metadata, keys.postal_code)),
        _scalar(_first(metadata, keys.timezone)),
        ruleset,
    )


def _scalar(value: object) -> str | int | None:
    """The value if it can be a state, ZIP or zone name (text or an integer), else
    None: a list or a mapping names no place (and is not hashable for the cache)."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


@lru_cache(maxsize=4096)
def _lead_place(
    state_value: str | int | None,
    postal_value: str | int | None,
    zone_value: str | int | None,
    ruleset: Ruleset,
) -> tuple[ZoneSource, ...]:
    found: list[ZoneSource] = []
    # A value that is missing, malformed or names no place is ignored: the other
    # sources still place the callee (and nothing at all means the unknown window).
    state = _state_code(state_value, ruleset)
    if state is not None:
        found += [ZoneSource(z, "lead.state", state) for z in ruleset.state_zones[state]]
    for zip_state in _zip_states(postal_value, ruleset):
        zones = ruleset.state_zones[zip_state]
        found += [ZoneSource(z, "lead.postal_code", zip_state) for z in zones]
    if isinstance(zone_value, str) and _zone(zone_value.strip()) is not None:
        found.append(ZoneSource(zone_value.strip(), "lead.timezone"))
    return tuple(found)


def _first(metadata: Mapping[str, Any], keys: Sequence[str]) -> object:
    for key in keys:
        value = metadata.get(key)
        if value is not None and value != "":
            return value
    return None


def _state_code(value: object, ruleset: Ruleset) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    code = text.upper() if len(text) == 2 else _by_name().get(text.lower())
    return code if code in ruleset.state_zones else None


def _zip_states(value: object, ruleset: Ruleset) -> tuple[str, ...]:
    """The states of a US ZIP Code (5 digits or ZIP+4); () for anything else.

    A number is read as a spreadsheet leaves it, leading zeros dropped (2134 is
    02134). A prefix in several states gives all of them (each is considered).
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 99_999:
        text = f"{value:05d}"
    elif isinstance(value, str) and (match := _ZIP.fullmatch(value.strip())):
        text = match.group(1)
    else:
        return ()
    states = ruleset.zip3.get(text[:3], ())
    return tuple(state for state in states if state in ruleset.state_zones)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # not a zone: the value is ignored
        return None


# ---- the rules that apply -----------------------------------------------------------

#: A rule as applied: the rule and the states whose holidays close its days.
_Check = tuple[Rule, frozenset[str]]


@lru_cache(maxsize=1024)
def _applied(
    ruleset: Ruleset, states: frozenset[str]
) -> tuple[tuple[_Check, ...], tuple[str, ...], tuple[tuple[str, int, float], ...]]:
    """The federal rule and the rules of every state a source names; when no source
    names a state, every rule (the callee may be in any state: the conservative
    reading of an unknown location)."""
    checks: list[_Check] = []
    for rule in ruleset.rules:
        if states and not rule.applies(states):
            continue
        own = frozenset() if rule.states is None else rule.states
        holiday_states = (own & states if states else own) if rule.state_holidays else frozenset()
        checks.append((rule, holiday_states))
    names = tuple(ruleset.qualified(rule) for rule, _ in checks)
    caps = tuple(
        (rule.id, rule.calls_per_24h, 86_400.0)
        for rule, _ in checks
        if rule.calls_per_24h is not None
    )
    return tuple(checks), names, caps


# ---- window arithmetic --------------------------------------------------------------


def _open(
    instant: datetime, zones: tuple[str, ...], checks: tuple[_Check, ...], margin: timedelta
) -> bool:
    for name in zones:
        local = instant.astimezone(_tz(name))
        for rule, holiday_states in checks:
            if not _rule_open(instant, local, name, rule, holiday_states, margin):
                return False
    return True


def _rule_open(
    instant: datetime,
    local: datetime,
    zone: str,
    rule: Rule,
    holiday_states: frozenset[str],
    margin: timedelta,
) -> bool:
    """Whether `rule` allows a call at `instant` (`local` in `zone`): an allowed day,
    not a holiday of its states, and the window closing more than `margin` later."""
    if local.weekday() not in rule.days:
        return False
    day = local.date()
    if holiday_states and _is_holiday(day, holiday_states):
        return False
    start, end = _bounds(zone, day, rule.start, rule.end)
    return start <= instant and instant + margin < end


def _tz(name: str) -> ZoneInfo:
    zone = _zone(name)
    if zone is None:  # the data's zones are checked by the tests; a guard only
        raise ConfigurationError(f"the ruleset names an unknown time zone {name!r}")
    return zone


@lru_cache(maxsize=8192)
def _bounds(zone: str, day: date, start: time, end: time) -> tuple[datetime, datetime]:
    """A window's opening and closing on `day` in `zone`, as UTC instants (so a day
    on which daylight saving starts or ends is right)."""
    tz = ZoneInfo(zone)
    return (
        datetime.combine(day, start, tz).astimezone(UTC),
        datetime.combine(day, end, tz).astimezone(UTC),
    )


def _is_holiday(day: date, states: frozenset[str]) -> bool:
    """Whether `day`, a date in the callee's local time, is a legal holiday of any of
    `states` (observed days too: a holiday on a Saturday closes the Friday as well)."""
    return any(day in _holidays(state, day.year) for state in states)


@lru_cache(maxsize=256)
def _holidays(state: str, year: int) -> frozenset[date]:
    try:
        module = importlib.import_module("holidays")
    except ImportError as exc:  # load_ruleset checked; the package went away since
        raise ConfigurationError(
            "state holidays need the holidays package: pip install 'predial[compliance]'"
        ) from exc
    return frozenset(module.country_holidays("US", subdiv=state, years=year))


def _next_open(
    instant: datetime, zones: tuple[str, ...], checks: tuple[_Check, ...], margin: timedelta
) -> datetime | None:
    """The first instant after `instant` at which every window is open.

    Push forward: while some rule is closed in some zone at `t`, nothing in between
    can be open everywhere, so `t` moves to the latest of those rules' next openings;
    when every rule is open at `t`, `t` is the answer (an intersection of windows
    opens when one of them opens: the result is always a window start).
    """
    limit = instant + timedelta(days=_HORIZON_DAYS)
    t = instant
    while t <= limit:
        later = t
        for name in zones:
            local = t.astimezone(_tz(name))
            for rule, holiday_states in checks:
                if not _rule_open(t, local, name, rule, holiday_states, margin):
                    opening = _next_opening(t, name, local.date(), rule, holiday_states, margin)
                    if opening is None:
                        return None
                    later = max(later, opening)
        if later == t:
            return t if t > instant else None
        t = later
    return None


def _next_opening(
    t: datetime,
    zone: str,
    local_day: date,
    rule: Rule,
    holiday_states: frozenset[str],
    margin: timedelta,
) -> datetime | None:
    """The first opening of `rule` in `zone` at or after `t`, on a day it allows."""
    for offset in range(_HORIZON_DAYS + 1):
        day = local_day + timedelta(days=offset)
        if day.weekday() not in rule.days:
            continue
        if holiday_states and _is_holiday(day, holiday_states):
            continue
        start, end = _bounds(zone, day, rule.start, rule.end)
        if start >= t and start + margin < end:
            return start
    return None
