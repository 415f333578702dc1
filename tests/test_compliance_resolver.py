"""The compliance gate in the resolver: every source a number can come from (crm,
cache, stale, stored) × every verdict (inside the window, outside it, on a
do-not-call list, over a frequency cap).

The callee is in Miami (305, Eastern): Florida's rule (Fla. Stat. 501.616(6)(a)) allows
8 a.m.–8 p.m. local and at most 3 calls per 24 hours. Every expected value below is
worked out from that rule, not from running the code.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Script, ScriptPlugin

import predial
from predial import (
    AdapterUnavailable,
    Campaign,
    Lead,
    RedisTier,
    Resolution,
    Resolver,
    RetrySettings,
)
from predial.compliance import Compliance
from predial.errors import ConfigurationError, Unresolvable

MIAMI = "+13053581234"
DC_STORED = "+12024561111"  # the lead's stored number where the CRM's is the one checked

#: Wednesday 2 December 2026, 10:00 EST (UTC-5): inside Florida's 8:00–20:00.
INSIDE = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
#: Wednesday 20:30 EST: Florida's window closed at 20:00.
OUTSIDE = datetime(2026, 12, 3, 1, 30, tzinfo=UTC)
#: Thursday 08:00 EST, the next opening: 11 h 30 min after OUTSIDE.
NEXT_OPENING = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)

SOURCES = ("crm", "cache", "stale", "stored")
VERDICTS = ("inside", "outside", "dnc", "cap")


class WallClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def put_on_list(directory: Path, name: str, numbers: list[str]) -> None:
    from predial.compliance import DncList

    DncList(directory, name).add(numbers, by="test")


@dataclass
class World:
    resolver: Resolver
    script: Script
    wall: WallClock
    clock: FakeClock
    lead: Lead


def build(tmp_path: Path, source: str, lists: tuple[str, ...] = ("internal",)) -> World:
    put_on_list(tmp_path, "internal", [])  # the list exists, empty
    script = Script(answer=MIAMI)
    wall = WallClock(INSIDE - timedelta(hours=1))
    clock = FakeClock()
    resolver = Resolver(
        [
            Campaign(
                "c",
                "scripted",
                {"script": script},
                default_region="US",
                compliance=Compliance(rules="us", dnc_lists=lists),
            )
        ],
        plugins=[ScriptPlugin()],
        load_entrypoints=False,
        retry=RetrySettings(attempts=1),
        clock=clock,
        wall_clock=wall,
        dnc_dir=tmp_path,
    )
    stored = MIAMI if source == "stored" else DC_STORED
    lead = Lead(campaign_id="c", external_id="lead-1", phone_number=stored)
    return World(resolver, script, wall, clock, lead)


async def prepare(world: World, source: str) -> int:
    """Bring the lead to the state where resolving it gives `source`; the calls this
    counts against the number's cap (ok decisions for MIAMI) are returned."""
    if source in ("cache", "stale"):
        assert (await world.resolver.resolve(world.lead)).source == "crm"
        if source == "stale":
            world.clock.advance(301)  # past the 300 s positive TTL, within the grace
            world.script.answer = AdapterUnavailable("CRM down")
        return 1
    if source == "stored":
        world.script.answer = lambda external_id: None if external_id == "lead-1" else MIAMI
    return 0


async def fill_cap(world: World, already: int) -> None:
    """Other leads with the same number, dialled an hour before INSIDE, until the
    number has had its 3 calls."""
    answer = world.script.answer
    world.script.answer = MIAMI
    for index in range(3 - already):
        other = Lead(campaign_id="c", external_id=f"other-{index}")
        assert (await world.resolver.resolve(other)).phone_number == MIAMI
    world.script.answer = answer


@pytest.mark.parametrize("verdict", VERDICTS)
@pytest.mark.parametrize("source", SOURCES)
async def test_every_source_passes_the_gate(tmp_path: Path, source: str, verdict: str) -> None:
    world = build(tmp_path, source)
    async with world.resolver as resolver:
        counted = await prepare(world, source)
        if verdict == "cap":
            await fill_cap(world, counted)
        if verdict == "dnc":
            put_on_list(tmp_path, "internal", [MIAMI])
            world.clock.advance(1.5)  # lists are re-read at most once a second
        world.wall.now = OUTSIDE if verdict == "outside" else INSIDE

        if verdict == "inside":
            result = await resolver.resolve(world.lead)
            assert isinstance(result, Resolution)
            assert (result.source, result.phone_number) == (source, MIAMI)
            return
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(world.lead)
        refusal = caught.value
        if verdict == "outside":
            assert (refusal.reason, refusal.retryable) == ("outside_calling_window", True)
            assert refusal.next_allowed_at == NEXT_OPENING
            assert refusal.retry_after == 11.5 * 3600
        elif verdict == "dnc":
            assert (refusal.reason, refusal.retryable) == ("do_not_call_list", False)
            assert refusal.list_name == "internal"
        else:
            # The first of the 3 calls was an hour before INSIDE: it leaves the
            # 24-hour window 23 hours after INSIDE.
            assert (refusal.reason, refusal.retryable) == ("call_cap_reached", True)
            assert refusal.retry_after == 23 * 3600
            assert refusal.next_allowed_at == INSIDE + timedelta(hours=23)
        stats = resolver.stats()
        assert stats.refusals[refusal.reason] == 1


async def test_a_refused_number_never_falls_back_to_the_stored_one(tmp_path: Path) -> None:
    """The CRM's number is listed; the lead's stored number (DC) is not: still skip."""
    world = build(tmp_path, "crm")
    put_on_list(tmp_path, "internal", [MIAMI])
    world.clock.advance(1.5)  # lists are re-read at most once a second
    world.wall.now = INSIDE
    async with world.resolver as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(world.lead)
    assert caught.value.reason == "do_not_call_list"
    assert resolver.stats().stored == 0


async def test_a_standard_mode_lead_passes_the_gate_too(tmp_path: Path) -> None:
    world = build(tmp_path, "stored")
    world.wall.now = OUTSIDE
    async with world.resolver as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(Lead(campaign_id="c", phone_number=MIAMI))
    assert caught.value.reason == "outside_calling_window"


async def test_only_ok_decisions_count_against_the_cap(tmp_path: Path) -> None:
    """Refusals (outside the window) do not use up the number's calls."""
    world = build(tmp_path, "crm")
    async with world.resolver as resolver:
        world.wall.now = OUTSIDE
        for _ in range(5):
            with pytest.raises(Unresolvable):
                await resolver.resolve(world.lead)
        world.wall.now = INSIDE
        for index in range(3):
            lead = Lead(campaign_id="c", external_id=f"x-{index}")
            assert (await resolver.resolve(lead)).phone_number == MIAMI
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(world.lead)
    assert caught.value.reason == "call_cap_reached"


async def test_a_campaign_without_compliance_is_not_gated(tmp_path: Path) -> None:
    script = Script(answer=MIAMI)
    resolver = Resolver(
        [Campaign("c", "scripted", {"script": script}, default_region="US")],
        plugins=[ScriptPlugin()],
        load_entrypoints=False,
        wall_clock=WallClock(OUTSIDE),
    )
    async with resolver:
        assert (await resolver.resolve(Lead(campaign_id="c", external_id="a"))).source == "crm"


def test_a_missing_list_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="national"):
        build(tmp_path, "crm", lists=("internal", "national"))


def test_lists_without_a_folder_fail_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="dnc_dir"):
        Resolver(
            [Campaign("c", "scripted", {"script": Script()}, compliance=_with_lists())],
            plugins=[ScriptPlugin()],
            load_entrypoints=False,
        )


def _with_lists() -> Any:
    return Compliance(rules="us", dnc_lists=("internal",))


@pytest.mark.parametrize(
    ("value", "message"),
    [("mars", "no ruleset 'mars'"), (42, "ruleset name"), ("../us", "no ruleset")],
)
def test_a_wrong_compliance_value_names_the_campaign(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Campaign("c", "scripted", compliance=value)  # type: ignore[arg-type]
    assert "campaign 'c'" in str(caught.value)


# -- plugin sources and fleet-wide caps, through the resolver ----------------------------


class ScrubPlugin:
    """A do-not-call source registered by a plugin: lists MIAMI; `down` makes it fail."""

    def __init__(self) -> None:
        self.down = False
        self.asked: list[str] = []

    @predial.hookimpl
    def register_dnc_sources(self, register: predial.DncSourceRegister) -> None:
        async def listed(number: str) -> bool:
            self.asked.append(number)
            if self.down:
                raise ConnectionError("the scrub service is down")
            return number == MIAMI

        register("scrub", listed, timeout=0.5, retry_after=30)


def scrubbed(tmp_path: Path, plugin: ScrubPlugin, answer: str) -> Resolver:
    return Resolver(
        [
            Campaign(
                "c",
                "scripted",
                {"script": Script(answer=answer)},
                default_region="US",
                compliance=Compliance(dnc_sources=("scrub",)),
            )
        ],
        plugins=[ScriptPlugin(), plugin],
        load_entrypoints=False,
        wall_clock=WallClock(INSIDE),
    )


async def test_a_plugin_source_listing_the_number_skips_the_lead(tmp_path: Path) -> None:
    plugin = ScrubPlugin()
    async with scrubbed(tmp_path, plugin, MIAMI) as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(Lead(campaign_id="c", external_id="a", phone_number=DC_STORED))
    assert (caught.value.reason, caught.value.retryable) == ("do_not_call_list", False)
    assert caught.value.list_name == "scrub"
    assert plugin.asked == [MIAMI]


async def test_a_plugin_source_that_cannot_answer_fails_closed(tmp_path: Path) -> None:
    plugin = ScrubPlugin()
    plugin.down = True
    async with scrubbed(tmp_path, plugin, DC_STORED) as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(Lead(campaign_id="c", external_id="a"))
        assert (caught.value.reason, caught.value.retryable) == ("dnc_source_unavailable", True)
        assert caught.value.retry_after == 30
        plugin.down = False
        assert (await resolver.resolve(Lead(campaign_id="c", external_id="a"))).source == "cache"


def test_a_source_nobody_registered_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="scrub"):
        Resolver(
            [Campaign("c", "scripted", {"script": Script()}, compliance=_with_source())],
            plugins=[ScriptPlugin()],
            load_entrypoints=False,
        )


def _with_source() -> Compliance:
    return Compliance(dnc_sources=("scrub",))


async def test_two_processes_share_a_numbers_cap_through_the_shared_tier(redis_url: str) -> None:
    """Two resolvers on one Redis (two dialer processes): Florida's 3 calls per 24 hours
    are counted for the fleet, so the 4th call, from either, is refused."""
    wall = WallClock(INSIDE)

    def process(prefix: str) -> Resolver:
        return Resolver(
            [
                Campaign(
                    "c",
                    "scripted",
                    {"script": Script(answer=MIAMI)},
                    default_region="US",
                    compliance="us",
                )
            ],
            plugins=[ScriptPlugin()],
            load_entrypoints=False,
            shared=RedisTier(redis_url, prefix=f"cap-fleet-{prefix}", timeout=0.5),
            wall_clock=wall,
        )

    suffix = str(uuid.uuid4())  # a fresh key space on the session's server
    first, second = process(suffix), process(suffix)
    async with first, second:
        assert (await first.resolve(Lead(campaign_id="c", external_id="a"))).source == "crm"
        assert (await second.resolve(Lead(campaign_id="c", external_id="b"))).source == "crm"
        assert (await first.resolve(Lead(campaign_id="c", external_id="c"))).source == "crm"
        with pytest.raises(Unresolvable) as caught:
            await second.resolve(Lead(campaign_id="c", external_id="d"))
    assert caught.value.reason == "call_cap_reached"
    assert caught.value.retry_after == 24 * 3600


async def test_warming_passes_no_gate_and_uses_no_call(tmp_path: Path) -> None:
    """`warm` fetches ahead of the dials: at night it still warms, and it counts no
    call against the cap; the dials after it are gated as usual."""
    world = build(tmp_path, "crm")
    async with world.resolver as resolver:
        world.wall.now = OUTSIDE
        leads = [Lead(campaign_id="c", external_id=f"w-{index}") for index in range(5)]
        report = await resolver.warm(leads)
        assert (report.warmed, report.refused, report.failed) == (5, 0, 0)
        world.wall.now = INSIDE
        for lead in leads[:3]:  # the cap's 3 calls are all still there
            assert (await resolver.resolve(lead)).source == "cache"
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(leads[3])
    assert caught.value.reason == "call_cap_reached"


async def test_a_slow_source_is_bounded_by_the_resolves_deadline(tmp_path: Path) -> None:
    """A source allowed 30 s of its own still answers within the resolver's deadline
    (0.2 s here): the number waits (retry later), the dial is not held."""
    release = asyncio.Event()

    class SlowScrub:
        @predial.hookimpl
        def register_dnc_sources(self, register: predial.DncSourceRegister) -> None:
            async def listed(number: str) -> bool:
                await release.wait()
                return False

            register("scrub", listed, timeout=30)

    resolver = Resolver(
        [
            Campaign(
                "c",
                "scripted",
                {"script": Script(answer=MIAMI)},
                default_region="US",
                compliance=Compliance(dnc_sources=("scrub",)),
            )
        ],
        plugins=[ScriptPlugin(), SlowScrub()],
        load_entrypoints=False,
        deadline=0.2,
        wall_clock=WallClock(INSIDE),
    )
    async with resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(Lead(campaign_id="c", external_id="a"))
        release.set()
    assert (caught.value.reason, caught.value.retryable) == ("dnc_source_unavailable", True)
    assert caught.value.elapsed < 10  # far below the source's own 30 s
