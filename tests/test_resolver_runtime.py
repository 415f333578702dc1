"""The resolver under load and failure: single flight, deadlines, retries, breaker, cache."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from conftest import VALID_US, VALID_US_2, FakeClock, Script, make_resolver

from predial import (
    AdapterUnavailable,
    BreakerSettings,
    CacheSettings,
    CrmContact,
    CrmPhone,
    Lead,
    RecordNotFound,
    RetrySettings,
    Unresolvable,
)

LEAD = Lead(campaign_id="cmp", external_id="ext-1")


async def test_concurrent_resolves_of_one_id_make_one_adapter_call() -> None:
    """1,000 concurrent resolves of one external id share a single CRM call."""
    script = Script(delay=0.05)
    async with make_resolver(script) as resolver:
        results = await asyncio.gather(*(resolver.resolve(LEAD) for _ in range(1000)))
    assert script.calls == ["ext-1"]
    assert {r.phone_number for r in results} == {VALID_US}


async def test_expiry_under_load_causes_one_refresh(clock: FakeClock) -> None:
    """When the cached number expires, 1,000 concurrent resolves refresh it once."""
    script = Script(delay=0.02)
    async with make_resolver(script, clock=clock) as resolver:
        await resolver.resolve(LEAD)
        clock.advance(301)  # past the 5-minute positive TTL
        script.answer = VALID_US_2
        results = await asyncio.gather(*(resolver.resolve(LEAD) for _ in range(1000)))
    assert len(script.calls) == 2
    assert {(r.phone_number, r.source) for r in results} == {(VALID_US_2, "crm")}


async def test_cancelling_one_waiter_does_not_cancel_the_shared_fetch() -> None:
    """A dialer that gives up on one lead does not take the answer from the others."""
    script = Script(delay=0.1)
    async with make_resolver(script) as resolver:
        first = asyncio.create_task(resolver.resolve(LEAD))
        others = [asyncio.create_task(resolver.resolve(LEAD)) for _ in range(5)]
        await asyncio.sleep(0.02)
        first.cancel()
        results = await asyncio.gather(*others)
        with pytest.raises(asyncio.CancelledError):
            await first
    assert script.calls == ["ext-1"]
    assert all(r.phone_number == VALID_US for r in results)


async def test_cache_hit_makes_no_adapter_call() -> None:
    """The second resolve within the TTL comes from the cache."""
    script = Script()
    async with make_resolver(script) as resolver:
        first = await resolver.resolve(LEAD)
        second = await resolver.resolve(LEAD)
    assert (first.source, second.source) == ("crm", "cache")
    assert len(script.calls) == 1


async def test_cache_is_keyed_by_campaign_and_external_id() -> None:
    """The same external id in another campaign is another record."""
    script = Script(answer=lambda external_id: VALID_US)
    async with make_resolver(script) as resolver:
        await resolver.resolve(LEAD)
        await resolver.resolve(Lead(campaign_id="cmp", external_id="ext-2"))
    assert script.calls == ["ext-1", "ext-2"]


async def test_negative_answers_are_cached_briefly(clock: FakeClock) -> None:
    """Not found is remembered for the negative TTL (30 s), then asked again."""
    script = Script(answer=RecordNotFound())
    async with make_resolver(script, clock=clock) as resolver:
        for _ in range(3):
            with pytest.raises(Unresolvable):
                await resolver.resolve(LEAD)
        assert len(script.calls) == 1
        clock.advance(31)
        with pytest.raises(Unresolvable):
            await resolver.resolve(LEAD)
    assert len(script.calls) == 2


async def test_stale_if_error_serves_within_the_grace(clock: FakeClock) -> None:
    """Expired but within the grace: the last CRM number is served while the CRM is down."""
    script = Script()
    cache = CacheSettings(positive_ttl=300, stale_grace=3600)
    async with make_resolver(script, clock=clock, cache=cache) as resolver:
        await resolver.resolve(LEAD)
        clock.advance(300 + 3599)
        script.answer = AdapterUnavailable("down")
        resolution = await resolver.resolve(LEAD)
    assert (resolution.phone_number, resolution.source) == (VALID_US, "stale")
    assert resolution.fallback_reason == "unavailable"


async def test_stale_if_error_stops_after_the_grace(clock: FakeClock) -> None:
    """Past the grace the old number is gone: a retryable refusal."""
    script = Script()
    cache = CacheSettings(positive_ttl=300, stale_grace=3600)
    async with make_resolver(script, clock=clock, cache=cache) as resolver:
        await resolver.resolve(LEAD)
        clock.advance(300 + 3601)
        script.answer = AdapterUnavailable("down")
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(LEAD)
    assert (caught.value.reason, caught.value.retryable) == ("unavailable", True)


async def test_stale_number_is_not_served_for_permanent_answers(clock: FakeClock) -> None:
    """When the CRM says the record is gone, yesterday's number is not dialled."""
    script = Script()
    async with make_resolver(script, clock=clock) as resolver:
        await resolver.resolve(LEAD)
        clock.advance(301)
        script.answer = RecordNotFound()
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(LEAD)
    assert caught.value.reason == "not_found"


async def test_cache_is_bounded_by_maxsize() -> None:
    """Old entries are evicted beyond maxsize."""
    script = Script(answer=lambda external_id: VALID_US)
    async with make_resolver(script, cache=CacheSettings(maxsize=2)) as resolver:
        for external_id in ("a", "b", "c", "a"):
            await resolver.resolve(Lead(campaign_id="cmp", external_id=external_id))
    assert script.calls == ["a", "b", "c", "a"]


async def test_sync_adapter_that_hangs_does_not_hold_the_resolve(gate: threading.Event) -> None:
    """A def adapter sleeping 60 s: the resolve returns within 100 ms of its deadline."""
    deadline = 0.5
    script = Script()
    lead = Lead(campaign_id="cmp", external_id="x", phone_number=VALID_US_2)
    async with make_resolver(
        script, adapter="scripted-sync", extra_settings={"gate": gate}, deadline=deadline
    ) as resolver:
        started = time.perf_counter()
        resolution = await resolver.resolve(lead)
        elapsed = time.perf_counter() - started
    assert (resolution.source, resolution.fallback_reason) == ("stored", "timeout")
    assert elapsed < deadline + 0.1


async def test_async_adapter_that_hangs_is_cut_at_the_deadline() -> None:
    """An async adapter that never answers: a retryable timeout at the deadline."""
    script = Script(delay=60)
    async with make_resolver(script, deadline=0.2) as resolver:
        started = time.perf_counter()
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(LEAD)
        elapsed = time.perf_counter() - started
    assert (caught.value.reason, caught.value.retryable) == ("timeout", True)
    assert elapsed < 0.2 + 0.1


async def test_unavailable_is_retried_with_backoff() -> None:
    """Two 503s then an answer: three calls, one resolution from the CRM."""
    answers = [AdapterUnavailable("503"), AdapterUnavailable("503"), VALID_US]
    script = Script(answer=lambda _: answers.pop(0))
    retry = RetrySettings(attempts=3, initial=0.001, maximum=0.01)
    async with make_resolver(script, retry=retry) as resolver:
        resolution = await resolver.resolve(LEAD)
    assert (resolution.phone_number, resolution.source) == (VALID_US, "crm")
    assert len(script.calls) == 3


async def test_retries_stop_after_the_configured_attempts() -> None:
    """A CRM that stays down is asked `attempts` times, then the lead is refused retryably."""
    script = Script(answer=AdapterUnavailable("503"))
    retry = RetrySettings(attempts=3, initial=0.001, maximum=0.01)
    async with make_resolver(script, retry=retry) as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(LEAD)
    assert len(script.calls) == 3
    assert caught.value.retryable


async def test_retry_after_that_fits_is_honoured() -> None:
    """retry_after=0.2 s inside a 2 s deadline: the resolver waits it, then succeeds."""
    answers: list[object] = [AdapterUnavailable("429", retry_after=0.2), VALID_US]
    script = Script(answer=lambda _: answers.pop(0))
    async with make_resolver(script, retry=RetrySettings(attempts=3), deadline=2) as resolver:
        started = time.perf_counter()
        resolution = await resolver.resolve(LEAD)
        elapsed = time.perf_counter() - started
    assert resolution.source == "crm"
    assert elapsed >= 0.2


async def test_retry_after_that_does_not_fit_becomes_the_verdict() -> None:
    """retry_after=30 s against a 3 s deadline: no wait, a refusal carrying retry_after=30."""
    script = Script(answer=AdapterUnavailable("429", retry_after=30))
    async with make_resolver(script, retry=RetrySettings(attempts=5)) as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(LEAD)
    assert (caught.value.retryable, caught.value.retry_after) == (True, 30)
    assert len(script.calls) == 1


async def test_circuit_opens_rejects_fast_and_closes_after_a_good_probe(clock: FakeClock) -> None:
    """3 failures open it; while open no call is made; after open_for one probe closes it."""
    script = Script(answer=AdapterUnavailable("down"))
    breaker = BreakerSettings(failure_threshold=3, open_for=5)
    leads = [Lead(campaign_id="cmp", external_id=f"e{i}") for i in range(10)]
    async with make_resolver(script, clock=clock, breaker=breaker) as resolver:
        for lead in leads[:3]:
            with pytest.raises(Unresolvable):
                await resolver.resolve(lead)
        assert resolver.stats().breakers["cmp"] == "open"

        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(leads[3])
        assert caught.value.reason == "circuit_open"
        assert caught.value.retry_after == pytest.approx(5)
        assert len(script.calls) == 3  # rejected without calling the CRM

        clock.advance(5)
        script.answer = VALID_US
        resolution = await resolver.resolve(leads[4])
        assert resolution.source == "crm"
        assert resolver.stats().breakers["cmp"] == "closed"
        await resolver.resolve(leads[5])
    assert len(script.calls) == 5


async def test_half_open_lets_one_probe_through(clock: FakeClock) -> None:
    """While the probe is in flight, other leads are rejected fast."""
    script = Script(answer=AdapterUnavailable("down"))
    breaker = BreakerSettings(failure_threshold=1, open_for=5)
    async with make_resolver(script, clock=clock, breaker=breaker) as resolver:
        with pytest.raises(Unresolvable):
            await resolver.resolve(Lead(campaign_id="cmp", external_id="a"))
        clock.advance(5)
        script.answer, script.delay = VALID_US, 0.1
        probe = asyncio.create_task(resolver.resolve(Lead(campaign_id="cmp", external_id="b")))
        await asyncio.sleep(0.01)
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(Lead(campaign_id="cmp", external_id="c"))
        assert caught.value.reason == "circuit_open"
        assert (await probe).source == "crm"
    assert script.calls == ["a", "b"]


async def test_failed_probe_reopens_the_circuit(clock: FakeClock) -> None:
    """A bad probe sends the breaker back to open for another wait."""
    script = Script(answer=AdapterUnavailable("down"))
    breaker = BreakerSettings(failure_threshold=1, open_for=5)
    async with make_resolver(script, clock=clock, breaker=breaker) as resolver:
        with pytest.raises(Unresolvable):
            await resolver.resolve(Lead(campaign_id="cmp", external_id="a"))
        clock.advance(5)
        with pytest.raises(Unresolvable) as probe:
            await resolver.resolve(Lead(campaign_id="cmp", external_id="b"))
        assert probe.value.reason == "unavailable"
        with pytest.raises(Unresolvable) as after:
            await resolver.resolve(Lead(campaign_id="cmp", external_id="c"))
        assert after.value.reason == "circuit_open"


async def test_slow_calls_open_the_circuit() -> None:
    """Calls slower than slow_call count as failures even when they answer."""
    script = Script(delay=0.06)
    breaker = BreakerSettings(failure_threshold=2, open_for=60, slow_call=0.05)
    async with make_resolver(script, breaker=breaker) as resolver:
        for external_id in ("a", "b"):
            await resolver.resolve(Lead(campaign_id="cmp", external_id=external_id))
        assert resolver.stats().breakers["cmp"] == "open"


async def test_not_found_does_not_open_the_circuit() -> None:
    """The CRM answering 'no such record' is the CRM working."""
    script = Script(answer=RecordNotFound())
    breaker = BreakerSettings(failure_threshold=2)
    async with make_resolver(script, breaker=breaker) as resolver:
        for external_id in ("a", "b", "c"):
            with pytest.raises(Unresolvable):
                await resolver.resolve(Lead(campaign_id="cmp", external_id=external_id))
        assert resolver.stats().breakers["cmp"] == "closed"


def test_resolve_sync_from_plain_threads() -> None:
    """Threads without an event loop call resolve_sync; they share one in-flight fetch."""
    script = Script(delay=0.05)
    results: list[str] = []
    with make_resolver(script) as resolver:
        threads = [
            threading.Thread(
                target=lambda: results.append(resolver.resolve_sync(LEAD).phone_number)
            )
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [VALID_US] * 8
    assert script.calls == ["ext-1"]


async def test_resolve_sync_inside_an_event_loop_is_an_error() -> None:
    """Blocking the loop would stall the dialer: say so."""
    async with make_resolver() as resolver:
        with pytest.raises(RuntimeError, match="await resolve"):
            resolver.resolve_sync(LEAD)


async def test_resolve_many_keeps_order_and_bounds_concurrency() -> None:
    """Results come back in input order; no more than `concurrency` are in flight."""
    script = Script(
        answer=lambda external_id: RecordNotFound() if external_id == "e3" else VALID_US,
        delay=0.01,
    )
    leads = [Lead(campaign_id="cmp", external_id=f"e{i}") for i in range(40)]
    async with make_resolver(script) as resolver:
        results = await resolver.resolve_many(leads, concurrency=5)
    assert len(results) == 40
    assert isinstance(results[3], Unresolvable)
    assert all(r.phone_number == VALID_US for i, r in enumerate(results) if i != 3)
    assert script.max_in_flight == 5


async def test_stats_count_what_happened(clock: FakeClock) -> None:
    """hits, misses, stale, fallbacks and refusals by reason, adapter errors, latencies."""
    script = Script()
    async with make_resolver(script, clock=clock) as resolver:
        await resolver.resolve(LEAD)  # miss -> crm
        await resolver.resolve(LEAD)  # hit
        clock.advance(301)
        script.answer = AdapterUnavailable("down")
        await resolver.resolve(LEAD)  # miss -> stale
        with pytest.raises(Unresolvable):
            await resolver.resolve(Lead(campaign_id="cmp", external_id="other"))
        await resolver.resolve(Lead(campaign_id="cmp", external_id="z", phone_number=VALID_US_2))
        stats = resolver.stats()
    assert (stats.hits, stats.misses, stats.stale, stats.stored) == (1, 4, 1, 1)
    assert stats.fallbacks == {"unavailable": 2}
    assert stats.refusals == {"unavailable": 1}
    assert stats.adapter_errors == {"unavailable": 3}
    assert stats.resolved == 4
    assert stats.latency_ms["p99"] >= stats.latency_ms["p50"] > 0


async def test_do_not_call_replaces_the_cached_number_even_without_negative_ttl(
    clock: FakeClock,
) -> None:
    """With negative_ttl=0, a do-not-call answer still evicts the old number from stale use."""
    script = Script()
    cache = CacheSettings(negative_ttl=0)
    async with make_resolver(script, clock=clock, cache=cache) as resolver:
        await resolver.resolve(LEAD)
        clock.advance(301)
        script.answer = CrmContact(phones=[CrmPhone(VALID_US)], do_not_call=True)
        with pytest.raises(Unresolvable):
            await resolver.resolve(LEAD)
        clock.advance(1)
        script.answer = AdapterUnavailable("down")
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(LEAD)
    assert caught.value.reason != "stale"
    assert caught.value.reason in ("unavailable", "do_not_call")


async def test_do_not_call_is_remembered_while_the_crm_is_down(clock: FakeClock) -> None:
    """After the negative TTL, a CRM outage does not turn a do-not-call lead dialable."""
    script = Script(answer=CrmContact(phones=[CrmPhone(VALID_US)], do_not_call=True))
    lead = Lead(campaign_id="cmp", external_id="ext-1", phone_number=VALID_US_2)
    async with make_resolver(script, clock=clock) as resolver:
        with pytest.raises(Unresolvable):
            await resolver.resolve(lead)
        clock.advance(60)  # past the 30 s negative TTL, within the grace
        script.answer = AdapterUnavailable("down")
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(lead)
    assert (caught.value.reason, caught.value.retryable) == ("do_not_call", False)


async def test_slow_calls_are_judged_by_the_campaign_deadline() -> None:
    """A 3 s campaign under a 0.2 s resolver default: 120 ms calls are not slow."""
    from conftest import ScriptPlugin

    from predial import Campaign, Resolver

    script = Script(delay=0.12)
    campaign = Campaign("cmp", "scripted", {"script": script}, deadline=3)
    async with Resolver(
        [campaign], plugins=[ScriptPlugin()], load_entrypoints=False, deadline=0.2
    ) as resolver:
        for index in range(6):
            await resolver.resolve(Lead(campaign_id="cmp", external_id=str(index)))
        assert resolver.stats().breakers["cmp"] == "closed"


async def test_closed_resolver_refuses_to_resolve() -> None:
    """Resolving after close() is a programming error, said plainly."""
    resolver = make_resolver()
    await resolver.close()
    with pytest.raises(RuntimeError, match="closed"):
        await resolver.resolve(LEAD)


def test_stopping_the_sync_loop_ends_what_still_runs_on_it() -> None:
    """A task left on resolve_sync's loop (an OAuth refresh holding its token file's
    lock) is cancelled and unwinds when the loop stops, as under asyncio.run."""
    from predial._threads import LoopThread

    released = threading.Event()
    started = threading.Event()

    async def holds_a_lock() -> None:
        try:
            started.set()
            await asyncio.sleep(3600)
        finally:
            released.set()

    private = LoopThread()
    loop = private._start()
    asyncio.run_coroutine_threadsafe(holds_a_lock(), loop)
    assert started.wait(5)
    private.stop()
    assert released.is_set()
