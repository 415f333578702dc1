"""The single-flight fetch: cancellation of any caller, deadlines, odd adapters."""

from __future__ import annotations

import asyncio

import pytest
from conftest import VALID_US, Script, make_resolver

from predial import AdapterUnavailable, Lead, Unresolvable

LEAD = Lead(campaign_id="cmp", external_id="ext-1")
STORED = Lead(campaign_id="cmp", external_id="ext-1", phone_number="+12024561414")


async def test_cancelled_leader_without_followers_still_fills_the_cache() -> None:
    """The fetch a cancelled caller started finishes, and the next caller gets it cached."""
    script = Script(delay=0.05)
    async with make_resolver(script) as resolver:
        leader = asyncio.create_task(resolver.resolve(LEAD))
        await asyncio.sleep(0.01)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        await asyncio.sleep(0.08)
        resolution = await resolver.resolve(LEAD)
    assert resolution.source == "cache"
    assert script.calls == ["ext-1"]


async def test_cancelled_follower_leaves_leader_and_others_alone() -> None:
    """Only the cancelled caller sees CancelledError."""
    script = Script(delay=0.05)
    async with make_resolver(script) as resolver:
        tasks = [asyncio.create_task(resolver.resolve(LEAD)) for _ in range(3)]
        await asyncio.sleep(0.01)
        tasks[1].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert [r.phone_number for i, r in enumerate(results) if i != 1] == [VALID_US, VALID_US]
    assert script.calls == ["ext-1"]


async def test_deadline_holds_after_the_leader_left() -> None:
    """A fetch handed over to its own task is still cut at the deadline for the followers."""
    script = Script(delay=60)
    async with make_resolver(script, deadline=0.2) as resolver:
        leader = asyncio.create_task(resolver.resolve(STORED))
        follower = asyncio.create_task(resolver.resolve(STORED))
        await asyncio.sleep(0.05)
        leader.cancel()
        resolution = await asyncio.wait_for(follower, 1)
    assert (resolution.source, resolution.fallback_reason) == ("stored", "timeout")


async def test_adapter_that_yields_bare_control_completes() -> None:
    """asyncio.sleep(0) inside an adapter (a bare yield) is driven like any other wait."""

    async def answer(external_id: str) -> str:
        for _ in range(3):
            await asyncio.sleep(0)
        return VALID_US

    script = Script()
    async with make_resolver(script) as resolver:
        adapter = resolver.campaigns["cmp"].adapter
        adapter.fetch_phone = answer
        resolution = await resolver.resolve(LEAD)
    assert resolution.phone_number == VALID_US


async def test_leader_cancelled_during_a_bare_yield_hands_over() -> None:
    """Cancellation at a bare yield also hands the fetch over to the followers."""
    release = asyncio.Event()

    async def answer(external_id: str) -> str:
        for _ in range(100_000):  # bare yields on purpose, until released
            if release.is_set():
                return VALID_US
            await asyncio.sleep(0)
        return "+15555551234"

    async with make_resolver(Script()) as resolver:
        resolver.campaigns["cmp"].adapter.fetch_phone = answer
        leader = asyncio.create_task(resolver.resolve(LEAD))
        follower = asyncio.create_task(resolver.resolve(LEAD))
        await asyncio.sleep(0.01)
        leader.cancel()
        await asyncio.sleep(0.01)
        release.set()
        resolution = await asyncio.wait_for(follower, 1)
    assert resolution.phone_number == VALID_US


async def test_adapter_error_after_a_wait_reaches_every_caller() -> None:
    """An adapter failing after it awaited something is one outcome for all callers."""
    script = Script(answer=AdapterUnavailable("down"), delay=0.02)
    async with make_resolver(script) as resolver:
        results = await asyncio.gather(
            *(resolver.resolve(LEAD) for _ in range(5)), return_exceptions=True
        )
    assert all(isinstance(r, Unresolvable) and r.reason == "unavailable" for r in results)
    assert len(script.calls) == 1


async def test_adapter_that_swallows_the_deadline_cancellation_keeps_its_answer() -> None:
    """An adapter that catches the cancellation and still answers is believed."""

    async def stubborn(external_id: str) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return VALID_US
        return "+15555551234"

    async with make_resolver(Script(), deadline=0.1) as resolver:
        resolver.campaigns["cmp"].adapter.fetch_phone = stubborn
        resolution = await resolver.resolve(LEAD)
    assert resolution.phone_number == VALID_US
