"""The shared tier (`predial.RedisTier`) against a real redis-server.

Two `Resolver`s in one test, each with a `RedisTier` of its own, stand for two
dialer processes: each has its own local tiers (memory cache, in-flight table,
breaker) and its own Redis connections, and they share only what is in Redis.
Each resolver's CRM is a `Script` of its own, so `script.calls` says which
"process" asked the CRM, and how often.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import VALID_GB_MOBILE, VALID_US, VALID_US_2, Script, ScriptPlugin
from redis.asyncio import Redis
from redis_cluster import RedisClusterServers
from redis_fixtures import require_redis_or_skip

import predial
import predial.adapters.http
from predial import (
    AdapterUnavailable,
    BreakerSettings,
    CacheSettings,
    Campaign,
    CrmContact,
    CrmPhone,
    Lead,
    RecordNotFound,
    RedisTier,
    Resolver,
    RetrySettings,
    Unresolvable,
)
from predial.cli._app import cli
from predial.testing._redis_server import RedisServer

CAMPAIGN = "cmp"
DNC = CrmContact(phones=[CrmPhone(VALID_US)], do_not_call=True)


def lead_key(external_id: str, campaign: str = CAMPAIGN, prefix: str = "predial") -> str:
    """Where the shared tier keeps a lead's cache entry (`RedisTier._lead` + `:c`):
    the campaign length-prefixed, the whole lead in one hash tag."""
    return f"{prefix}:{{l:{len(campaign)}:{campaign}:{external_id}}}:c"


def lock_key(external_id: str, campaign: str = CAMPAIGN) -> str:
    return lead_key(external_id, campaign)[: -len(":c")] + ":l"


@dataclass
class Process:
    """One resolver with its own tier and its own CRM: a dialer process."""

    resolver: Resolver
    tier: RedisTier
    crm: Script

    async def resolve(self, external_id: str, phone: str | None = None) -> predial.Resolution:
        return await self.resolver.resolve(
            Lead(campaign_id=CAMPAIGN, external_id=external_id, phone_number=phone)
        )

    async def refusal(self, external_id: str, phone: str | None = None) -> Unresolvable:
        with pytest.raises(Unresolvable) as refused:
            await self.resolve(external_id, phone)
        return refused.value

    async def settle(self) -> None:
        """Wait for the writes the resolver does in the background (publish, store,
        breaker reports): each is bounded by the tier's timeout."""
        for _ in range(3):
            tasks = [*self.resolver._background]
            for runtime in self.resolver.campaigns.values():
                if runtime.shared_breaker is not None:
                    tasks += runtime.shared_breaker._tasks
            if not tasks:
                return
            await asyncio.wait(tasks, timeout=2.0)


Fleet = Callable[..., Process]


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    """Makes `Process`es; closes each one (and its tier) after the test."""
    made: list[Process] = []

    def make(
        url: str,
        answer: Any = VALID_US,
        *,
        delay: float = 0.0,
        tier: dict[str, Any] | None = None,
        cache: CacheSettings | None = None,
        campaign: dict[str, Any] | None = None,
        **options: Any,
    ) -> Process:
        script = Script(answer=answer, delay=delay)
        shared = RedisTier(url, **{"timeout": 0.25, "retry_interval": 0.2, **(tier or {})})
        options.setdefault("retry", RetrySettings(attempts=1))
        options.setdefault("deadline", 2.0)
        resolver = Resolver(
            [
                Campaign(
                    CAMPAIGN,
                    "scripted",
                    {"script": script},
                    default_region="US",
                    **(campaign or {}),
                )
            ],
            plugins=[ScriptPlugin()],
            load_entrypoints=False,
            cache=cache or CacheSettings(positive_ttl=30.0, negative_ttl=30.0, stale_grace=60.0),
            shared=shared,
            **options,
        )
        process = Process(resolver, shared, script)
        made.append(process)
        return process

    yield make
    for process in made:
        await process.resolver.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A plain redis-py client on the test's server, to look at and tamper with keys."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def eventually(check: Callable[[], Any], within: float = 3.0, what: str = "") -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.01)


async def server_ms(client: Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -- 1. the cache, shared ------------------------------------------------------------


async def test_a_number_fetched_by_one_process_is_served_by_another_from_the_cache(
    fleet: Fleet, redis_url: str, raw: Redis
) -> None:
    settings = CacheSettings(positive_ttl=0.3, negative_ttl=0.3, stale_grace=5.0)
    a = fleet(redis_url, VALID_US, cache=settings)
    b = fleet(redis_url, VALID_US_2, cache=settings)

    first = await a.resolve("L1")
    assert (first.source, first.phone_number) == ("crm", VALID_US)
    await a.settle()

    # In Redis: expiry = the end of the stale grace, freshness inside the value.
    stored = await raw.get(lead_key("L1"))
    assert stored is not None
    fresh_ms, kind, number, adapter = stored.decode().split("|")
    assert (kind, number, adapter) == ("p", VALID_US, "scripted")
    assert 200 <= int(fresh_ms) - await server_ms(raw) <= 300
    assert 5_000 <= await raw.pttl(lead_key("L1")) <= 5_300

    second = await b.resolve("L1")
    assert (second.source, second.phone_number) == ("cache", VALID_US)
    assert b.crm.calls == []

    # Once positive_ttl has passed, B asks its own CRM.
    await asyncio.sleep(0.35)
    third = await b.resolve("L1")
    assert (third.source, third.phone_number) == ("crm", VALID_US_2)
    assert b.crm.calls == ["L1"]
    assert a.crm.calls == ["L1"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(RecordNotFound("gone"), "not_found"), (DNC, "do_not_call"), (None, "no_number")],
)
async def test_a_negative_answer_is_shared_too(
    fleet: Fleet, redis_url: str, raw: Redis, answer: Any, reason: str
) -> None:
    a = fleet(redis_url, answer)
    b = fleet(redis_url, VALID_US)

    assert (await a.refusal("N1")).reason == reason
    await a.settle()
    stored = await raw.get(lead_key("N1"))
    assert stored is not None
    assert stored.decode().split("|")[1:3] == ["n", reason]

    refused = await b.refusal("N1")
    assert (refused.reason, refused.retryable) == (reason, False)
    if reason == "do_not_call":
        # Not even the number the lead was imported with.
        assert (await b.refusal("N1", phone=VALID_US_2)).reason == "do_not_call"
    else:
        fallback = await b.resolve("N1", phone=VALID_US_2)
        assert (fallback.source, fallback.fallback_reason) == ("stored", reason)
    assert b.crm.calls == []


async def test_a_stale_shared_entry_is_served_while_the_crm_is_down(
    fleet: Fleet, redis_url: str, raw: Redis
) -> None:
    settings = CacheSettings(positive_ttl=0.3, negative_ttl=0.3, stale_grace=5.0)
    a = fleet(redis_url, VALID_US, cache=settings)
    b = fleet(redis_url, AdapterUnavailable("503"), cache=settings)

    assert (await a.resolve("S1")).source == "crm"
    await a.settle()
    await asyncio.sleep(0.35)  # no longer fresh; kept for the stale grace

    stale = await b.resolve("S1")  # B never held S1: the entry is Redis's
    assert (stale.source, stale.phone_number, stale.fallback_reason) == (
        "stale",
        VALID_US,
        "unavailable",
    )
    assert b.crm.calls == ["S1"]
    # The failure wrote nothing over the entry, and released the claim.
    await b.settle()
    assert (await raw.get(lead_key("S1"))).decode().split("|")[2] == VALID_US
    assert await raw.exists(lock_key("S1")) == 0


# -- 2. the local tier in front of Redis -------------------------------------------------


def lookups(tier: RedisTier) -> int:
    """Round trips to Redis for a lead's entry so far."""
    return sum(tier.counts.get(kind, 0) for kind in ("hit", "miss", "claimed", "wait"))


async def test_within_local_ttl_a_process_answers_from_memory_then_asks_redis_again(
    fleet: Fleet, redis_url: str, raw: Redis
) -> None:
    a = fleet(redis_url, VALID_US)
    b = fleet(redis_url, VALID_US_2, tier={"local_ttl": 0.4})

    await a.resolve("T1")
    await a.settle()
    assert (await b.resolve("T1")).source == "cache"
    asked = lookups(b.tier)
    assert b.tier.counts.get("hit") == 1

    # Another number is written to Redis behind B's back (another process's fetch).
    fresh = await server_ms(raw) + 30_000
    await raw.set(lead_key("T1"), f"{fresh}|p|{VALID_GB_MOBILE}|scripted", px=60_000)

    for _ in range(5):  # within local_ttl: no round trip, the number B holds
        again = await b.resolve("T1")
        assert (again.source, again.phone_number) == ("cache", VALID_US)
    assert lookups(b.tier) == asked

    await asyncio.sleep(0.45)
    later = await b.resolve("T1")  # local_ttl is over: Redis is asked, and believed
    assert (later.source, later.phone_number) == ("cache", VALID_GB_MOBILE)
    assert lookups(b.tier) == asked + 1
    assert b.crm.calls == []


async def test_within_local_ttl_a_hit_needs_no_redis_at_all(
    fleet: Fleet, fresh_redis_server: RedisServer
) -> None:
    a = fleet(fresh_redis_server.url, VALID_US, tier={"local_ttl": 5.0})
    assert (await a.resolve("T2")).source == "crm"
    await a.settle()
    await asyncio.to_thread(fresh_redis_server.pause)
    try:
        started = time.perf_counter()
        hit = await a.resolve("T2")
        assert time.perf_counter() - started < 0.1  # a lookup would wait out 0.25 s
        assert (hit.source, hit.phone_number) == ("cache", VALID_US)
        assert a.tier.state == "up"
    finally:
        await asyncio.to_thread(fresh_redis_server.resume)


# -- 3. one CRM call per lead across processes ---------------------------------------------


async def test_concurrent_resolves_in_two_processes_make_one_crm_call(
    fleet: Fleet, redis_url: str
) -> None:
    from prometheus_client import CollectorRegistry

    from predial.metrics import instrument

    a = fleet(redis_url, VALID_US, delay=0.2)
    b = fleet(redis_url, VALID_US, delay=0.2)
    registries = {id(p): CollectorRegistry() for p in (a, b)}
    for process in (a, b):
        instrument(process.resolver, registries[id(process)])

    results = await asyncio.gather(
        a.resolve("F1"), b.resolve("F1"), a.resolve("F1"), b.resolve("F1")
    )
    assert {r.phone_number for r in results} == {VALID_US}
    assert len(a.crm.calls) + len(b.crm.calls) == 1
    holder, waiter = (a, b) if a.crm.calls else (b, a)
    assert holder.tier.counts.get("claimed") == 1
    assert waiter.tier.counts.get("wait") == 1  # the second caller in a process joins the first
    assert waiter.tier.counts.get("handed") == 1
    assert waiter.tier.counts.get("wait_timeout", 0) == 0
    for process, event in ((holder, "claimed"), (waiter, "wait"), (waiter, "handed")):
        sample = registries[id(process)].get_sample_value(
            "predial_shared_tier_events_total", {"event": event}
        )
        assert sample == 1, event
    # The waiter holds the answer now, as if it had fetched it.
    assert (await waiter.resolve("F1")).source == "cache"
    assert len(a.crm.calls) + len(b.crm.calls) == 1


async def test_a_waiter_is_handed_a_negative_answer_too(fleet: Fleet, redis_url: str) -> None:
    a = fleet(redis_url, DNC, delay=0.2)
    b = fleet(redis_url, DNC, delay=0.2)
    first = asyncio.ensure_future(a.resolve("F2"))
    await eventually(lambda: a.crm.in_flight, what="A calls its CRM")
    refused = await b.refusal("F2", phone=VALID_US_2)
    assert refused.reason == "do_not_call"
    assert b.crm.calls == []
    assert b.tier.counts.get("handed") == 1
    with pytest.raises(Unresolvable):
        await first


async def test_a_claim_nobody_publishes_expires_and_the_waiter_fetches_itself(
    fleet: Fleet, redis_url: str, raw: Redis
) -> None:
    b = fleet(redis_url, VALID_US, deadline=2.0)
    # A holder that died right after claiming the lead: its lock lives 300 ms.
    await raw.set(lock_key("F3"), "f" * 32, px=300, nx=True)

    started = time.perf_counter()
    result = await b.resolve("F3")
    elapsed = time.perf_counter() - started
    assert (result.source, result.phone_number) == ("crm", VALID_US)
    assert 0.25 <= elapsed < 1.0
    assert b.crm.calls == ["F3"]
    assert b.tier.counts.get("wait") == 1
    assert b.tier.counts.get("wait_timeout") == 1


async def test_a_holder_whose_fetch_outlives_its_deadline_holds_nobody_past_it(
    fleet: Fleet, redis_url: str
) -> None:
    hung = fleet(redis_url, VALID_US_2, delay=30.0, deadline=0.3)
    b = fleet(redis_url, VALID_US, deadline=2.0)

    stuck = asyncio.ensure_future(hung.resolve("F4"))
    await eventually(lambda: hung.crm.in_flight, what="the hung process claims and calls")
    started = time.perf_counter()
    result = await b.resolve("F4")
    elapsed = time.perf_counter() - started
    assert (result.source, result.phone_number) == ("crm", VALID_US)
    assert elapsed < 0.3 + 0.3  # the holder's claim ends with its deadline
    assert b.tier.counts.get("wait") == 1
    assert b.crm.calls == ["F4"]
    with pytest.raises(Unresolvable) as refused:
        await stuck
    assert (refused.value.reason, refused.value.retryable) == ("timeout", True)


# -- 4. what Redis holds is input: corrupt or tampered entries are misses ------------------

US_ONLY = {"policy": predial.PhonePolicy(allowed_regions=frozenset({"US"}))}
FRESH = "{fresh}"  # replaced by a server time a minute ahead: Redis's script calls it fresh

TAMPERED: dict[str, bytes | str] = {
    "garbage": b"garbage",
    "fresh_garbage": f"{FRESH}|zzz",
    "empty": b"",
    "national_format": f"{FRESH}|p|2024561111|scripted",
    "spaced": f"{FRESH}|p|+1 202 456 1111|scripted",
    "not_a_number": f"{FRESH}|p|+1202456111x|scripted",
    "unassigned": f"{FRESH}|p|+15555551234|scripted",  # E.164-shaped, not a valid number
    "refused_by_the_policy": f"{FRESH}|p|{VALID_GB_MOBILE}|scripted",  # US-only campaign
    "unknown_reason": f"{FRESH}|n|made_up_reason|scripted",
    "transient_reason": f"{FRESH}|n|unavailable|scripted",  # never cached
    "extra_field": f"{FRESH}|p|{VALID_GB_MOBILE}|scripted|more",
    "adapter_with_newline": f"{FRESH}|p|{VALID_GB_MOBILE}|scr\nipted",
    "huge": f"{FRESH}|p|{VALID_GB_MOBILE}|" + "x" * 300_000,
    "huge_number": f"{FRESH}|p|+4" + "4" * 2000 + "|scripted",
    "non_utf8": f"{FRESH}|p|".encode() + b"\xff\xfe\x80|scripted",
    "non_utf8_only": b"\xff" * 64,
    "nul_bytes": f"{FRESH}|p|{VALID_GB_MOBILE}\x00|scripted",
    "fresh_overflow": f"{'9' * 40}|p|{VALID_GB_MOBILE}|scripted",
}


async def tamper(raw: Redis, key: str, value: bytes | str) -> None:
    fresh = str(await server_ms(raw) + 60_000)
    if isinstance(value, str):
        value = value.replace(FRESH, fresh).encode("utf-8")
    else:
        value = value.replace(FRESH.encode(), fresh.encode())
    await raw.set(key, value, px=60_000)


@pytest.mark.parametrize("value", TAMPERED.values(), ids=TAMPERED.keys())
async def test_a_tampered_entry_is_a_miss(
    fleet: Fleet, redis_url: str, raw: Redis, value: bytes | str
) -> None:
    b = fleet(redis_url, VALID_US, campaign=US_ONLY)
    # The key is the one the tier reads: a well-formed value there is served.
    await tamper(raw, lead_key("ok"), f"{FRESH}|p|{VALID_US_2}|scripted")
    control = await b.resolve("ok")
    assert (control.source, control.phone_number) == ("cache", VALID_US_2)

    await tamper(raw, lead_key("X1"), value)
    result = await b.resolve("X1")
    assert (result.source, result.phone_number) == ("crm", VALID_US)
    assert b.crm.calls == ["X1"]
    assert b.tier.state == "up"
    # The fetch wrote a good entry over it.
    await b.settle()
    assert (await raw.get(lead_key("X1"))).decode().split("|")[1:3] == ["p", VALID_US]


@pytest.mark.parametrize(
    "value",
    [
        f"1|p|{VALID_GB_MOBILE}|scripted",  # stale, refused by the policy
        "1|p|+15555551234|scripted",  # stale, not a valid number
        "1|p|12024561111|scripted",  # stale, not E.164
        "1|n|made_up_reason|scripted",
        b"1|p|\xff\xfe|scripted",
    ],
    ids=["refused_by_the_policy", "unassigned", "not_e164", "unknown_reason", "non_utf8"],
)
async def test_a_tampered_entry_is_never_served_stale(
    fleet: Fleet, redis_url: str, raw: Redis, value: bytes | str
) -> None:
    b = fleet(redis_url, AdapterUnavailable("503"), campaign=US_ONLY)
    await raw.set(lead_key("X2"), value, px=60_000)
    refused = await b.refusal("X2")
    assert (refused.reason, refused.retryable) == ("unavailable", True)
    await b.settle()  # the claim released: the next resolve asks the CRM again
    # With a stored number, that one (the policy accepts it), not Redis's.
    fallback = await b.resolve("X2", phone=VALID_US_2)
    assert (fallback.source, fallback.phone_number) == ("stored", VALID_US_2)
    assert b.crm.calls == ["X2", "X2"]


WRONG_TYPES = ["list", "hash", "lock_as_hash"]


async def wrong_type(raw: Redis, kind: str, external_id: str) -> None:
    if kind == "list":
        await raw.rpush(lead_key(external_id), VALID_GB_MOBILE)
    elif kind == "hash":
        await raw.hset(lead_key(external_id), "p", VALID_GB_MOBILE)
    else:
        await raw.hset(lock_key(external_id), "holder", "f" * 32)


@pytest.mark.parametrize("kind", WRONG_TYPES)
async def test_a_key_of_another_type_is_a_miss(
    fleet: Fleet, redis_url: str, raw: Redis, kind: str
) -> None:
    b = fleet(redis_url, VALID_US)
    await wrong_type(raw, kind, "X3")
    result = await b.resolve("X3")
    assert (result.source, result.phone_number) == ("crm", VALID_US)
    assert b.crm.calls == ["X3"]


@pytest.mark.parametrize("kind", WRONG_TYPES)
async def test_a_key_of_another_type_does_not_take_the_tier_down(
    fleet: Fleet, redis_url: str, raw: Redis, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    b = fleet(redis_url, VALID_US_2)
    await wrong_type(raw, kind, "X4")
    with caplog.at_level("WARNING", logger="predial.shared"):
        assert (await b.resolve("X4")).phone_number == VALID_US_2
    # One tampered key is that lead's problem, not every lead's: no outage declared
    # (which would stop all sharing for retry_interval, and again at each resolve).
    assert "degraded" not in b.tier.counts
    assert not [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert b.tier.counts.get("corrupt", 0) >= 1
    # And it is repaired: the lead's next reader in the fleet gets the number.
    await b.settle()
    c = fleet(redis_url, VALID_GB_MOBILE)
    assert (await c.resolve("X4")).phone_number == VALID_US_2
    assert c.crm.calls == []


# -- 5. do-not-call spreads at once --------------------------------------------------------


async def refuses(process: Process, external_id: str) -> bool:
    """Whether `process` refuses the lead now (as do-not-call: no other refusal)."""
    try:
        await process.resolve(external_id)
    except Unresolvable as refusal:
        reason = refusal.reason
    else:
        return False
    assert reason == "do_not_call"
    return True


async def test_do_not_call_learnt_by_one_process_stops_the_others_at_once(
    fleet: Fleet, redis_url: str, raw: Redis
) -> None:
    # B fetched the lead itself and holds it fresh for 30 s, asking Redis only every
    # 10 s; A holds it for 0.3 s.
    b = fleet(
        redis_url,
        VALID_US,
        tier={"local_ttl": 10.0},
        cache=CacheSettings(positive_ttl=30.0, negative_ttl=0.2, stale_grace=60.0),
    )
    a = fleet(
        redis_url,
        DNC,
        cache=CacheSettings(positive_ttl=0.3, negative_ttl=0.2, stale_grace=60.0),
    )
    assert (await b.resolve("D1")).source == "crm"
    await b.settle()
    assert (await a.resolve("D1")).source == "cache"
    await raw.delete(lead_key("D1"))  # evicted from Redis (maxmemory): A will ask its CRM
    await asyncio.sleep(0.35)
    assert (await b.resolve("D1")).phone_number == VALID_US  # B still dials it

    assert (await a.refusal("D1")).reason == "do_not_call"  # A's CRM says do-not-call
    learnt = time.perf_counter()
    await eventually(lambda: refuses(b, "D1"), within=1.0, what="B refuses the lead")
    assert time.perf_counter() - learnt < 0.25  # a round trip, not B's local_ttl (10 s)
    assert b.tier.counts.get("event", 0) >= 1
    assert (await b.refusal("D1", phone=VALID_US_2)).reason == "do_not_call"
    assert b.crm.calls == ["D1"]

    # Later, with B's CRM down and the verdict no longer fresh anywhere: neither the
    # number B fetched nor the stored one is dialled.
    await asyncio.sleep(0.25)
    b.crm.answer = AdapterUnavailable("503")
    refused = await b.refusal("D1", phone=VALID_US_2)
    assert (refused.reason, refused.retryable) == ("do_not_call", False)
    assert b.crm.calls == ["D1", "D1"]


class BatchAdapter:
    """A CRM with a batch endpoint (`fetch_phones`), as `Resolver.warm` uses it."""

    name = "batch"

    def __init__(self, script: Script) -> None:
        self.script = script

    async def fetch_phone(self, external_id: str) -> Any:
        return self.script.next_answer(external_id)

    async def fetch_phones(self, external_ids: list[str]) -> dict[str, Any]:
        return {external_id: self.script.next_answer(external_id) for external_id in external_ids}


class BatchPlugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(BatchAdapter)


async def test_do_not_call_learnt_while_warming_stops_the_others_at_once(
    fleet: Fleet, redis_url: str, raw: Redis
) -> None:
    b = fleet(redis_url, VALID_US, tier={"local_ttl": 10.0})
    assert (await b.resolve("D2")).source == "crm"
    await b.settle()

    script = Script(answer=DNC)
    tier = RedisTier(redis_url, timeout=0.25)
    async with Resolver(
        [Campaign(CAMPAIGN, "batch", {"script": script}, default_region="US")],
        plugins=[BatchPlugin()],
        load_entrypoints=False,
        shared=tier,
    ) as a:
        report = await a.warm([Lead(campaign_id=CAMPAIGN, external_id="D2")])
        learnt = time.perf_counter()
        assert report.refused == 1
        assert script.calls == ["D2"]
        await eventually(lambda: refuses(b, "D2"), within=1.0, what="B refuses the lead")
        assert time.perf_counter() - learnt < 0.25  # announced: not B's local_ttl (10 s)
        stored = await raw.get(lead_key("D2"))  # and in Redis for everyone's next look
        assert stored is not None
        assert stored.decode().split("|")[1:3] == ["n", "do_not_call"]
        assert b.crm.calls == ["D2"]


# -- 6. the circuit breaker, counted fleet-wide ------------------------------------------------

BREAKER = BreakerSettings(failure_threshold=3, open_for=0.4)


async def breaker_state(raw: Redis) -> bytes | None:
    state: bytes | None = await raw.hget(f"predial:{{b:{len(CAMPAIGN)}:{CAMPAIGN}}}:s", "state")
    return state


async def outcomes(*resolves: Any) -> list[str]:
    results = await asyncio.gather(*resolves, return_exceptions=True)
    return [
        r.reason if isinstance(r, Unresolvable) else r.source  # type: ignore[union-attr]
        for r in results
    ]


async def test_failures_in_one_process_open_the_circuit_for_all_with_one_probe(
    fleet: Fleet, redis_url: str, raw: Redis
) -> None:
    a = fleet(redis_url, AdapterUnavailable("503"), breaker=BREAKER)
    b = fleet(redis_url, VALID_US, delay=0.2, breaker=BREAKER)

    for index in range(3):
        assert (await a.refusal(f"A{index}")).reason == "unavailable"
    await a.settle()
    assert await breaker_state(raw) == b"open"
    assert b.resolver.stats().breakers[CAMPAIGN] == "closed"  # B saw no failure itself

    refused = await b.refusal("B0")
    assert (refused.reason, refused.retryable) == ("circuit_open", True)
    assert 0 < (refused.retry_after or 0) <= BREAKER.open_for
    assert b.crm.calls == []
    assert b.tier.counts.get("breaker_open") == 1

    # After open_for: one probe for the whole fleet, the others refused meanwhile.
    await asyncio.sleep(BREAKER.open_for + 0.05)
    a.crm.answer, a.crm.delay = VALID_US, 0.2
    seen = await outcomes(*(p.resolve(f"P{i}{p is a}") for i in range(4) for p in (a, b)))
    assert len(a.crm.calls[3:]) + len(b.crm.calls) == 1, seen
    assert sorted(seen) == ["circuit_open"] * 7 + ["crm"]

    # The good probe closed it for both.
    await a.settle()
    await b.settle()
    assert await breaker_state(raw) == b"closed"
    assert await outcomes(a.resolve("C1"), b.resolve("C2")) == ["crm", "crm"]


async def test_a_failed_probe_reopens_the_circuit_for_all(
    fleet: Fleet, redis_url: str, raw: Redis
) -> None:
    a = fleet(redis_url, AdapterUnavailable("503"), breaker=BREAKER)
    b = fleet(redis_url, VALID_US, breaker=BREAKER)
    for index in range(3):
        await a.refusal(f"A{index}")
    await a.settle()
    await asyncio.sleep(BREAKER.open_for + 0.05)

    assert (await a.refusal("probe")).reason == "unavailable"  # A's probe fails
    await a.settle()
    assert (await b.refusal("B1")).reason == "circuit_open"  # open again, for B too
    assert b.crm.calls == []
    assert len(a.crm.calls) == 4


# -- 7. Redis slow, down or restarting: the local tiers answer ---------------------------------

FAST_FAIL = {"timeout": 0.05, "retry_interval": 0.3, "local_ttl": 0.2}
DEADLINE = 1.0


async def timed(process: Process, external_id: str, phone: str | None = None) -> str:
    """Resolve within the deadline (+100 ms): the source, or the refusal's reason."""
    started = time.perf_counter()
    try:
        result = await process.resolve(external_id, phone)
        answer = result.source
    except Unresolvable as refusal:
        answer = refusal.reason
    elapsed = time.perf_counter() - started
    assert elapsed < DEADLINE + 0.1, f"{external_id}: {elapsed:.3f} s"
    return answer


def shared_metric(registry: Any, name: str, **labels: str) -> float | None:
    value: float | None = registry.get_sample_value(name, labels)
    return value


async def test_a_paused_redis_degrades_to_the_local_tiers_and_recovers(
    fleet: Fleet, fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import CollectorRegistry

    from predial.metrics import instrument

    caplog.set_level("WARNING", logger="predial.shared")
    url = fresh_redis_server.url
    a = fleet(url, VALID_US, tier=FAST_FAIL, deadline=DEADLINE)
    b = fleet(url, VALID_US_2, tier=FAST_FAIL, deadline=DEADLINE)  # idle until Redis is back
    registry = CollectorRegistry()
    instrument(a.resolver, registry)
    assert await timed(a, "K1") == "crm"
    await a.settle()

    await asyncio.to_thread(fresh_redis_server.pause)
    try:
        # New leads: each answered within the deadline, the CRM asked directly.
        assert [await timed(a, f"N{i}") for i in range(4)] == ["crm"] * 4
        assert a.tier.state == "degraded"
        assert await timed(a, "K1") == "cache"  # fresh in the local tier
        await asyncio.sleep(0.7)  # a few retry intervals, each trying Redis once
        assert [await timed(a, f"M{i}") for i in range(3)] == ["crm"] * 3
        assert a.tier.state == "degraded"
        assert shared_metric(registry, "predial_shared_tier_up") == 0
    finally:
        await asyncio.to_thread(fresh_redis_server.resume)

    await asyncio.sleep(FAST_FAIL["retry_interval"])
    assert await timed(a, "R1") == "crm"
    assert a.tier.state == "up"
    await a.settle()
    assert await timed(b, "R1") == "cache"  # sharing resumed
    assert b.crm.calls == []

    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("predial.shared")]
    assert len([w for w in warnings if "unavailable" in w]) == 1, warnings
    assert len([w for w in warnings if "is back" in w]) == 1, warnings
    assert a.tier.counts.get("degraded") == 1
    assert a.tier.counts.get("recovered") == 1
    events = "predial_shared_tier_events_total"
    assert shared_metric(registry, events, event="degraded") == 1
    assert shared_metric(registry, events, event="recovered") == 1
    assert (shared_metric(registry, events, event="error") or 0) >= 3
    assert shared_metric(registry, "predial_shared_tier_up") == 1


async def test_a_lead_fresh_in_the_local_tier_is_not_refetched_when_redis_stops_answering(
    fleet: Fleet, fresh_redis_server: RedisServer
) -> None:
    a = fleet(fresh_redis_server.url, VALID_US, tier=FAST_FAIL, deadline=DEADLINE)
    assert await timed(a, "K1") == "crm"
    await a.settle()
    await asyncio.sleep(FAST_FAIL["local_ttl"] + 0.05)  # fresh (30 s), past local_ttl
    await asyncio.to_thread(fresh_redis_server.pause)
    try:
        assert await timed(a, "K1") == "cache"
        assert a.crm.calls == ["K1"]
    finally:
        await asyncio.to_thread(fresh_redis_server.resume)


async def test_a_killed_and_restarted_redis_degrades_then_sharing_resumes(
    fleet: Fleet, fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="predial.shared")
    url = fresh_redis_server.url
    a = fleet(url, VALID_US, tier=FAST_FAIL, deadline=DEADLINE)
    b = fleet(url, VALID_US_2, tier=FAST_FAIL, deadline=DEADLINE)
    assert await timed(a, "K1") == "crm"
    await a.settle()
    assert await timed(b, "K1") == "cache"

    await asyncio.to_thread(fresh_redis_server.kill)
    started = time.perf_counter()
    assert await timed(a, "N1") == "crm"
    assert time.perf_counter() - started < 0.1  # refused at once, not timed out
    assert a.tier.state == "degraded"  # a refused connection counts at once
    assert await timed(a, "K1") == "cache"
    assert [await timed(b, f"N{i}") for i in range(3)] == ["crm"] * 3
    assert b.tier.state == "degraded"

    await asyncio.to_thread(fresh_redis_server.restart)  # same port, empty
    await asyncio.sleep(FAST_FAIL["retry_interval"])
    assert await timed(a, "R1") == "crm"
    await a.settle()
    assert a.tier.state == "up"
    assert await timed(b, "R1") == "cache"
    assert b.tier.state == "up"
    assert a.crm.calls == ["K1", "N1", "R1"]
    assert b.crm.calls == ["N0", "N1", "N2"]
    # One warning per change of state, each counted. (Around a restart, a process
    # may go down and up twice: an operation begun before the server was back can
    # fail after another has succeeded.)
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("predial.shared")]
    degraded = [tier.counts.get("degraded", 0) for tier in (a.tier, b.tier)]
    for tier in (a.tier, b.tier):
        assert 1 <= tier.counts.get("degraded", 0) <= 2, warnings
        assert tier.counts.get("recovered") == tier.counts.get("degraded"), warnings
    assert len([w for w in warnings if "unavailable" in w]) == sum(degraded), warnings
    assert len([w for w in warnings if "is back" in w]) == sum(degraded), warnings


async def test_a_do_not_call_lead_is_not_dialled_while_redis_is_down(
    fleet: Fleet, fresh_redis_server: RedisServer
) -> None:
    settings = CacheSettings(positive_ttl=30.0, negative_ttl=0.2, stale_grace=60.0)
    url = fresh_redis_server.url
    b = fleet(url, VALID_US, tier=FAST_FAIL, cache=settings, deadline=DEADLINE)
    a = fleet(url, DNC, tier=FAST_FAIL, cache=settings, deadline=DEADLINE)
    assert await timed(b, "D1") == "crm"  # B holds the number
    await b.settle()
    await asyncio.to_thread(fresh_redis_server.command, "DEL", lead_key("D1"))
    assert await timed(a, "D1") == "do_not_call"
    await eventually(lambda: refuses(b, "D1"), within=1.0, what="B hears the verdict")

    await asyncio.to_thread(fresh_redis_server.kill)
    await asyncio.sleep(0.25)  # the verdict is no longer fresh anywhere
    a.crm.answer = b.crm.answer = AdapterUnavailable("503")
    for process in (a, b, a, b):
        assert await timed(process, "D1", phone=VALID_US_2) == "do_not_call"
    assert a.tier.state == b.tier.state == "degraded"


# -- 8. a password URL: it works, and it is never shown ---------------------------------------

PASSWORD = "pw-Zq8vT1-s3cret-4471"
WRONG = "wrong-Kx2mP9-pass-8812"


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own with `requirepass`; stopped after."""
    require_redis_or_skip()
    server = RedisServer(password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def with_password(server: RedisServer, password: str | None) -> str:
    userinfo = "" if password is None else f":{password}@"
    return f"redis://{userinfo}127.0.0.1:{server.port}/0"


async def test_a_password_url_shares_the_cache(fleet: Fleet, password_server: RedisServer) -> None:
    url = with_password(password_server, PASSWORD)
    assert url == password_server.url
    a = fleet(url, VALID_US)
    b = fleet(url, VALID_US_2)
    assert (await a.resolve("P1")).source == "crm"
    await a.settle()
    assert (await b.resolve("P1")).source == "cache"
    assert a.tier.state == b.tier.state == "up"
    assert await asyncio.to_thread(password_server.command, "EXISTS", lead_key("P1")) == 1
    for tier in (a.tier, b.tier):
        assert PASSWORD not in repr(tier)
        assert PASSWORD not in json.dumps(tier.describe())


@pytest.mark.parametrize("password", [WRONG, None], ids=["wrong_password", "no_password"])
async def test_a_wrong_password_degrades_the_tier_and_is_never_shown(
    fleet: Fleet,
    password_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    password: str | None,
) -> None:
    caplog.set_level("DEBUG")
    c = fleet(with_password(password_server, password), VALID_US, tier=FAST_FAIL)
    assert await timed(c, "P2") == "crm"  # the dial goes on without Redis
    assert c.tier.state == "degraded"
    assert await c.tier.ping() is False
    assert c.tier.describe()["error"]  # why, for operators (the last failure's text)
    shown = [repr(c.tier), json.dumps(c.tier.describe()), c.tier.shown_url]
    shown += [record.getMessage() for record in caplog.records]
    shown += [str(record.args) for record in caplog.records]
    assert any("unavailable" in text for text in shown)
    for text in shown:
        assert PASSWORD not in text
        assert WRONG not in text


def write_project(directory: Path, shared: str) -> Path:
    (directory / "crm.csv").write_text("id,mobile\nC-1,(202) 456-1111\nC-2,+447911123456\n")
    config = directory / "predial.toml"
    config.write_text(
        f"[resolver.shared]\n{shared}\n"
        '[[campaigns]]\nid = "c"\nadapter = "file"\ndefault_region = "US"\n'
        '[campaigns.settings]\npath = "crm.csv"\n'
    )
    return config


def check(config: Path, env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["check", "c", "C-1", "--config", str(config), *args], env=env, catch_exceptions=False
    )


def test_predial_check_shows_the_tier_without_its_password(
    tmp_path: Path, password_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    config = write_project(tmp_path, 'url = "${REDIS_URL}"\ntimeout = 0.5')
    good = check(config, {"REDIS_URL": with_password(password_server, PASSWORD)}, "--json")
    assert good.exit_code == 0, good.output
    trace = json.loads(good.stdout)
    assert trace["sharedTier"]["state"] == "up", trace
    assert trace["sharedTier"]["url"] == f"redis://:***@127.0.0.1:{password_server.port}/0"

    for args in (("--json",), ()):
        bad = check(config, {"REDIS_URL": with_password(password_server, WRONG)}, *args)
        assert bad.exit_code == 0, bad.output  # resolved without the shared tier
        assert "degraded" in bad.output, bad.output
        for text in (bad.output, bad.stdout, *(r.getMessage() for r in caplog.records)):
            assert WRONG not in text
            assert PASSWORD not in text
    assert "shared tier degraded" in bad.stdout


# -- 9. configuration, `predial check` and `/readyz` --------------------------------------------


async def test_the_shared_tier_is_configured_in_predial_toml(
    tmp_path: Path, redis_url: str, raw: Redis
) -> None:
    config = write_project(
        tmp_path, 'url = "${REDIS_URL}"\ntimeout = 0.5\nlocal_ttl = 0.25\nprefix = "fleet7"'
    )
    async with Resolver.from_config(config, environ={"REDIS_URL": redis_url}) as resolver:
        tier = resolver.shared
        assert isinstance(tier, RedisTier)
        assert (tier.url, tier.timeout, tier.local_ttl, tier.prefix) == (
            redis_url,
            0.5,
            0.25,
            "fleet7",
        )
        result = await resolver.resolve({"campaignId": "c", "externalId": "C-1"})
        assert result.phone_number == VALID_US
        await eventually(lambda: raw.exists(lead_key("C-1", "c", prefix="fleet7")))


@pytest.mark.parametrize(
    ("shared", "field"),
    [
        ('url = "${REDIS_URL}"\ntimeout = 0', "resolver.shared.timeout"),
        ('url = "${REDIS_URL}"\ntimeout = -1', "resolver.shared.timeout"),
        ('url = "${REDIS_URL}"\ntimeout = "fast"', "resolver.shared.timeout"),
        ('url = "${REDIS_URL}"\ntimeout = 7200', "resolver.shared.timeout"),
        ('url = "${REDIS_URL}"\nlocal_ttl = 0', "resolver.shared.local_ttl"),
        ('url = "${NOT_SET_ANYWHERE}"', "resolver.shared.url"),
        ('url = ""', "resolver.shared.url"),
        ("timeout = 0.5", "resolver.shared.url"),
        ('url = "${REDIS_URL}"\ntimout = 0.5', "resolver.shared.timout"),
    ],
)
def test_a_bad_shared_setting_names_its_field(tmp_path: Path, shared: str, field: str) -> None:
    config = write_project(tmp_path, shared)
    with pytest.raises(predial.ConfigurationError) as refused:
        Resolver.from_config(config, environ={"REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert field in str(refused.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/0", f"ftp://:{WRONG}@127.0.0.1:6379/0", "127.0.0.1:6379"]
)
def test_a_url_that_is_not_a_redis_url_names_its_field(tmp_path: Path, url: str) -> None:
    config = write_project(tmp_path, 'url = "${REDIS_URL}"')
    with pytest.raises(predial.ConfigurationError) as refused:
        Resolver.from_config(config, environ={"REDIS_URL": url})
    message = str(refused.value)
    assert WRONG not in message
    assert "resolver.shared.url" in message
    assert "predial.toml" in message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/0", f"ftp://:{WRONG}@127.0.0.1:6379/0", "127.0.0.1:6379"]
)
def test_a_url_that_is_not_a_redis_url_is_refused_without_its_password(
    tmp_path: Path, url: str
) -> None:
    config = write_project(tmp_path, 'url = "${REDIS_URL}"')
    with pytest.raises(predial.ConfigurationError) as refused:
        Resolver.from_config(config, environ={"REDIS_URL": url})
    assert "not a Redis URL" in str(refused.value)
    assert WRONG not in str(refused.value)
    with pytest.raises(predial.ConfigurationError):
        RedisTier(url)


def test_predial_check_shows_the_shared_tier_line(tmp_path: Path, redis_url: str) -> None:
    config = write_project(tmp_path, 'url = "${REDIS_URL}"\ntimeout = 0.5')
    result = check(config, {"REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if "shared tier" in line)
    assert "up" in line
    assert redis_url in line
    assert "process(es) seen" in line


@pytest.mark.parametrize("listening", [True, False], ids=["up", "degraded"])
def test_readyz_reports_the_shared_tier(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, listening: bool
) -> None:
    from predial.service import ServiceConfig, create_app
    from predial.testing._redis_server import free_port
    from predial.testing._serving import serve

    url = redis_url if listening else f"redis://127.0.0.1:{free_port()}/0"  # nothing there
    monkeypatch.setenv("REDIS_URL", url)
    config = write_project(tmp_path, 'url = "${REDIS_URL}"\ntimeout = 0.5')
    # As `predial serve` does: the app builds the resolver, and closes it at shutdown.
    app = create_app(config, settings=ServiceConfig(allow_unauthenticated=True))
    with serve(app, lifespan="on") as served, httpx.Client(base_url=served) as http:
        resolved = http.post("/v1/resolve", json={"campaignId": "c", "externalId": "C-1"})
        assert resolved.status_code == 200, resolved.text
        ready = http.get("/readyz")
        assert ready.status_code == 200  # never unready because of Redis
        assert ready.json() == {"status": "ready", "sharedTier": "up" if listening else "degraded"}
        metrics = http.get("/metrics").text
    assert f"predial_shared_tier_up {1.0 if listening else 0.0}" in metrics
    event = 'predial_shared_tier_events_total{event="%s"} 1.0'
    assert (event % "claimed" if listening else event % "degraded") in metrics


def _served_and_closed(server: RedisServer) -> int:
    """Serve a resolver of the caller's own through `create_app(resolver)`, close it as
    the caller does, and count the predial connections Redis still has open."""
    from predial.service import ServiceConfig, create_app
    from predial.testing._serving import serve

    resolver = Resolver(
        [Campaign(CAMPAIGN, "scripted", {"script": Script()}, default_region="US")],
        plugins=[ScriptPlugin()],
        load_entrypoints=False,
        shared=RedisTier(server.url, timeout=0.5),
    )
    app = create_app(resolver, settings=ServiceConfig(allow_unauthenticated=True))
    with serve(app, lifespan="on") as served, httpx.Client(base_url=served) as http:
        resolved = http.post("/v1/resolve", json={"campaignId": CAMPAIGN, "externalId": "x"})
        assert resolved.status_code == 200
    resolver.close_sync()
    clients = server.command("CLIENT", "LIST")
    assert isinstance(clients, bytes)
    return clients.decode().count("name=predial-")


def test_closing_a_resolver_served_by_create_app_closes_its_redis_connections(
    fresh_redis_server: RedisServer,
) -> None:
    try:
        left_open = _served_and_closed(fresh_redis_server)
    finally:
        with warnings.catch_warnings():  # what leaked must not warn in a later test
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    assert left_open == 0


# -- 10. Redis Cluster --------------------------------------------------------------------------


@pytest.mark.parametrize("cluster", [False, True], ids=["plain", "cluster"])
async def test_the_redis_client_is_made_without_deprecated_arguments(
    request: pytest.FixtureRequest, cluster: bool
) -> None:
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    tier = RedisTier(url, cluster=cluster, timeout=1.0)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            up = await tier.ping()
    finally:
        await tier.close()
    assert [str(w.message) for w in caught if w.category is DeprecationWarning] == []
    assert up


async def warmed(*processes: Process) -> None:
    """Let each process's cluster client learn the slots before the test proper (until
    then the tier answers from the local tiers: see the next test), then forget the
    counts."""
    for process in processes:
        for _ in range(10):
            if await process.tier.ping():
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.1)  # the event reader's first commands, too
        assert await process.tier.ping(), process.tier.describe()["error"]
        process.tier.counts.clear()


async def test_on_a_cluster_the_cache_and_the_flight_are_shared(
    fleet: Fleet, redis_cluster_url: str, redis_cluster: RedisClusterServers
) -> None:
    a = fleet(redis_cluster_url, VALID_US, delay=0.2, tier={"cluster": True})
    b = fleet(redis_cluster_url, VALID_US_2, delay=0.2, tier={"cluster": True})
    await warmed(a, b)

    # One CRM call for concurrent resolves in both processes, for leads on every node.
    ids = [f"lead-{index}" for index in range(12)]
    results = await asyncio.gather(*(p.resolve(i) for i in ids for p in (a, b)))
    assert len(a.crm.calls) + len(b.crm.calls) == len(ids)
    assert sorted(a.crm.calls + b.crm.calls) == sorted(ids)
    assert sum(t.counts.get("handed", 0) for t in (a.tier, b.tier)) == len(ids)
    assert len({redis_cluster.node_for_key(lead_key(i)) for i in ids}) == 3  # every master
    for index in range(0, len(results), 2):
        assert results[index].phone_number == results[index + 1].phone_number

    # The cache: a lead one process fetched is the other's hit.
    await a.settle()
    await b.settle()
    assert (await a.resolve("solo")).source == "crm"
    await a.settle()
    assert (await b.resolve("solo")).source == "cache"
    # A lead's keys share one slot: the scripts ran without CROSSSLOT errors.
    base = lead_key("solo")[: -len(":c")]
    assert len({redis_cluster.node_for_key(f"{base}:{part}") for part in "clwd"}) == 1
    for tier in (a.tier, b.tier):
        assert tier.state == "up"
        assert "error" not in tier.counts
        assert "corrupt" not in tier.counts


async def test_on_a_cluster_a_burst_at_start_is_answered_without_a_false_outage(
    fleet: Fleet, redis_cluster_url: str
) -> None:
    # Concurrent first commands on a cold RedisCluster client fail in redis-py: the
    # tier learns the slots first, answering from the local tiers meanwhile.
    a = fleet(redis_cluster_url, VALID_US, delay=0.2, tier={"cluster": True})
    b = fleet(redis_cluster_url, VALID_US_2, delay=0.2, tier={"cluster": True})
    ids = [f"cold-{index}" for index in range(12)]
    results = await asyncio.gather(*(p.resolve(i) for i in ids for p in (a, b)))
    assert len(results) == 2 * len(ids)
    for tier in (a.tier, b.tier):
        assert "degraded" not in tier.counts, tier.describe()
        assert tier.state == "up"
    await eventually(lambda: a.tier.ping(), what="A knows the slots")
    await eventually(lambda: b.tier.ping(), what="B knows the slots")
    calls = len(a.crm.calls) + len(b.crm.calls)
    await asyncio.gather(*(p.resolve(f"warm-{i}") for i in range(12) for p in (a, b)))
    assert len(a.crm.calls) + len(b.crm.calls) == calls + 12  # one call per lead again


async def test_on_a_cluster_the_breaker_and_do_not_call_are_shared(
    fleet: Fleet, redis_cluster_url: str, redis_cluster: RedisClusterServers
) -> None:
    a = fleet(redis_cluster_url, AdapterUnavailable("503"), tier={"cluster": True}, breaker=BREAKER)
    b = fleet(
        redis_cluster_url, VALID_US, tier={"cluster": True, "local_ttl": 10.0}, breaker=BREAKER
    )
    await warmed(a, b)
    assert (await b.resolve("D1")).source == "crm"
    await b.settle()
    node = redis_cluster.node(redis_cluster.node_for_key(lead_key("D1")))
    assert await asyncio.to_thread(node.command, "DEL", lead_key("D1")) == 1
    for index in range(3):
        await a.refusal(f"A{index}")
    await a.settle()
    assert (await b.refusal("B1")).reason == "circuit_open"

    await asyncio.sleep(BREAKER.open_for + 0.05)
    a.crm.answer = DNC
    b.crm.answer = AdapterUnavailable("503")
    assert (await b.resolve("D1")).source == "cache"  # B holds the number for 10 s
    await a.refusal("D1")  # A's probe: the lead is do-not-call
    await eventually(lambda: refuses(b, "D1"), within=1.0, what="B hears the verdict")
    assert (await b.refusal("D1", phone=VALID_US_2)).reason == "do_not_call"
    assert b.crm.calls == ["D1"]
    assert a.tier.state == b.tier.state == "up"
    assert "degraded" not in a.tier.counts
    assert "degraded" not in b.tier.counts


# -- 11. the CRM tenant's rate budget and daily quota -------------------------------------------


class RatedCrm(predial.adapters.http.HttpAdapter):
    """An HTTP CRM allowing 5 requests a second per tenant."""

    name = "rated"
    default_base_url = "http://127.0.0.1:9"  # never connected: the transport answers
    rate_limit = (5, 1.0)

    async def fetch_phone(self, external_id: str) -> str:
        data = await self.get_json("/contacts/{}", external_id)
        return str(data["phone"])


class RatedPlugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(RatedCrm)


@dataclass
class CrmLog:
    """What the mock CRM saw: the time of each request, and how to answer."""

    times: list[float]
    daily_spent: bool = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.times.append(time.monotonic())
        if self.daily_spent:
            return httpx.Response(
                429, headers={"x-ratelimit-daily-remaining": "0", "retry-after": "30"}
            )
        return httpx.Response(200, json={"phone": VALID_US})


@pytest.fixture
async def rated(redis_url: str) -> AsyncIterator[Callable[[CrmLog], Resolver]]:
    made: list[Resolver] = []

    def make(crm: CrmLog) -> Resolver:
        resolver = Resolver(
            [
                Campaign(
                    CAMPAIGN,
                    "rated",
                    {"token": "t0k3n", "transport": httpx.MockTransport(crm.handler)},
                    default_region="US",
                )
            ],
            plugins=[RatedPlugin()],
            load_entrypoints=False,
            retry=RetrySettings(attempts=1),
            shared=RedisTier(redis_url, timeout=0.25),
        )
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        await resolver.close()


async def test_two_processes_keep_to_the_tenants_rate_limit_together(
    rated: Callable[[CrmLog], Resolver],
) -> None:
    seen: dict[str, list[float]] = {"a": [], "b": []}
    processes = {"a": rated(CrmLog(seen["a"])), "b": rated(CrmLog(seen["b"]))}
    refused: list[Unresolvable] = []

    async def dial(name: str, until: float) -> None:
        index = 0
        while time.monotonic() < until:
            index += 1
            lead = Lead(campaign_id=CAMPAIGN, external_id=f"{name}-{index}")
            try:
                await processes[name].resolve(lead)
            except Unresolvable as refusal:
                refused.append(refusal)
            await asyncio.sleep(0.005)

    until = time.monotonic() + 2.5
    await asyncio.gather(dial("a", until), dial("b", until))
    times = sorted(seen["a"] + seen["b"])
    # Each process alone would allow itself 5 a second: together they keep to 5.
    assert seen["a"]
    assert seen["b"]
    assert len(times) >= 10, times  # the limit was reached, second after second
    # No 1-second window holds more than 5 requests (the budget is taken on Redis's
    # clock just before each request is sent: 20 ms allowed for that).
    for first, sixth in zip(times, times[5:], strict=False):
        assert sixth - first >= 0.98, times
    assert refused
    assert all(r.reason == "unavailable" and r.retryable for r in refused)
    for resolver in processes.values():
        assert resolver.stats().breakers[CAMPAIGN] == "closed"  # predial's budget, not the CRM


async def test_a_daily_quota_spent_in_one_process_pauses_the_others(
    rated: Callable[[CrmLog], Resolver],
) -> None:
    crm_a, crm_b = CrmLog([], daily_spent=True), CrmLog([])
    a, b = rated(crm_a), rated(crm_b)
    with pytest.raises(Unresolvable) as spent:
        await a.resolve({"campaignId": CAMPAIGN, "externalId": "Q1"})
    assert spent.value.retryable
    assert len(crm_a.times) == 1
    await asyncio.sleep(0.1)  # the pause is written in the background

    for index in range(3):
        with pytest.raises(Unresolvable) as paused:
            await b.resolve({"campaignId": CAMPAIGN, "externalId": f"Q{index + 2}"})
        assert paused.value.retryable
        assert 25 < (paused.value.retry_after or 0) <= 30
    assert crm_b.times == []  # B did not spend a request on the spent quota
