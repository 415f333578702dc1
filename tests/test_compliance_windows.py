"""`predial.compliance.evaluate` (issue 15, work in progress).

Expected values come from the rule text: the federal window is 8 a.m.-9 p.m. callee
local (47 CFR 64.1200(c)(1)); Florida's 8 a.m.-8 p.m. (Fla. Stat. 501.616(6)(a));
a window closing within one minute counts as closed. 2026-12-02 is a Wednesday;
US daylight saving ends 2026-11-01 and starts 2026-03-08.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predial.compliance import evaluate, load_ruleset


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


CASES = [
    # (number, instant, allowed, next_allowed_at or None)
    # Washington DC, federal only: 8:00 ET is 13:00 UTC in December (EST, UTC-5).
    ("+12025550123", utc(2026, 12, 2, 12, 59), False, utc(2026, 12, 2, 13, 0)),
    ("+12025550123", utc(2026, 12, 2, 13, 0), True, None),
    ("+12025550123", utc(2026, 12, 2, 13, 1), True, None),
    # 21:00 ET closes; 20:58 + 1 min < 21:00 is open, 20:59 + 1 min is not.
    ("+12025550123", utc(2026, 12, 3, 1, 58), True, None),
    ("+12025550123", utc(2026, 12, 3, 1, 59), False, utc(2026, 12, 3, 13, 0)),
    ("+12025550123", utc(2026, 12, 3, 2, 0), False, utc(2026, 12, 3, 13, 0)),
    # Tallahassee 850-644, Florida: the panhandle's area code is ET and CT, so the
    # window is 8:00 CT (14:00 UTC) to 20:00 ET (01:00 UTC).
    ("+18506441234", utc(2026, 12, 2, 13, 59), False, utc(2026, 12, 2, 14, 0)),
    ("+18506441234", utc(2026, 12, 2, 14, 0), True, None),
    ("+18506441234", utc(2026, 12, 3, 0, 58), True, None),
    ("+18506441234", utc(2026, 12, 3, 0, 59), False, utc(2026, 12, 3, 14, 0)),
    # Daylight saving: 2026-03-09 (EDT, UTC-4) 8:00 ET is 12:00 UTC.
    ("+12025550123", utc(2026, 3, 9, 11, 59), False, utc(2026, 3, 9, 12, 0)),
    ("+12025550123", utc(2026, 3, 9, 12, 0), True, None),
    # Washington 206 (PT, UTC-8 in December), RCW 19.158.040(2) 8-20: 16:00-04:00 UTC.
    ("+12065551234", utc(2026, 12, 2, 15, 59), False, utc(2026, 12, 2, 16, 0)),
    ("+12065551234", utc(2026, 12, 2, 16, 0), True, None),
    ("+12065551234", utc(2026, 12, 3, 3, 58), True, None),
    ("+12065551234", utc(2026, 12, 3, 3, 59), False, utc(2026, 12, 3, 16, 0)),
    # Oklahoma 405 (CT, UTC-6), 8-20: 14:00-02:00 UTC.
    ("+14055551234", utc(2026, 12, 2, 13, 59), False, utc(2026, 12, 2, 14, 0)),
    ("+14055551234", utc(2026, 12, 2, 14, 0), True, None),
    ("+14055551234", utc(2026, 12, 3, 1, 58), True, None),
    ("+14055551234", utc(2026, 12, 3, 1, 59), False, utc(2026, 12, 3, 14, 0)),
    # Texas 915 (CT and MT, LiveVox), 9-21: opens 9:00 MT = 16:00 UTC, closes 21:00 CT
    # = 03:00 UTC.
    ("+19155551234", utc(2026, 12, 2, 15, 59), False, utc(2026, 12, 2, 16, 0)),
    ("+19155551234", utc(2026, 12, 2, 16, 0), True, None),
    ("+19155551234", utc(2026, 12, 3, 2, 58), True, None),
    ("+19155551234", utc(2026, 12, 3, 2, 59), False, utc(2026, 12, 3, 16, 0)),
    # Idaho 208 (MT and PT), federal 8-21: 8:00 PT = 16:00 UTC to 21:00 MT = 04:00 UTC.
    ("+12085551234", utc(2026, 12, 2, 15, 59), False, utc(2026, 12, 2, 16, 0)),
    ("+12085551234", utc(2026, 12, 3, 3, 58), True, None),
    ("+12085551234", utc(2026, 12, 3, 3, 59), False, utc(2026, 12, 3, 16, 0)),
    # Sioux Falls 605-338 (CT; the area code also MT): opens 8:00 MT = 15:00 UTC.
    ("+16053381234", utc(2026, 12, 2, 14, 59), False, utc(2026, 12, 2, 15, 0)),
    # Nevada 702 (PT), 9-20: 17:00-04:00 UTC.
    ("+17025551234", utc(2026, 12, 2, 16, 59), False, utc(2026, 12, 2, 17, 0)),
    ("+17025551234", utc(2026, 12, 2, 17, 0), True, None),
    ("+17025551234", utc(2026, 12, 3, 3, 58), True, None),
    ("+17025551234", utc(2026, 12, 3, 3, 59), False, utc(2026, 12, 3, 17, 0)),
    # Connecticut 860 (ET, UTC-5), 9-20: 14:00-01:00 UTC.
    ("+18605551234", utc(2026, 12, 2, 13, 59), False, utc(2026, 12, 2, 14, 0)),
    ("+18605551234", utc(2026, 12, 3, 0, 58), True, None),
    ("+18605551234", utc(2026, 12, 3, 0, 59), False, utc(2026, 12, 3, 14, 0)),
    # Kentucky 502 (ET), 10-21: 15:00-02:00 UTC.
    ("+15025551234", utc(2026, 12, 2, 14, 59), False, utc(2026, 12, 2, 15, 0)),
    ("+15025551234", utc(2026, 12, 3, 1, 58), True, None),
    ("+15025551234", utc(2026, 12, 3, 1, 59), False, utc(2026, 12, 3, 15, 0)),
    # Michigan 313 (ET), 9-21: 14:00-02:00 UTC.
    ("+13135551234", utc(2026, 12, 2, 13, 59), False, utc(2026, 12, 2, 14, 0)),
    ("+13135551234", utc(2026, 12, 3, 1, 59), False, utc(2026, 12, 3, 14, 0)),
    # Mississippi 601 (CT), 8-20, no Sundays: Sunday 2026-12-06 noon is closed until
    # Monday 8:00 CT (14:00 UTC); Saturday noon is open.
    ("+16019481234", utc(2026, 12, 6, 18, 0), False, utc(2026, 12, 7, 14, 0)),
    ("+16019481234", utc(2026, 12, 5, 18, 0), True, None),
    # Daylight saving ends 2026-11-01 at 2:00: 8:00 EDT on 10-31 is 12:00 UTC, 8:00 EST
    # on 11-01 is 13:00 UTC.
    ("+12025550123", utc(2026, 10, 31, 12, 0), True, None),
    ("+12025550123", utc(2026, 11, 1, 12, 30), False, utc(2026, 11, 1, 13, 0)),
    # It starts 2026-03-08 at 2:00: 8:00 EST on 03-07 is 13:00 UTC, 8:00 EDT on 03-08 is
    # 12:00 UTC.
    ("+12025550123", utc(2026, 3, 7, 12, 30), False, utc(2026, 3, 7, 13, 0)),
    ("+12025550123", utc(2026, 3, 8, 11, 59), False, utc(2026, 3, 8, 12, 0)),
    # Late evening: the next window is the next morning's.
    ("+12025550123", utc(2026, 12, 2, 3, 0), False, utc(2026, 12, 2, 13, 0)),
    # Nothing places a number: every continental zone, 8:00 PT = 16:00 UTC in December.
    ("+442079460000", utc(2026, 12, 2, 15, 59), False, utc(2026, 12, 2, 16, 0)),
    ("+442079460000", utc(2026, 12, 2, 16, 0), True, None),
]


@pytest.mark.parametrize(("number", "at", "allowed", "next_at"), CASES)
def test_the_rule_text_decides(
    number: str, at: datetime, allowed: bool, next_at: datetime | None
) -> None:
    verdict = evaluate(number, at)
    assert verdict.allowed is allowed
    assert verdict.next_allowed_at == next_at
    assert verdict.reason == (None if allowed else "outside_calling_window")


def test_a_lead_in_another_state_narrows_the_window() -> None:
    """A DC number whose lead lives in California: 8:00 PT (16:00 UTC) opens it."""
    lead = {"state": "CA"}
    assert not evaluate("+12025550123", utc(2026, 12, 2, 15, 59), lead=lead).allowed
    assert evaluate("+12025550123", utc(2026, 12, 2, 16, 0), lead=lead).allowed


NUMBERS = [
    "+12025550123",
    "+18504341234",
    "+18506441234",
    "+16053381234",
    "+12085551234",
    "+14055551234",
    "+12065551234",
    "+19155551234",
    "+442079460000",
]


def _inside_every_window(number: str, at: datetime) -> bool:
    """An independent reading of the verdict's zones and rules: wall clock in each zone."""
    verdict = evaluate(number, at)
    ruleset = load_ruleset("us")
    applied = [r for r in ruleset.rules if f"us@{ruleset.version}:{r.id}" in verdict.rules]
    for source in verdict.zones:
        local = at.astimezone(ZoneInfo(source.zone))
        later = (at + timedelta(minutes=1)).astimezone(ZoneInfo(source.zone))
        for rule in applied:
            if local.weekday() not in rule.days or not rule.start <= local.time():
                return False
            if later.date() != local.date() or not later.time() < rule.end:
                return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    number=st.sampled_from(NUMBERS),
    at=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_allowed_means_inside_every_window_and_next_allowed_is_allowed(
    number: str, at: datetime
) -> None:
    verdict = evaluate(number, at)
    if verdict.allowed:
        assert _inside_every_window(number, at)
    else:
        assert verdict.next_allowed_at is not None
        assert verdict.next_allowed_at > at
        assert evaluate(number, verdict.next_allowed_at).allowed
