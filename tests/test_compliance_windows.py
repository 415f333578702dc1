"""`predial.compliance.evaluate`: the acceptance table and the property.

Every expected value is worked out by hand from the rule text (rules/us.toml, each
rule citing its source), never by running the code:
- federal: 8 a.m.-9 p.m. callee local (47 CFR 64.1200(c)(1));
- FL, OK, WA, AL/LA, MS 8-20; TX, MI/MN/NM 9-21; CT, NV 9-20; KY 10-21;
  AL/LA: no Sundays, no state holidays; MS: no Sundays;
- a window closing within one minute counts as closed (allowed iff at + 1 min < end);
- the intersection: every rule that applies, in every zone a source names; the rules
  of every state a source names apply in every zone considered;
- unknown location: the four continental zones under every rule: 10:00 PT (KY's
  opening in the westernmost zone) to 20:00 ET (the 8-8 states' closing in the
  easternmost), Monday-Saturday, not on an AL or LA holiday.
Offsets: EST UTC-5, CST -6, MST -7, PST -8 in winter (EDT -4, CDT -5, PDT -7 in
summer); Puerto Rico AST UTC-4 all year. 2026-12-02 is a Wednesday; US daylight
saving starts 2026-03-08 and ends 2026-11-01 (both Sundays). Holidays (the holidays
package's lists for AL and LA): 2026-02-16 Mon Washington's Birthday (LA), 02-17 Tue
Mardi Gras (LA), 04-03 Fri Good Friday (LA), 06-01 Mon Jefferson Davis' Birthday (AL),
07-03 Fri Independence Day observed and 07-04 Sat (both), 12-25 Fri Christmas (both).
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predial.compliance import LocationKeys, ZoneSource, evaluate, load_ruleset
from predial.errors import ConfigurationError


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
]


# The same table with a lead's metadata: (number, lead, instant, allowed, next).
# Leads' metadata used in the table below.
PENSACOLA = {"postalCode": "32501"}  # 325xx: FL
SEATTLE = {"postalCode": "98101"}  # 981xx: WA
BEVERLY_HILLS = {"postal_code": "90210"}  # 902xx: CA
PACIFIC = {"timezone": "America/Los_Angeles"}
PACIFIC_CAMEL = {"timeZone": "America/Los_Angeles"}
CALIFORNIA = {"state": "California"}

LEAD_CASES: list[tuple[str, Any, datetime, bool, datetime | None]] = [
    # Florida 305 (Miami, ET), Fla. Stat. 501.616(6)(a) 8-20: 13:00-01:00 UTC.
    ("+13055551234", None, utc(2026, 12, 2, 12, 59), False, utc(2026, 12, 2, 13, 0)),
    ("+13055551234", None, utc(2026, 12, 2, 13, 0), True, None),
    ("+13055551234", None, utc(2026, 12, 2, 13, 1), True, None),
    # 19:58 ET + 1 min = 19:59 < 20:00: open; 19:59 + 1 = 20:00: closed; 20:00 closed.
    ("+13055551234", None, utc(2026, 12, 3, 0, 58), True, None),
    ("+13055551234", None, utc(2026, 12, 3, 0, 59), False, utc(2026, 12, 3, 13, 0)),
    ("+13055551234", None, utc(2026, 12, 3, 1, 0), False, utc(2026, 12, 3, 13, 0)),
    # Alabama 205 (Birmingham, CT), 8-20 Mon-Sat, no holidays: 14:00-02:00 UTC.
    ("+12055551234", None, utc(2026, 12, 2, 13, 59), False, utc(2026, 12, 2, 14, 0)),
    ("+12055551234", None, utc(2026, 12, 2, 14, 0), True, None),
    ("+12055551234", None, utc(2026, 12, 2, 14, 1), True, None),
    ("+12055551234", None, utc(2026, 12, 3, 1, 58), True, None),
    ("+12055551234", None, utc(2026, 12, 3, 1, 59), False, utc(2026, 12, 3, 14, 0)),
    ("+12055551234", None, utc(2026, 12, 3, 2, 0), False, utc(2026, 12, 3, 14, 0)),
    # Sunday 12-06 noon CT: closed until Monday 8:00 CT = 14:00 UTC.
    ("+12055551234", None, utc(2026, 12, 6, 18, 0), False, utc(2026, 12, 7, 14, 0)),
    # Christmas, Friday 12-25, noon CT: closed until Saturday 12-26 8:00 CT (14:00 UTC);
    # the day before is an ordinary Thursday (14:00 CT open).
    ("+12055551234", None, utc(2026, 12, 25, 18, 0), False, utc(2026, 12, 26, 14, 0)),
    ("+12055551234", None, utc(2026, 12, 24, 20, 0), True, None),
    # Sunday 05-31 then Jefferson Davis' Birthday, Monday 06-01: Tuesday 06-02 8:00 CDT
    # = 13:00 UTC.
    ("+12055551234", None, utc(2026, 5, 31, 15, 0), False, utc(2026, 6, 2, 13, 0)),
    # Friday 07-03 (Independence Day observed), Saturday 07-04, Sunday 07-05: Monday
    # 07-06 8:00 CDT = 13:00 UTC.
    ("+12055551234", None, utc(2026, 7, 3, 15, 0), False, utc(2026, 7, 6, 13, 0)),
    # Louisiana 504 (New Orleans, CT): Washington's Birthday Monday 02-16 and Mardi Gras
    # Tuesday 02-17 are LA holidays: Wednesday 02-18 8:00 CST = 14:00 UTC.
    ("+15045551234", None, utc(2026, 2, 16, 18, 0), False, utc(2026, 2, 18, 14, 0)),
    ("+15045551234", None, utc(2026, 2, 17, 18, 0), False, utc(2026, 2, 18, 14, 0)),
    # Good Friday 04-03: Saturday 04-04 8:00 CDT = 13:00 UTC; an ordinary Wednesday opens
    # at 8:00 CST = 14:00 UTC.
    ("+15045551234", None, utc(2026, 4, 3, 15, 0), False, utc(2026, 4, 4, 13, 0)),
    ("+15045551234", None, utc(2026, 12, 2, 14, 0), True, None),
    # Oklahoma 405 (CT) across daylight saving: it starts Sunday 03-08 at 2:00, so 8:00
    # CDT = 13:00 UTC (from 01:00 CST, 07:00 UTC, the next opening is that one).
    ("+14055551234", None, utc(2026, 3, 8, 7, 0), False, utc(2026, 3, 8, 13, 0)),
    ("+14055551234", None, utc(2026, 3, 8, 12, 59), False, utc(2026, 3, 8, 13, 0)),
    ("+14055551234", None, utc(2026, 3, 8, 13, 0), True, None),
    # It ends Sunday 11-01: 10-31 closes at 20:00 CDT = 01:00 UTC; 11-01 opens at 8:00
    # CST = 14:00 UTC.
    ("+14055551234", None, utc(2026, 11, 1, 0, 58), True, None),
    ("+14055551234", None, utc(2026, 11, 1, 0, 59), False, utc(2026, 11, 1, 14, 0)),
    ("+14055551234", None, utc(2026, 11, 1, 13, 30), False, utc(2026, 11, 1, 14, 0)),
    # Washington 206 on 03-08: 8:00 PDT = 15:00 UTC.
    ("+12065551234", None, utc(2026, 3, 8, 14, 59), False, utc(2026, 3, 8, 15, 0)),
    ("+12065551234", None, utc(2026, 3, 8, 15, 0), True, None),
    # Puerto Rico 787 (AST, UTC-4, no DST), federal 8-21: 12:00-01:00 UTC.
    ("+17875551234", None, utc(2026, 12, 2, 11, 59), False, utc(2026, 12, 2, 12, 0)),
    ("+17875551234", None, utc(2026, 12, 2, 12, 0), True, None),
    ("+17875551234", None, utc(2026, 12, 3, 0, 59), False, utc(2026, 12, 3, 12, 0)),
    # Split area code 850 (Pensacola 850-434, CT; the area code ET and CT) with a
    # Pensacola ZIP (325: FL, ET and CT): the same zones, FL 8-20: 8:00 CT = 14:00 UTC.
    ("+18504341234", PENSACOLA, utc(2026, 12, 2, 13, 59), False, utc(2026, 12, 2, 14, 0)),
    ("+18504341234", PENSACOLA, utc(2026, 12, 2, 14, 0), True, None),
    # ... with a disagreeing Seattle ZIP (981: WA, PT): ET, CT and PT under the federal,
    # FL and WA rules: 8:00 PT = 16:00 UTC to 20:00 ET = 01:00 UTC.
    ("+18504341234", SEATTLE, utc(2026, 12, 2, 15, 59), False, utc(2026, 12, 2, 16, 0)),
    ("+18504341234", SEATTLE, utc(2026, 12, 2, 16, 0), True, None),
    ("+18504341234", SEATTLE, utc(2026, 12, 3, 0, 58), True, None),
    ("+18504341234", SEATTLE, utc(2026, 12, 3, 0, 59), False, utc(2026, 12, 3, 16, 0)),
    # DC 202 (ET) with a Birmingham ZIP (352: AL, CT): AL's 8-20 Mon-Sat in ET and CT:
    # 8:00 CT = 14:00 UTC; Sunday closed until Monday 14:00 UTC.
    ("+12025550123", {"zip": "35203"}, utc(2026, 12, 2, 13, 59), False, utc(2026, 12, 2, 14, 0)),
    ("+12025550123", {"zip": "35203"}, utc(2026, 12, 6, 18, 0), False, utc(2026, 12, 7, 14, 0)),
    # ZIP+4 (837: ID, Boise and Los Angeles zones) agrees with Idaho 208: 8:00 PT opens.
    ("+12085551234", {"zipCode": "83702-1234"}, utc(2026, 12, 2, 16, 0), True, None),
    # DC with a Beverly Hills ZIP (902: CA, PT), federal only: 8:00 PT = 16:00 UTC.
    ("+12025550123", BEVERLY_HILLS, utc(2026, 12, 2, 15, 59), False, utc(2026, 12, 2, 16, 0)),
    ("+12025550123", BEVERLY_HILLS, utc(2026, 12, 2, 16, 0), True, None),
    # Seattle 206 with a ZIP a spreadsheet left as the number 2134 (02134, MA, ET): PT
    # and ET under WA's 8-20: 16:00 UTC to 20:00 ET = 01:00 UTC.
    ("+12065551234", {"zip": 2134}, utc(2026, 12, 3, 0, 58), True, None),
    ("+12065551234", {"zip": 2134}, utc(2026, 12, 3, 0, 59), False, utc(2026, 12, 3, 16, 0)),
    # Malformed postal codes are ignored: DC alone, 8:00 ET = 13:00 UTC opens.
    ("+12025550123", {"zip": "ABCDE"}, utc(2026, 12, 2, 13, 0), True, None),
    ("+12025550123", {"zip": "1234"}, utc(2026, 12, 2, 13, 0), True, None),
    ("+12025550123", {"zip": "123456"}, utc(2026, 12, 2, 13, 0), True, None),
    ("+12025550123", {"zip": ["98101"]}, utc(2026, 12, 2, 13, 0), True, None),
    # A lead's time zone and its state (by name) narrow it to 8:00 PT = 16:00 UTC; an
    # unknown time zone name is ignored.
    ("+12025550123", PACIFIC, utc(2026, 12, 2, 15, 59), False, utc(2026, 12, 2, 16, 0)),
    ("+12025550123", PACIFIC_CAMEL, utc(2026, 12, 3, 1, 59), False, utc(2026, 12, 3, 16, 0)),
    ("+12025550123", CALIFORNIA, utc(2026, 12, 2, 15, 59), False, utc(2026, 12, 2, 16, 0)),
    ("+12025550123", {"timezone": "Not/AZone"}, utc(2026, 12, 2, 13, 0), True, None),
    # Unknown location (toll-free 800: phonenumbers names 42 zones, no state): the
    # conservative window, 10:00 PST = 18:00 UTC to 20:00 EST = 01:00 UTC, Mon-Sat.
    ("+18005551234", None, utc(2026, 12, 2, 17, 59), False, utc(2026, 12, 2, 18, 0)),
    ("+18005551234", None, utc(2026, 12, 2, 18, 0), True, None),
    ("+18005551234", None, utc(2026, 12, 3, 0, 58), True, None),
    ("+18005551234", None, utc(2026, 12, 3, 0, 59), False, utc(2026, 12, 3, 18, 0)),
    ("+18005551234", None, utc(2026, 12, 5, 18, 0), True, None),
    # Sunday is closed everywhere (AL/LA/MS), and so is Christmas (AL/LA holiday).
    ("+18005551234", None, utc(2026, 12, 6, 20, 0), False, utc(2026, 12, 7, 18, 0)),
    ("+18005551234", None, utc(2026, 12, 25, 18, 0), False, utc(2026, 12, 26, 18, 0)),
    # A non-geographic 500 number is unknown too.
    ("+15005551234", None, utc(2026, 12, 2, 17, 59), False, utc(2026, 12, 2, 18, 0)),
    # A toll-free number whose lead says CA: placed (PT), the federal rule: 16:00 UTC.
    ("+18005551234", {"state": "CA"}, utc(2026, 12, 2, 16, 0), True, None),
]

TABLE = [(n, None, at, ok, nxt) for n, at, ok, nxt in CASES] + LEAD_CASES


def test_the_table_has_the_cases_acceptance_asks_for() -> None:
    assert len(TABLE) >= 60


@pytest.mark.parametrize(("number", "lead", "at", "allowed", "next_at"), TABLE)
def test_the_rule_text_decides(
    number: str, lead: Any, at: datetime, allowed: bool, next_at: datetime | None
) -> None:
    verdict = evaluate(number, at, lead=lead)
    assert verdict.allowed is allowed
    assert verdict.next_allowed_at == next_at
    assert verdict.reason == (None if allowed else "outside_calling_window")


def test_a_lead_in_another_state_narrows_the_window() -> None:
    """A DC number whose lead lives in California: 8:00 PT (16:00 UTC) opens it."""
    lead = {"state": "CA"}
    assert not evaluate("+12025550123", utc(2026, 12, 2, 15, 59), lead=lead).allowed
    assert evaluate("+12025550123", utc(2026, 12, 2, 16, 0), lead=lead).allowed


def test_a_disagreeing_postal_code_is_named_as_a_source() -> None:
    verdict = evaluate("+18504341234", utc(2026, 12, 2, 16, 0), lead={"postalCode": "98101"})
    assert ZoneSource("America/Chicago", "number", "FL") in verdict.zones
    assert ZoneSource("America/New_York", "area-code", "FL") in verdict.zones
    assert ZoneSource("America/Los_Angeles", "lead.postal_code", "WA") in verdict.zones
    version = load_ruleset("us").version
    assert verdict.rules == (
        f"us@{version}:us.federal.hours",
        f"us@{version}:us.fl.hours",
        f"us@{version}:us.wa.hours",
    )


def test_a_predial_lead_is_read_like_its_metadata() -> None:
    from predial import Lead

    lead = Lead(campaign_id="c", phone_number="+12025550123", metadata={"zip": "90210"})
    assert not evaluate("+12025550123", utc(2026, 12, 2, 15, 59), lead=lead).allowed
    bare = Lead(campaign_id="c", phone_number="+12025550123")
    assert evaluate("+12025550123", utc(2026, 12, 2, 15, 59), lead=bare).allowed


def test_the_metadata_key_names_are_configurable() -> None:
    """A CRM spelling the ZIP `cp`: read with its keys (Seattle: WA, 8:00 PT = 16:00
    UTC), not with the defaults (DC alone: open from 13:00 UTC)."""
    lead = {"cp": "98101", "region": "AL"}
    at = utc(2026, 12, 2, 15, 0)
    assert evaluate("+12025550123", at, lead=lead).allowed
    keys = LocationKeys(postal_code=("cp",))
    assert not evaluate("+12025550123", at, lead=lead, keys=keys).allowed
    # A single name as a string; AL's zone (CT) then opens at 14:00 UTC.
    keys = LocationKeys(state="region")
    assert keys.state == ("region",)
    assert not evaluate("+12025550123", utc(2026, 12, 2, 13, 59), lead=lead, keys=keys).allowed


@pytest.mark.parametrize("bad", [(), ("",), (1,), 5])
def test_location_keys_refuse_what_names_no_key(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"LocationKeys\.timezone"):
        LocationKeys(timezone=bad)


def test_caps_name_the_capped_rules_that_apply() -> None:
    at = utc(2026, 12, 2, 16, 0)
    assert evaluate("+14055551234", at).caps == (("us.ok.hours", 3, 86_400.0),)
    assert evaluate("+18504341234", at, lead={"zip": "73301"}).caps == (
        ("us.fl.hours", 3, 86_400.0),
    )  # 733 is TX (the IRS at Austin), not OK: only Florida's cap
    assert evaluate("+12025550123", at).caps == ()
    # A refusal names them too: the gate counts only allowed calls anyway.
    assert evaluate("+14055551234", utc(2026, 12, 2, 3, 0)).caps == (("us.ok.hours", 3, 86_400.0),)


def test_the_closing_margin_is_configurable() -> None:
    """DC closes at 21:00 ET = 02:00 UTC."""
    assert evaluate("+12025550123", utc(2026, 12, 3, 1, 59), closing_margin=0).allowed
    five = timedelta(minutes=5)
    assert evaluate("+12025550123", utc(2026, 12, 3, 1, 54), closing_margin=five).allowed
    assert not evaluate("+12025550123", utc(2026, 12, 3, 1, 55), closing_margin=five).allowed
    with pytest.raises(ValueError, match="closing_margin"):
        evaluate("+12025550123", utc(2026, 12, 3, 1, 0), closing_margin=-1)


@pytest.mark.parametrize("number", ["+442079460000", "+14165551234", "+18765551234"])
def test_a_number_outside_the_ruleset_is_refused_for_good(number: str) -> None:
    """London, Toronto and Jamaica: the us ruleset has no rule for them."""
    verdict = evaluate(number, utc(2026, 12, 2, 18, 0), lead={"state": "NY"})
    assert verdict.allowed is False
    assert verdict.reason == "number_outside_ruleset"
    assert verdict.next_allowed_at is None
    assert verdict.zones == ()


@pytest.mark.parametrize("number", ["not a number", "", "+1 123 456 7890", "+44 1", 12025550123])
def test_an_invalid_phone_number_is_a_value_error_naming_it(number: Any) -> None:
    with pytest.raises(ValueError, match="phone_number"):
        evaluate(number, utc(2026, 12, 2, 18, 0))


def test_a_formatted_number_is_read_as_e164() -> None:
    assert evaluate("+1 (202) 555-0123", utc(2026, 12, 2, 13, 0)).allowed


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        evaluate("+12025550123", datetime(2026, 12, 2, 13, 0))


def test_an_unknown_ruleset_names_the_shipped_ones() -> None:
    with pytest.raises(ConfigurationError, match="no ruleset 'uk'.*us"):
        evaluate("+12025550123", utc(2026, 12, 2, 13, 0), rules="uk")


def test_state_holidays_without_the_holidays_package_fail_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "holidays" else real(name, *a)
    )
    with pytest.raises(ConfigurationError, match=r"us\.al-la\.hours.*predial\[compliance\]"):
        load_ruleset.__wrapped__("us")


def test_every_zone_in_the_data_exists_and_every_zip_state_has_zones() -> None:
    ruleset = load_ruleset("us")
    for zones in (*ruleset.state_zones.values(), *ruleset.split_area_codes.values()):
        for zone in zones:
            ZoneInfo(zone)
    for zone in ruleset.unknown_zones:
        ZoneInfo(zone)
    assert len(ruleset.zip3) > 900
    placed = {s for states in ruleset.zip3.values() for s in states if s in ruleset.state_zones}
    assert placed == set(ruleset.state_zones)  # every state has a ZIP prefix, and back


JUNK = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.lists(st.text(max_size=5), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    st.from_regex(r"\d{3,10}(-\d{0,5})?", fullmatch=True),
)


@settings(max_examples=200, deadline=None)
@given(zip_=JUNK, state=JUNK, zone=JUNK)
def test_any_lead_metadata_only_narrows_a_placed_number(zip_: Any, state: Any, zone: Any) -> None:
    """Whatever the metadata holds, evaluate answers (malformed values are ignored), and
    a lead can only add zones and rules to a number that places itself: allowed with
    the lead implies allowed without it."""
    lead = {"zip": zip_, "state": state, "timezone": zone}
    for at in (utc(2026, 12, 2, 13, 30), utc(2026, 12, 2, 18, 0), utc(2026, 12, 3, 1, 30)):
        if evaluate("+12025550123", at, lead=lead).allowed:
            assert evaluate("+12025550123", at).allowed


def test_a_zip_plus_4_without_its_hyphen_is_read() -> None:
    """123456789: ZIP 12345 (Schenectady NY, ET) with a Seattle number (PT): WA's 8-20
    closes at 20:00 ET = 01:00 UTC."""
    assert not evaluate("+12065551234", utc(2026, 12, 3, 0, 59), lead={"zip": "123456789"}).allowed
    assert evaluate("+12065551234", utc(2026, 12, 3, 0, 59)).allowed


# ---- the property ---------------------------------------------------------------

NUMBERS = [
    "+12025550123",
    "+18504341234",
    "+18506441234",
    "+16053381234",
    "+12085551234",
    "+14055551234",
    "+12065551234",
    "+19155551234",
    "+12055551234",
    "+15045551234",
    "+16015551234",
    "+18005551234",
    "+17875551234",
]

LEADS = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "postalCode": st.sampled_from(
                ["35203", "70112", "98101", "32501", "73301", "10001", "83702-1234", "ABCDE", 2134]
            ),
            "state": st.sampled_from(["AL", "LA", "MS", "TX", "CA", "Kentucky", "XX"]),
            "timezone": st.sampled_from(
                ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix"]
            ),
        },
    ),
)


def _inside_every_window(verdict: Any, at: datetime) -> bool:
    """An independent reading of the verdict's zones and rules: wall clock in each zone,
    the weekday, the holidays of the rule's states among those the verdict names."""
    ruleset = load_ruleset("us")
    applied = [r for r in ruleset.rules if ruleset.qualified(r) in verdict.rules]
    named = {z.state for z in verdict.zones if z.state}
    for source in verdict.zones:
        local = at.astimezone(ZoneInfo(source.zone))
        later = (at + timedelta(minutes=1)).astimezone(ZoneInfo(source.zone))
        for rule in applied:
            if local.weekday() not in rule.days or not rule.start <= local.time():
                return False
            if later.date() != local.date() or not later.time() < rule.end:
                return False
            if rule.state_holidays:
                for state in (rule.states & named) if named else rule.states:
                    if local.date() in holidays.US(subdiv=state, years=local.year):
                        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    number=st.sampled_from(NUMBERS),
    lead=LEADS,
    at=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_allowed_means_inside_every_window_and_next_allowed_is_allowed(
    number: str, lead: Any, at: datetime
) -> None:
    verdict = evaluate(number, at, lead=lead)
    if verdict.allowed:
        assert _inside_every_window(verdict, at)
    else:
        assert verdict.next_allowed_at is not None
        assert verdict.next_allowed_at > at
        assert evaluate(number, verdict.next_allowed_at, lead=lead).allowed
        # ... and it is the first: an intersection of windows opens when one of them
        # opens, so no window start in between is allowed.
        for start in _window_starts(verdict, at, verdict.next_allowed_at):
            assert not evaluate(number, start, lead=lead).allowed


def _window_starts(verdict: Any, after: datetime, before: datetime) -> list[datetime]:
    ruleset = load_ruleset("us")
    starts = {r.start for r in ruleset.rules if ruleset.qualified(r) in verdict.rules}
    found = []
    for source in verdict.zones:
        zone = ZoneInfo(source.zone)
        day = after.astimezone(zone).date()
        while datetime.combine(day, datetime.min.time(), zone) < before:
            for start in starts:
                instant = datetime.combine(day, start, zone).astimezone(UTC)
                if after < instant < before:
                    found.append(instant)
            day += timedelta(days=1)
    return found


@pytest.mark.parametrize(
    "at", [datetime(9999, 12, 31, 23, 0, tzinfo=UTC), datetime(1, 1, 1, 0, 0, tzinfo=UTC)]
)
def test_the_calendars_ends_are_a_clear_error(at: datetime) -> None:
    with pytest.raises(ValueError, match="at must be between"):
        evaluate("+12024561111", at)
