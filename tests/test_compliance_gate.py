"""The gate's memo of verdicts is exact: for any sequence of numbers, lead locations,
margins and instants, `ComplianceGate.verdict` answers what `evaluate` answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from predial.compliance import Compliance, LocationKeys, MemoryCapCounter, evaluate
from predial.compliance._gate import ComplianceGate

#: Exchanges of different kinds: Eastern, Central, Mountain without DST (Arizona),
#: split area codes (850 Florida, 915 Texas, 208 Idaho, 270 Kentucky), Alabama
#: (holidays, no Sundays), Puerto Rico, Hawaii, Alaska.
PREFIXES = ["+1202456", "+1305358", "+1405230", "+1602253", "+1850222", "+1915533",
            "+1208334", "+1270745", "+1205254", "+1787722", "+1808586", "+1907465"]  # fmt: skip
LEADS = [None, {}, {"state": "CA"}, {"postalCode": "99501"}, {"timezone": "America/Denver"},
         {"zip": "35203", "state": "AL"}, {"state": ["not", "hashable"]}]  # fmt: skip
START = datetime(2026, 1, 1, tzinfo=UTC)


def _gate() -> ComplianceGate:
    return ComplianceGate(
        lists=None, sources=None, counter=MemoryCapCounter(), wall_clock=START.now
    )


@settings(max_examples=400, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(PREFIXES),
            st.integers(0, 9999),
            st.sampled_from(LEADS),
            st.integers(0, 364),  # the day of the year
            st.integers(0, 23),  # the UTC hour: windows open and close on whole hours
            st.integers(-180, 180),  # seconds around it
        ),
        min_size=1,
        max_size=30,
    ),
    margin=st.sampled_from([0.0, 30.0, 60.0, 90.5, 600.0]),
    walk=st.booleans(),
)
def test_the_memo_answers_what_evaluate_answers(
    calls: list[tuple[str, int, dict[str, object] | None, int, int, int]],
    margin: float,
    walk: bool,
) -> None:
    gate = _gate()
    chosen = Compliance(closing_margin=margin, keys=LocationKeys())
    prefix0, _, lead0, day0, hour0, second0 = calls[0]
    for index, (prefix, line, lead, day, hour, second) in enumerate(calls):
        if walk:  # one exchange, instant after instant across a boundary: memo reused
            prefix, lead = prefix0, lead0
            day, hour, second = day0, hour0, second0 + 20 * index - margin
        at = START + timedelta(days=day, hours=hour, seconds=second)
        number = f"{prefix}{line:04d}"
        expected = evaluate(number, at, lead=lead, closing_margin=margin)
        assert gate.verdict(chosen, number, lead, at) == expected, (number, at, lead)


def test_a_memoised_verdict_ends_where_the_margin_moves_the_close() -> None:
    """DC closes at 21:00 EST (02:00 UTC); with a 30 s margin it counts as closed from
    01:59:30 UTC, within the same UTC minute as an allowed 01:59:10."""
    gate = _gate()
    chosen = Compliance(closing_margin=30.0)
    before = datetime(2026, 12, 2, 1, 59, 10, tzinfo=UTC)
    after = datetime(2026, 12, 2, 1, 59, 30, tzinfo=UTC)
    assert gate.verdict(chosen, "+12024561111", None, before).allowed
    assert not gate.verdict(chosen, "+12024561414", None, after).allowed
    # And a number of the same exchange in the same moment shares the verdict.
    assert gate.verdict(chosen, "+12024560000", None, after) == evaluate(
        "+12024560000", after, closing_margin=30.0
    )


def test_the_lead_location_is_part_of_the_memo() -> None:
    """10:30 EST is 07:30 in California: a lead placed there is refused although the
    DC number alone was allowed a moment before."""
    gate = _gate()
    chosen = Compliance()
    at = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
    assert gate.verdict(chosen, "+12024561111", None, at).allowed
    assert not gate.verdict(chosen, "+12024561111", {"state": "CA"}, at).allowed


def test_equal_but_different_location_values_never_share_a_verdict() -> None:
    """98101.0 is not read as a ZIP; 98101 is (Seattle): 8:30 Eastern is 5:30 Pacific."""
    gate = _gate()
    chosen = Compliance()
    at = datetime(2026, 5, 6, 12, 30, tzinfo=UTC)
    for lead in ({"zip": 98101.0}, {"zip": 98101}, {"zip": True}, {"zip": 1}):
        expected = evaluate("+12024561111", at, lead=lead)
        assert gate.verdict(chosen, "+12024561111", lead, at) == expected, lead


def test_a_memoised_verdict_ends_where_a_window_opens_too() -> None:
    """With a 30 s margin the buckets follow the closing grid (:30); a window still
    opens on the whole minute: a Denver lead's DC number opens at 15:00:00 UTC (8:00
    MST), within the same shifted bucket as a refused 14:59:50."""
    gate = _gate()
    chosen = Compliance(closing_margin=30.0)
    lead = {"timezone": "America/Denver"}
    before = datetime(2026, 1, 1, 14, 59, 50, tzinfo=UTC)
    after = datetime(2026, 1, 1, 15, 0, 10, tzinfo=UTC)
    assert not gate.verdict(chosen, "+12024560000", lead, before).allowed
    assert gate.verdict(chosen, "+12024560001", lead, after).allowed


class _BrokenLists:
    def first_hit(self, number: str, names: object) -> str | None:
        raise IndexError("index out of bounds on dimension 1")


async def test_a_list_that_cannot_be_read_fails_closed() -> None:
    gate = ComplianceGate(
        lists=_BrokenLists(), sources=None, counter=MemoryCapCounter(), wall_clock=START.now
    )
    checked = await gate.check(Compliance(dnc_lists=("national",)), "+12024561111", None)
    assert (checked.reason, checked.retryable) == ("dnc_list_unreadable", True)
