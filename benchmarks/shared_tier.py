"""The shared tier (`predial.RedisTier`) beside its references, in one run.

    python benchmarks/shared_tier.py            # full run (~2 min)
    python benchmarks/shared_tier.py --quick    # a ~30 s smoke run
    python benchmarks/shared_tier.py --timeout 0.5   # c, d with another tier timeout

It starts its own `redis-server` on a free port of 127.0.0.1
(`predial.testing._redis_server.RedisServer`, persistence off) and stops it at the
end. The runs are interleaved round by round (a, b, c, d, then d, c, b, a) and each
figure is the median over the rounds, so a slow moment of a noisy machine does not
land on one side only; within a run of a and b, the two sides alternate in 10
chunks on one event loop. The shared tier has its default settings (`timeout`
50 ms, `retry_interval` 1 s) unless `--timeout` says otherwise. Its "unavailable" /
"is back" warnings are not logged: they are counted as tier events and shown.

a) **shared-tier hit, local tier cold**: `await resolver.resolve(lead)` on a
   resolver with `RedisTier(url, local_ttl=1e-6)`, so every resolve asks Redis (the
   `LOOKUP` script) and finds the entry fresh there, vs a bare redis-py asyncio
   `GET` of the same entry's key on the same server (a client of its own,
   `Redis.from_url(url)`). One operation at a time, 100 leads cycled, every answer
   checked (`source == "cache"` and counted as a tier `hit`; the GET's value not
   None). Per operation: p50 and p99 latency (each one timed), mean latency, this
   process's CPU, and redis-server's own time per command (`usec_per_call` of
   EVALSHA vs GET in `INFO commandstats`). Target: p50 <= 2x.
b) **local-tier hit**: the same resolve with the shared tier on and the entry within
   its `local_ttl` (600 s here; checked to ask Redis nothing) vs a memory-only
   `Resolver` (no `shared`). Median of the chunks' mean time per resolve.
   Target: <= 1.2x.
c) **fleet-wide CRM calls per distinct id**: 4 processes (started once, `spawn`)
   each build a fresh resolver on the one Redis (a fresh key prefix and fresh ids
   every round), wait at a barrier, then each launch 250 concurrent resolves over the
   same 100 ids; the adapter records each call and answers after 100 ms. CRM calls
   over distinct ids, fleet-wide. Target: 1.0 in every round. Three ways:
   *fresh processes* (the resolver connects as the burst comes, as a dialer just
   started does), *warm processes* (a first burst on other ids, with a 5 s timeout,
   has opened the connections, as a running dialer's earlier bursts have) and, for
   context, *memory only* (no shared tier: each process calls the CRM itself, 4.0).
   Also shown: what the resolves answered (refusals included), the tier's events,
   and the connections redis-server accepted.
d) **misses at 100 in flight**, 50 ms adapter, a fresh id for every resolve: 100
   tasks each resolving one lead after another (closed loop), counted over a timed
   window after a warm-up, through the shared tier vs the memory-only resolver.
   Requests/s, shared / memory. Target: >= 0.85. Also shown: this process's CPU per
   miss, scripts (EVALSHA) per miss, connections accepted, what was answered, the
   tier's events (an `error` or `degraded` means some misses went around Redis), and
   what a closed loop on a constant latency predicts from the CPU per miss.

Nothing here asserts on time; each target line ends with `ok` or `MISSED` (issue
12). The adapters are this module's own plugin (`Plugin`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import logging
import multiprocessing
import os
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import predial
from predial import CacheSettings, Campaign, Lead, RedisTier, Resolver, Unresolvable

CAMPAIGN = "bench"
HIT_IDS = 100  # distinct cache-hit leads, cycled (a, b)
FLEET_PROCESSES = 4
FLEET_CONCURRENCY = 250
FLEET_IDS = 100
FLEET_LATENCY = 0.1
MISS_IN_FLIGHT = 100
MISS_LATENCY = 0.05
HIT_PREFIX = "bench-hit"

#: The ids the counting adapter was asked for, in this process (c).
CALLS: list[str] = []

# The tier's "unavailable" / "is back" warnings are counted as events and shown in the
# report instead (here and in the fleet's processes, which import this module).
logging.getLogger("predial.shared").setLevel(logging.ERROR)


def number_for(external_id: str) -> str:
    """A distinct valid US number per numeric id."""
    n = int(external_id) if external_id.isdigit() else 0
    return f"+1202{200 + n // 10_000 % 800:03d}{n % 10_000:04d}"


class InstantCrm:
    name = "bench-instant"

    async def fetch_phone(self, external_id: str) -> str:
        return number_for(external_id)


class SlowCrm:
    """Answers after `latency` seconds, like a CRM that far away."""

    name = "bench-slow"

    def __init__(self, latency: float = MISS_LATENCY) -> None:
        self.latency = latency

    async def fetch_phone(self, external_id: str) -> str:
        await asyncio.sleep(self.latency)
        return number_for(external_id)


class CountingCrm:
    """Records each call's id in `CALLS`, then answers after `latency` seconds."""

    name = "bench-counting"

    def __init__(self, latency: float = FLEET_LATENCY) -> None:
        self.latency = latency

    async def fetch_phone(self, external_id: str) -> str:
        CALLS.append(external_id)
        await asyncio.sleep(self.latency)
        return number_for(external_id)


class Plugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(InstantCrm)
        register(SlowCrm)
        register(CountingCrm)


def make(adapter: str, shared: RedisTier | None, **settings: Any) -> Resolver:
    return Resolver(
        [Campaign(CAMPAIGN, adapter, settings)],
        plugins=[Plugin()],
        load_entrypoints=False,
        # Long enough that the entries primed at the start stay fresh all run.
        cache=CacheSettings(positive_ttl=3000.0, maxsize=1_000_000),
        shared=shared,
    )


def cache_key(prefix: str, external_id: str) -> str:
    """The shared tier's cache key of a lead (see `RedisTier._lead`)."""
    return f"{prefix}:{{l:{len(CAMPAIGN)}:{CAMPAIGN}:{external_id}}}:c"


def hit_leads() -> list[Lead]:
    return [Lead(campaign_id=CAMPAIGN, external_id=str(i)) for i in range(HIT_IDS)]


def server_stats(server: Any) -> Counter[str]:
    """redis-server's counters: connections accepted, scripts run (EVALSHA). Each
    call opens two connections of its own: a difference of two calls counts two
    more than the run opened (see `used`)."""
    return Counter(
        connections=int(server.info("stats")["total_connections_received"]),
        scripts=command_stats(server, "evalsha")[0],
    )


def used(server: Any, before: Counter[str]) -> Counter[str]:
    """What the run did since `before`, less server_stats's own connections."""
    after = server_stats(server)
    after.subtract(before)
    after["connections"] -= 2
    return after


def command_stats(server: Any, command: str) -> tuple[int, float]:
    """(calls, µs) of `command` in redis-server's `INFO commandstats`."""
    raw = server.info("commandstats").get(f"cmdstat_{command}", "")
    fields = dict(part.split("=", 1) for part in raw.split(",") if "=" in part)
    return int(fields.get("calls", 0)), float(fields.get("usec", 0))


# -- a, b: one operation at a time ---------------------------------------------------


async def timed_loop(
    op: Callable[[Any], Awaitable[Any]], args: Sequence[Any], n: int, latencies: list[float] | None
) -> tuple[float, float, list[Any]]:
    """`n` awaits of `op`, one at a time, cycling through `args`: (seconds, CPU
    seconds of this process, the answers); each operation's latency is appended to
    `latencies` unless it is None."""
    count = len(args)
    answers: list[Any] = [None] * n
    perf = time.perf_counter
    gc.collect()
    cpu = time.process_time()
    started = perf()
    if latencies is not None:
        for i in range(n):
            t = perf()
            answers[i] = await op(args[i % count])
            latencies.append(perf() - t)
    else:
        for i in range(n):
            answers[i] = await op(args[i % count])
    elapsed = perf() - started
    return elapsed, time.process_time() - cpu, answers


async def run_a(url: str, n: int, chunks: int, server: Any) -> dict[str, dict[str, float]]:
    """a) shared-tier hits with the local tier cold vs bare GETs of the same keys, in
    alternating chunks on one event loop."""
    from redis.asyncio import Redis

    leads = hit_leads()
    tier = RedisTier(url, prefix=HIT_PREFIX, local_ttl=1e-6)
    resolver = make("bench-instant", tier)
    client = Redis.from_url(url)
    keys = [cache_key(HIT_PREFIX, lead.external_id or "") for lead in leads]
    sides: dict[str, tuple[Callable[[Any], Awaitable[Any]], Sequence[Any], str]] = {
        "a-get": (client.get, keys, "get"),
        "a-shared": (resolver.resolve, leads, "evalsha"),
    }
    totals = {key: [0.0, 0.0, 0.0, 0.0] for key in sides}  # seconds, CPU, calls, server µs
    latencies: dict[str, list[float]] = {key: [] for key in sides}
    for op, args, _ in sides.values():
        await timed_loop(op, args, len(args), None)  # connect, warm
    hits = tier.counts.get("hit", 0)
    per_chunk = n // chunks
    for chunk in range(chunks):
        for key in sides if chunk % 2 == 0 else list(sides)[::-1]:
            op, args, command = sides[key]
            calls, usec = command_stats(server, command)
            elapsed, cpu, answers = await timed_loop(op, args, per_chunk, latencies[key])
            calls2, usec2 = command_stats(server, command)
            total = totals[key]
            total[0] += elapsed
            total[1] += cpu
            total[2] += calls2 - calls
            total[3] += usec2 - usec
            if key == "a-get" and any(answer is None for answer in answers):
                raise SystemExit("a) a bare GET found no value: the keys are not the tier's")
            if key == "a-shared" and any(answer.source != "cache" for answer in answers):
                raise SystemExit("a) a resolve did not answer from the cache")
    hits = tier.counts.get("hit", 0) - hits
    await resolver.close()
    await client.aclose()
    if hits != per_chunk * chunks:
        raise SystemExit(f"a) expected {per_chunk * chunks} shared-tier hits: {tier.counts}")
    result: dict[str, dict[str, float]] = {}
    for key, (seconds, cpu_seconds, commands, server_us) in totals.items():
        lat = sorted(latencies[key])
        result[key] = {
            "p50": lat[len(lat) // 2],
            "p99": lat[int(len(lat) * 0.99)],
            "mean": seconds / len(lat),
            "cpu": cpu_seconds / len(lat),
            "server": server_us / max(1.0, commands) / 1e6,
        }
    return result


async def run_b(url: str, n: int, chunks: int) -> dict[str, dict[str, float]]:
    """b) local-tier hits with the shared tier on vs a memory-only resolver's, in
    alternating chunks on one event loop."""
    tier = RedisTier(url, prefix=HIT_PREFIX, local_ttl=600.0)
    resolvers = {"b-memory": make("bench-instant", None), "b-shared": make("bench-instant", tier)}
    leads = hit_leads()
    for resolver in resolvers.values():
        await timed_loop(resolver.resolve, leads, len(leads), None)  # fills the local tier
    asked = sum(tier.counts.values())
    means: dict[str, list[float]] = {key: [] for key in resolvers}
    cpus: dict[str, float] = dict.fromkeys(resolvers, 0.0)
    per_chunk = n // chunks
    for chunk in range(chunks):
        for key in resolvers if chunk % 2 == 0 else list(resolvers)[::-1]:
            elapsed, cpu, answers = await timed_loop(resolvers[key].resolve, leads, per_chunk, None)
            means[key].append(elapsed / per_chunk)
            cpus[key] += cpu
            if any(answer.source != "cache" for answer in answers):
                raise SystemExit("b) a resolve did not answer from the cache")
    asked = sum(tier.counts.values()) - asked
    for resolver in resolvers.values():
        await resolver.close()
    if asked:
        raise SystemExit(f"b) the shared tier was asked {asked} times: not all local hits")
    return {
        key: {"mean": statistics.median(means[key]), "cpu": cpus[key] / (per_chunk * chunks)}
        for key in resolvers
    }


async def prime(url: str) -> None:
    """Write the cache-hit leads to the shared tier (a, b)."""
    resolver = make("bench-instant", RedisTier(url, prefix=HIT_PREFIX))
    for lead in hit_leads():
        await resolver.resolve(lead)
    await resolver.close()  # waits for the background writes


# -- d: misses at 100 in flight -----------------------------------------------------


async def run_misses(
    url: str | None,
    prefix: str,
    offset: int,
    warmup: float,
    duration: float,
    tier_options: dict[str, Any],
) -> dict[str, Any]:
    tier = None if url is None else RedisTier(url, prefix=prefix, **tier_options)
    resolver = make("bench-slow", tier, latency=MISS_LATENCY)
    ids = itertools.count(offset)
    done = 0
    stopping = False
    sources: Counter[str] = Counter()

    async def worker() -> None:
        nonlocal done
        while not stopping:
            lead = Lead(campaign_id=CAMPAIGN, external_id=str(next(ids)))
            try:
                sources[(await resolver.resolve(lead)).source] += 1
            except Unresolvable as refusal:
                sources[f"refused {refusal.reason}"] += 1
            done += 1

    tasks = [asyncio.create_task(worker()) for _ in range(MISS_IN_FLIGHT)]
    await asyncio.sleep(warmup)
    count, cpu, started = done, time.process_time(), time.perf_counter()
    await asyncio.sleep(duration)
    count, cpu, elapsed = (
        done - count,
        time.process_time() - cpu,
        time.perf_counter() - started,
    )
    stopping = True
    await asyncio.gather(*tasks)
    await resolver.close()
    return {
        "resolves": done,
        "rps": count / elapsed,
        "cpu": cpu / max(1, count),
        "sources": dict(sources),
        "events": dict(tier.counts) if tier else {},
    }


# -- c: the fleet (worker processes) ------------------------------------------------


def fleet_worker(conn: Connection, barrier: Any) -> None:
    """A fleet member: one event loop for its whole life, one job per message."""
    asyncio.run(fleet_member(conn, barrier))


async def fleet_member(conn: Connection, barrier: Any) -> None:
    loop = asyncio.get_running_loop()
    while True:
        job = await loop.run_in_executor(None, conn.recv)
        if job is None:
            break
        kind = job["kind"]
        tier = None
        if kind != "memory":
            tier = RedisTier(job["url"], prefix=job["prefix"], **job["tier"])
        resolver = make("bench-counting", tier, latency=FLEET_LATENCY)
        if tier is not None and kind == "warm":
            # A first burst (other ids, not counted) opens the connections, as a
            # long-running dialer's earlier bursts have, with a timeout long enough
            # for every one to connect (redis-py drops the connection of an
            # operation that times out, so a cold burst leaves few behind).
            timeout, tier.timeout = tier.timeout, 5.0
            await burst(resolver, job["offset"] + FLEET_IDS)
            tier.timeout = timeout
        # Connected before the start line.
        if tier is not None and not await tier.ping():
            raise RuntimeError(f"no answer from {job['url']}")
        before = Counter(tier.counts if tier else {})
        await loop.run_in_executor(None, barrier.wait, 30)
        CALLS.clear()
        started = time.perf_counter()
        sources = await burst(resolver, job["offset"])
        wall = time.perf_counter() - started
        calls = list(CALLS)
        events = Counter(tier.counts if tier else {})
        events.subtract(before)
        await resolver.close()
        conn.send(
            {
                "calls": calls,
                "sources": dict(Counter(sources)),
                "wall": wall,
                "events": {k: v for k, v in events.items() if v},
            }
        )


async def burst(resolver: Resolver, offset: int) -> list[str]:
    """`FLEET_CONCURRENCY` concurrent resolves over `FLEET_IDS` ids from `offset`."""

    async def one(external_id: str) -> str:
        lead = Lead(campaign_id=CAMPAIGN, external_id=external_id)
        try:
            return (await resolver.resolve(lead)).source
        except Unresolvable as refusal:
            return f"refused {refusal.reason}"

    return await asyncio.gather(
        *(one(str(offset + i % FLEET_IDS)) for i in range(FLEET_CONCURRENCY))
    )


def run_fleet(
    members: list[Connection], kind: str, url: str, round_: int, tier: dict[str, Any]
) -> dict[str, Any]:
    """c) one burst of the whole fleet, each member with a fresh resolver: `cold`
    (connecting as it goes), `warm` (its connections opened beforehand) or `memory`
    (no shared tier)."""
    job = {
        "kind": kind,
        "url": url,
        "prefix": f"bench-fleet-{kind}-{round_}",
        "offset": (round_ + 1) * 1_000_000,
        "tier": tier,
    }
    for conn in members:
        conn.send(job)
    answers = [conn.recv() for conn in members]
    calls = [c for answer in answers for c in answer["calls"]]
    sources: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for answer in answers:
        sources.update(answer["sources"])
        events.update(answer["events"])
    return {
        "calls": len(calls),
        "distinct": len(set(calls)),
        "per_id": len(calls) / max(1, len(set(calls))),
        "wall": max(answer["wall"] for answer in answers),
        "sources": dict(sources),
        "events": dict(events),
    }


# -- the run ---------------------------------------------------------------------------


def main() -> None:
    defaults = RedisTier.__init__.__kwdefaults__ or {}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick 2)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.get("timeout"),
        help="the shared tier's timeout in seconds in c and d (default: RedisTier's own, "
        "%(default)s)",
    )
    args = parser.parse_args()
    quick = args.quick
    rounds = args.rounds or (2 if quick else 5)
    hit_n = 2_000 if quick else 6_000  # a: shared-tier hits and GETs per run, each
    local_n = 20_000 if quick else 100_000  # b: local hits per run, each
    chunks = 10  # a, b: alternating chunks per run
    warmup, duration = (0.3, 1.0) if quick else (0.5, 2.5)  # d
    timeout = args.timeout
    tier_options: dict[str, Any] = {"timeout": timeout}

    import redis

    from predial.testing import RedisServer

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(FLEET_PROCESSES)
    pipes = [ctx.Pipe() for _ in range(FLEET_PROCESSES)]
    workers = [
        ctx.Process(target=fleet_worker, args=(there, barrier), daemon=True) for _, there in pipes
    ]
    members = [here for here, _ in pipes]
    for worker in workers:
        worker.start()  # they import predial while redis-server starts
    for _, there in pipes:
        there.close()  # a member that dies ends its pipe: recv() raises, not hangs
    server = RedisServer()
    try:
        server.start()
        version = server.info("server").get("redis_version", "?")
        print(
            f"predial {predial.__version__} shared-tier benchmark "
            f"({'quick' if quick else 'full'}): Python {sys.version.split()[0]}, "
            f"redis-py {redis.__version__}, redis-server {version} (own, {server.url}), "
            f"{os.cpu_count()} CPUs; RedisTier timeout {timeout:g} s, retry_interval "
            f"{defaults.get('retry_interval'):g} s"
        )
        print(f"repeat: {shlex.join([Path(sys.executable).name, *sys.argv])}", flush=True)
        url = server.url
        asyncio.run(prime(url))
        results: dict[str, list[dict[str, Any]]] = {}
        serial = itertools.count()

        def fleet(kind: str) -> Callable[[], dict[str, dict[str, Any]]]:
            def run() -> dict[str, dict[str, Any]]:
                before = server_stats(server)
                result = run_fleet(members, kind, url, next(serial), tier_options)
                result["connections"] = used(server, before)["connections"]
                return {f"c-{kind}": result}

            return run

        def misses(shared: bool) -> Callable[[], dict[str, dict[str, Any]]]:
            def run() -> dict[str, dict[str, Any]]:
                n = next(serial)
                before = server_stats(server)
                result = asyncio.run(
                    run_misses(
                        url if shared else None,
                        f"bench-miss-{n}",
                        (n + 1) * 1_000_000,
                        warmup,
                        duration,
                        tier_options,
                    )
                )
                done = used(server, before)
                result["connections"] = done["connections"]
                result["scripts"] = done["scripts"] / max(1, result["resolves"])
                return {"d-shared" if shared else "d-memory": result}

            return run

        runs: list[Callable[[], dict[str, dict[str, Any]]]] = [
            lambda: asyncio.run(run_a(url, hit_n, chunks, server)),
            lambda: asyncio.run(run_b(url, local_n, chunks)),
            fleet("cold"),
            fleet("warm"),
            fleet("memory"),
            misses(False),
            misses(True),
        ]
        started = time.perf_counter()
        for round_ in range(rounds):
            for run in runs if round_ % 2 == 0 else runs[::-1]:
                for key, result in run().items():
                    results.setdefault(key, []).append(result)
        report(results, rounds, hit_n, local_n, chunks, duration, time.perf_counter() - started)
    finally:
        for conn in members:
            with contextlib.suppress(OSError):  # a member that is gone already
                conn.send(None)
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
        server.stop()


def report(
    results: dict[str, list[dict[str, Any]]],
    rounds: int,
    hit_n: int,
    local_n: int,
    chunks: int,
    duration: float,
    elapsed: float,
) -> None:
    def med(key: str, field: str) -> float:
        return float(statistics.median(r[field] for r in results[key]))

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    def us(seconds: float, width: int = 8) -> str:
        return f"{seconds * 1e6:{width}.1f}"

    def totals(key: str, field: str) -> Counter[str]:
        total: Counter[str] = Counter()
        for sample in results[key]:
            total.update(sample[field])
        return total

    print(f"{rounds} interleaved rounds in {elapsed:.0f} s; medians over the rounds\n")

    print(
        f"a) one at a time, {hit_n} each per round ({chunks} alternating chunks)\n"
        f"   {'µs per operation':<34} {'p50':>8} {'p99':>8} {'mean':>8} {'CPU':>8} "
        f"{'server':>8}"
    )
    for key, label in (("a-get", "bare redis-py GET"), ("a-shared", "shared-tier hit, local cold")):
        print(
            f"   {label:<34} {us(med(key, 'p50'))} {us(med(key, 'p99'))} {us(med(key, 'mean'))} "
            f"{us(med(key, 'cpu'))} {us(med(key, 'server'))}"
        )
    ratio = med("a-shared", "p50") / med("a-get", "p50")
    print(
        f"   shared-tier hit / GET, p50 latency: {ratio:.2f}x (target <= 2x) {verdict(ratio <= 2)}"
        f"; mean {med('a-shared', 'mean') / med('a-get', 'mean'):.2f}x, this process's CPU "
        f"{med('a-shared', 'cpu') / med('a-get', 'cpu'):.2f}x; server = redis-server's "
        f"usec_per_call (EVALSHA LOOKUP vs GET)"
    )

    print(
        f"\nb) one at a time, {local_n} each per round ({chunks} alternating chunks)\n"
        f"   {'µs per resolve':<34} {'mean':>8} {'CPU':>8}"
    )
    for key, label in (
        ("b-memory", "memory-only resolver hit"),
        ("b-shared", "local-tier hit, shared tier on"),
    ):
        print(f"   {label:<34} {us(med(key, 'mean'), 8)} {us(med(key, 'cpu'), 8)}")
    ratio = med("b-shared", "mean") / med("b-memory", "mean")
    print(
        f"   local-tier hit / memory-only hit: {ratio:.2f}x (target <= 1.2x) "
        f"{verdict(ratio <= 1.2)}; CPU {med('b-shared', 'cpu') / med('b-memory', 'cpu'):.2f}x"
    )

    print(
        f"\nc) {FLEET_PROCESSES} processes x {FLEET_CONCURRENCY} concurrent resolves over "
        f"{FLEET_IDS} ids, {FLEET_LATENCY * 1000:.0f} ms counting adapter; CRM calls per "
        f"distinct id, fleet-wide"
    )
    for key, label in (
        ("c-cold", "shared tier, fresh processes"),
        ("c-warm", "shared tier, warm processes"),
        ("c-memory", "memory only (context)"),
    ):
        samples = results[key]
        worst = max(s["per_id"] for s in samples)
        line = f"   {label:<29} {med(key, 'per_id'):.2f} (worst round {worst:.2f})"
        if key != "c-memory":
            line += f"; target 1.0 in every round: {verdict(worst <= 1.0)}"
        print(line)
        print(
            f"   {'':<29} wall {med(key, 'wall') * 1000:.0f} ms (worst "
            f"{max(s['wall'] for s in samples) * 1000:.0f} ms); connections opened "
            f"{med(key, 'connections'):.0f}; calls/distinct ids per round: "
            f"{', '.join(str(s['calls']) + '/' + str(s['distinct']) for s in samples)}"
        )
        print(f"   {'':<29} answers: {shown(totals(key, 'sources'))}")
        if key != "c-memory":
            print(f"   {'':<29} tier events: {shown(totals(key, 'events'))}")

    ideal = MISS_IN_FLIGHT / MISS_LATENCY
    print(
        f"\nd) misses, {MISS_IN_FLIGHT} in flight, {MISS_LATENCY * 1000:.0f} ms adapter, "
        f"{duration:g} s per run\n   {'':<24} {'req/s':>7} {'of ideal':>8} {'CPU/miss':>9} "
        f"{'scripts/miss':>12} {'connections':>11}"
    )
    for key, label in (("d-memory", "memory-only resolver"), ("d-shared", "shared tier")):
        print(
            f"   {label:<24} {med(key, 'rps'):7.0f} {med(key, 'rps') / ideal:8.2f} "
            f"{us(med(key, 'cpu'), 6)} µs {med(key, 'scripts'):12.2f} "
            f"{med(key, 'connections'):11.0f}"
        )
    ratio = med("d-shared", "rps") / med("d-memory", "rps")
    print(f"   shared / memory requests/s: {ratio:.2f} (target >= 0.85) {verdict(ratio >= 0.85)}")
    for key in ("d-memory", "d-shared"):
        print(f"   {key} answers: {shown(totals(key, 'sources'))}")
    print(f"   d-shared tier events: {shown(totals('d-shared', 'events'))}")
    # A closed loop on a constant latency L keeps the resolves bunched: a burst of N
    # waits on average for half of the N * c seconds of CPU it needs (c = CPU per
    # miss), so requests/s ~ N / (L + N * c / 2) (see benchmarks/service.py).
    memory_cpu, shared_cpu = med("d-memory", "cpu"), med("d-shared", "cpu")
    wanted = 0.85 * MISS_IN_FLIGHT / (MISS_LATENCY + MISS_IN_FLIGHT * memory_cpu / 2)
    budget = 2 * (MISS_IN_FLIGHT / wanted - MISS_LATENCY) / MISS_IN_FLIGHT
    print(
        f"   model N / (L + N*c/2): memory {predicted(memory_cpu):.0f}/s, shared "
        f"{predicted(shared_cpu):.0f}/s; 0.85 of memory needs <= {budget * 1e6:.0f} µs "
        f"of CPU per miss through the shared tier"
    )


def predicted(cpu: float) -> float:
    """Requests/s of the closed miss loop for `cpu` seconds of CPU per miss."""
    return MISS_IN_FLIGHT / (MISS_LATENCY + MISS_IN_FLIGHT * cpu / 2)


def shown(counts: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


if __name__ == "__main__":
    main()
