"""The shared tier's acceptance tests: a fleet of real processes on real Redis.

Each member of the fleet is a spawned process with its own `Resolver` and
`RedisTier` (tests/fleet_helpers.py); CRM calls are counted across processes, in a
file or by a fake CRM served over HTTP. What is checked is what a fleet of dialers
relies on: one CRM call per lead however many processes ask, one rate budget per
CRM tenant, one circuit breaker per campaign, and no new way to fail a dial when
Redis crashes, stalls or fails over mid-load.

The figures each test measured are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import (
    Fleet,
    MemberConfig,
    RecordingCrm,
    expected_number,
    read_calls,
)
from redis_cluster import RedisClusterServers

from predial.testing._redis_server import RedisServer
from predial.testing._serving import serve


def _url(request: pytest.FixtureRequest, topology: str) -> str:
    fixture = "redis_url" if topology == "plain" else "redis_cluster_url"
    return str(request.getfixturevalue(fixture))


def _warm(fleet: Fleet, connections: int) -> None:
    """Fill each member's connection pool (as in a process that has been running)
    and wait until every member's tier is up."""
    fleet.all("connect", connections=connections, timeout=60.0)
    states = fleet.all("wait_up", within=10.0, timeout=20.0)
    assert all(state["state"] == "up" for state in states.values()), states


# -- 1. one CRM call per id ----------------------------------------------------------


class MoreThanOneCall(AssertionError):
    """The fleet called the CRM more than once for an id."""


def _one_call_per_id(url: str, cluster: bool, counter: str, *, timeout: float, warm: bool) -> None:
    members = {
        f"m{i}": MemberConfig(
            url,
            settings={"counter_file": counter, "member": f"m{i}", "latency": 0.1},
            cluster=cluster,
            timeout=timeout,
        )
        for i in range(4)
    }
    ids = [str(i % 100) for i in range(250)]
    with Fleet(members) as fleet:
        if warm:
            _warm(fleet, 120)
        started = time.monotonic()
        results = fleet.all("resolve", ids=ids, timeout=60.0)
        took = time.monotonic() - started
        states = fleet.all("state")

    answers = [answer for per_member in results.values() for answer in per_member]
    refused = Counter(a["refused"] for a in answers if "refused" in a)
    wrong = [a for a in answers if "number" in a and a["number"] != expected_number(a["id"])]
    calls = read_calls(counter)
    by_id = Counter(call.split(":", 1)[1] for call in calls)
    print(
        f"\n{'cluster' if cluster else 'plain'} ({'warm' if warm else 'cold'} pools, timeout "
        f"{timeout}): {len(answers)} resolves in {took:.2f} s, CRM calls {len(calls)} "
        f"({len(by_id)} distinct), sources "
        f"{dict(Counter(a['source'] for a in answers if 'source' in a))}, refusals "
        f"{dict(refused)}, max latency {max(a['elapsed'] for a in answers) * 1000:.0f} ms; "
        f"tier events {[s['counts'] for s in states.values()]}"
    )
    assert len(answers) == 1000
    assert not refused, f"refusals: {dict(refused)}"
    assert not wrong, wrong[:5]
    assert set(by_id) == {str(i) for i in range(100)}
    if len(calls) != 100:
        raise MoreThanOneCall(
            f"{len(calls)} CRM calls for 100 ids; called more than once: "
            f"{ {i: n for i, n in by_id.items() if n > 1} }"
        )


@pytest.mark.parametrize(
    "topology",
    [
        "plain",
        "cluster",
    ],
)
def test_one_crm_call_per_id_across_four_processes(
    request: pytest.FixtureRequest, topology: str, tmp_path: Path
) -> None:
    """4 processes x 250 concurrent resolves over 100 ids, a 100 ms CRM: each id is
    fetched once by the whole fleet, and every resolve is answered with its number.
    (The members' connection pools are filled first, as in a fleet that has been
    running: a cold burst is the next test.)"""
    _one_call_per_id(
        _url(request, topology),
        topology == "cluster",
        str(tmp_path / "calls.txt"),
        timeout=0.5,
        warm=True,
    )


def test_one_crm_call_per_id_from_a_cold_start(redis_url: str, tmp_path: Path) -> None:
    """The same burst when the fleet has just started (the default timeout, nothing
    connected but one PING): still one CRM call per id. (Until 57ecd94 each waiter
    blocked on a connection of its own, all opened at once: the tier degraded and the
    fleet made 128-397 CRM calls for the 100 ids.)"""
    _one_call_per_id(redis_url, False, str(tmp_path / "calls.txt"), timeout=0.05, warm=False)


def test_a_cluster_member_answers_its_first_resolve(redis_cluster_url: str, tmp_path: Path) -> None:
    """A process whose very first use of a Cluster tier is a resolve (no PING first:
    its client learns the slots in the background meanwhile) answers it, from the
    CRM, within its deadline."""
    members = {
        "m0": MemberConfig(
            redis_cluster_url,
            settings={"counter_file": str(tmp_path / "calls.txt"), "member": "m0"},
            cluster=True,
            deadline=1.0,
            ping_first=False,
        )
    }
    with Fleet(members) as fleet:
        [answer] = fleet.call("m0", "resolve", ids=["31"], timeout=5.0)
    print(f"\nfirst resolve on a Cluster tier: {answer}")
    assert answer.get("number") == expected_number("31"), answer
    assert answer["elapsed"] <= 1.0 + 0.1, answer


# -- 2. one rate budget per CRM tenant ----------------------------------------------

RATE_LIMIT, RATE_WINDOW, RATE_RUN = 50, 10.0, 30.0


class RateWindowExceeded(AssertionError):
    """The CRM saw more requests in a sliding window than the tenant's limit."""


def _most_in_window(times: list[float], window: float) -> tuple[int, float]:
    """The most instants of `times` in any window [t, t + window), and where it starts."""
    times = sorted(times)
    best, at = 0, 0.0
    for i, t in enumerate(times):
        count = bisect.bisect_left(times, t + window) - i
        if count > best:
            best, at = count, t
    return best, at


def test_rate_budget_is_shared_by_the_fleet(redis_url: str) -> None:
    """4 processes hammer one tenant limited to 50 requests / 10 s for 30 s, each
    resolving new ids in 3 loops: the fleet uses at least 90 % of what the limit
    allows, every request the CRM answered is a dial answered, and the CRM never sees
    more than 50 (+1) requests in any 10 s window.

    One attempt per resolve: with retries, a resolve sleeps for the budget and is then
    cut off by its deadline, which opens the fleet's breaker on a healthy CRM (see
    test_waiting_for_the_rate_budget_does_not_open_the_breaker) and this test would
    measure that instead of the budget."""
    crm = RecordingCrm()
    with serve(crm) as base_url:
        settings = {"base_url": base_url, "token": "t0k3n", "tenant": "acme-account"}
        members = {
            f"r{i}": MemberConfig(
                redis_url, adapter="fleetcrm", settings=settings, timeout=0.5, retry_attempts=1
            )
            for i in range(4)
        }
        with Fleet(members) as fleet:
            _warm(fleet, 10)
            start = time.monotonic()
            fleet.all(
                "load",
                prefix="",
                loops=3,
                pause=0.02,
                pool=0,
                fresh_every=0,
                end_at=start + RATE_RUN,
            )
            time.sleep(RATE_RUN)
            loads = fleet.all("stop", timeout=30.0)
            tiers = fleet.all("state")

    arrived, sent = sorted(crm.times), sorted(crm.sent)
    worst, worst_at = _most_in_window(arrived, RATE_WINDOW)
    worst_sent, _ = _most_in_window(sent, RATE_WINDOW)
    per_window = [
        sum(1 for t in arrived if start + k * RATE_WINDOW <= t < start + (k + 1) * RATE_WINDOW)
        for k in range(int(RATE_RUN // RATE_WINDOW) + 1)
    ]
    delays = [a - s for a, s in zip(crm.times, crm.sent, strict=True)]
    answered = sum(load["ok"] for load in loads.values())
    refused = sum((Counter(load["refused"]) for load in loads.values()), Counter())
    print(
        f"\nrate: {len(arrived)} CRM requests in {RATE_RUN:.0f} s, per 10 s from the start "
        f"{per_window}; most in a sliding 10 s window: {worst} as the CRM received them "
        f"(from {worst_at - start:.3f} s), {worst_sent} as they were sent; sent-to-received "
        f"max {max(delays, default=0) * 1000:.0f} ms; {answered} answered, refused "
        f"{dict(refused)}; tier events {[tier['counts'] for tier in tiers.values()]}"
    )
    assert len(arrived) >= 0.9 * RATE_LIMIT * RATE_RUN / RATE_WINDOW, (
        f"only {len(arrived)} requests in {RATE_RUN} s"
    )
    assert answered == len(arrived), "a request reached the CRM for a dial that was refused"
    assert not refused.keys() - {"unavailable"}, refused  # only "the budget is spent"
    if worst > RATE_LIMIT + 1:
        in_it = [round(t - start, 3) for t in arrived if worst_at <= t < worst_at + RATE_WINDOW]
        raise RateWindowExceeded(
            f"{worst} requests reached the CRM within 10 s (limit {RATE_LIMIT}): {in_it}"
        )


class BreakerOpened(AssertionError):
    """The fleet's breaker opened though the CRM never failed."""


def test_waiting_for_the_rate_budget_does_not_open_the_breaker(redis_url: str) -> None:
    """A tenant of 1 request per second, a CRM that answers in 0.3 s, a deadline of
    0.8 s. Right after a first answer, a second resolve finds the budget spent for
    0.7 s: less than its time left, so it waits, and sends when there is no time left
    for the CRM to answer. That is predial's own pacing, not the CRM failing: the
    fleet's breaker (opening at the first failure here) must stay closed, and
    another process's resolve once the budget is back must reach the CRM."""
    crm = RecordingCrm(delay=0.3)
    with serve(crm) as base_url:
        settings = {
            "base_url": base_url,
            "token": "t0k3n",
            "tenant": "tight-account",
            "rate_limit": [1, 1.0],
        }
        members = {
            name: MemberConfig(
                redis_url,
                adapter="fleetcrm",
                settings=settings,
                timeout=0.5,
                deadline=0.8,
                breaker=(1, 5.0),
            )
            for name in ("r0", "r1")
        }
        with Fleet(members) as fleet:
            _warm(fleet, 5)
            [first] = fleet.call("r0", "resolve", ids=["1001"])
            [second] = fleet.call("r0", "resolve", ids=["1002"])
            time.sleep(1.1)  # the budget is back
            [third] = fleet.call("r1", "resolve", ids=["1003"])
    print(f"\nbudget and breaker: {first}, {second}, {third}; CRM requests {crm.paths}")
    assert first.get("source") == "crm", first
    assert second.get("number") or second["elapsed"] <= 0.8 + 0.1, second
    if third.get("source") != "crm":
        raise BreakerOpened(
            f"after {second} (CRM requests {crm.paths}), another process got {third}"
        )


# -- 3. one breaker per campaign ----------------------------------------------------


def test_breaker_opens_for_the_fleet_and_lets_one_probe_through(
    redis_url: str, tmp_path: Path
) -> None:
    """A's CRM calls fail until the fleet's breaker opens; B and C then refuse
    `circuit_open` at once without calling their CRM; after `open_for`, when all
    three resolve at once, exactly one half-open probe reaches a CRM."""
    counter = str(tmp_path / "calls.txt")
    threshold, open_for = 3, 1.0

    def member(name: str, mode: str, latency: float) -> MemberConfig:
        return MemberConfig(
            redis_url,
            campaign="brk",
            settings={"counter_file": counter, "member": name, "latency": latency, "mode": mode},
            timeout=0.5,
            retry_attempts=1,
            breaker=(threshold, open_for),
        )

    # B's and C's CRM is slow enough that every resolve of the probe round asks the
    # breaker while the probe is still out.
    members = {
        "A": member("A", "fail", 0.0),
        "B": member("B", "ok", 0.3),
        "C": member("C", "ok", 0.3),
    }

    def calls() -> Counter[str]:
        return Counter(call.split(":", 1)[0] for call in read_calls(counter))

    with Fleet(members) as fleet:
        _warm(fleet, 10)
        for n in range(1, threshold + 1):
            [answer] = fleet.call("A", "resolve", ids=[f"a{n}"])
            assert answer.get("refused") == "unavailable", answer
        last_failure = time.monotonic()
        assert calls() == {"A": threshold}
        # A's own next resolve is refused by the fleet's breaker: the failures are recorded.
        [answer] = fleet.call("A", "resolve", ids=["a-more"])
        assert answer.get("refused") == "circuit_open", answer

        refused = fleet.all(
            "resolve",
            names=["B", "C"],
            per_member={"B": {"ids": ["b1"]}, "C": {"ids": ["c1"]}},
        )
        print(f"\nbreaker: B and C after A's failures: {refused}")
        for name, [answer] in refused.items():
            assert answer.get("refused") == "circuit_open", (name, answer)
            assert answer["elapsed"] < 0.1, (name, answer)
        assert calls() == {"A": threshold}, "B or C called its CRM while the circuit was open"

        time.sleep(max(0.0, last_failure + open_for + 0.2 - time.monotonic()))
        before = sum(calls().values())
        probe_round = fleet.all(
            "resolve",
            per_member={
                name: {"ids": [f"{name.lower()}p{k}" for k in range(5)]} for name in members
            },
        )
        answers = {
            (name, a["id"]): a.get("source") or a.get("refused")
            for name, per_member in probe_round.items()
            for a in per_member
        }
        probes = sum(calls().values()) - before
        through = {key: v for key, v in answers.items() if v != "circuit_open"}
        print(f"breaker: probe round, CRM calls {probes}, not refused: {through}")
        assert probes == 1, f"{probes} half-open probes reached a CRM: {answers}"
        assert len(through) == 1, answers

        # The probe's verdict holds for the whole fleet.
        [(prober, _)] = through
        if prober == "A":  # a failed probe re-opens the circuit everywhere
            [answer] = fleet.call("B", "resolve", ids=["b-after"])
            assert answer.get("refused") == "circuit_open", answer
        else:  # a good probe closes it everywhere (announced: within a few round trips)
            other = "C" if prober == "B" else "B"
            probed = time.monotonic()
            for k in range(50):
                [answer] = fleet.call(other, "resolve", ids=[f"after-probe-{k}"])
                if answer.get("source") == "crm" or time.monotonic() - probed > 0.5:
                    break
                time.sleep(0.01)
            print(
                f"breaker: {other} reached its CRM {time.monotonic() - probed:.3f} s after "
                f"the good probe ({k + 1} resolves)"
            )
            assert answer.get("source") == "crm", answer


# -- 4. faults mid-load --------------------------------------------------------------

DEADLINE = 1.0
LATENCY_BOUND = DEADLINE + 0.1


class SharingNotResumed(AssertionError):
    """After the fault, a member's tier stayed degraded or did not share."""


def _hits(answers: list[dict[str, Any]]) -> int:
    return sum(a.get("source") == "cache" for a in answers)


def _tally(answers: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(a.get("source") or a.get("refused") for a in answers))


def _under_fault(
    url: str, counter: str, fault: Callable[[], None], *, cluster: bool = False
) -> None:
    """3 processes resolve continuously (20 paced loops each, over 300 ids, a new id
    every 10th resolve) while `fault` runs: every resolve answers within its deadline
    + 100 ms, never with a number the phone policy refuses (every 7th id, ending in
    `x`, gets an unassigned number from the CRM) nor with another lead's number;
    after the fault every member's tier is up again, and of 20 new ids one member
    resolves, at least 18 are cache hits in each of the others."""
    members = {
        f"f{i}": MemberConfig(
            url,
            settings={"counter_file": counter, "member": f"f{i}", "latency": 0.05},
            cluster=cluster,
            deadline=DEADLINE,
            timeout=0.05,
        )
        for i in range(3)
    }
    with Fleet(members) as fleet:
        _warm(fleet, 30)
        fleet.all("load", prefix="", loops=20, pause=0.01, pool=300, fresh_every=10, end_at=None)
        time.sleep(1.5)
        fault_started = time.monotonic()
        fault()
        fault_took = time.monotonic() - fault_started
        recovered = fleet.all("wait_up", within=6.0, timeout=10.0)
        recovery = time.monotonic() - fault_started
        # Sharing has resumed when 20 new ids one member resolves are cache hits in
        # the others. A cluster's nodes agree on a failover's new master only after
        # their gossip settles (redis-py may first be handed a stale slot map, and a
        # member flaps between degraded and up until it is not): up to three rounds,
        # each with new ids, a few seconds apart.
        for round_ in range(3):
            fresh = [f"9{round_}{k:03d}" for k in range(20)]
            # One at a time: the check is that sharing resumed, not how a burst fares.
            first = fleet.call("f0", "resolve", ids=fresh, sequential=True)
            time.sleep(0.3)  # f0's writes to the shared tier happen after it answers
            shared = fleet.all("resolve", names=["f1", "f2"], ids=fresh, sequential=True)
            if all(_hits(answers) >= 18 for answers in shared.values()):
                break
            print(f"\nround {round_}: " + ", ".join(f"{n} {_hits(a)}" for n, a in shared.items()))
            fleet.all("wait_up", within=6.0, timeout=10.0)
            time.sleep(2.0)
        time.sleep(1.0)
        loads = fleet.all("stop", timeout=30.0)
        counts = fleet.all("state")

    print(
        f"\nfault took {fault_took:.2f} s; tiers {[s['state'] for s in recovered.values()]} "
        f"{recovery:.2f} s after it started"
    )
    for name, load in loads.items():
        print(
            f"  {name}: {load['ok']} answered {load['sources']}, refused {load['refused']}, "
            f"max latency {load['max_latency'] * 1000:.0f} ms; tier {counts[name]['counts']}"
        )
    print(
        f"  20 new ids after the fault: f0 {_tally(first)}, "
        + ", ".join(f"{name} {_tally(answers)}" for name, answers in shared.items())
    )
    for name, load in loads.items():
        assert load["ok"] > 0, name
        assert not load["served_invalid"], (name, load["served_invalid"])
        assert not load["wrong"], (name, load["wrong"])
        assert load["max_latency"] <= LATENCY_BOUND, (name, load["slowest"])
    assert all(a.get("number") == expected_number(a["id"]) for a in first), first
    if any(state["state"] != "up" for state in recovered.values()):
        raise SharingNotResumed(f"a tier is not up {recovery:.1f} s after the fault: {recovered}")
    for name, answers in shared.items():
        hits = _hits(answers)
        if hits < 18:
            raise SharingNotResumed(f"{name}: {hits} of 20 ids f0 resolved were cache hits")


def test_redis_killed_and_restarted_mid_load(
    fresh_redis_server: RedisServer, tmp_path: Path
) -> None:
    """SIGKILL, then a restart on the same port (empty) a second later."""

    def fault() -> None:
        fresh_redis_server.kill()
        time.sleep(1.0)
        fresh_redis_server.restart()

    _under_fault(fresh_redis_server.url, str(tmp_path / "calls.txt"), fault)


def test_redis_stalled_mid_load(fresh_redis_server: RedisServer, tmp_path: Path) -> None:
    """SIGSTOP for a second (20 times the tier's timeout), then SIGCONT."""

    def fault() -> None:
        fresh_redis_server.pause()
        try:
            time.sleep(1.0)
        finally:
            fresh_redis_server.resume()

    _under_fault(fresh_redis_server.url, str(tmp_path / "calls.txt"), fault)


@pytest.mark.parametrize(
    "victim",
    [
        "another-master",
        "url-master",
    ],
)
def test_cluster_master_failed_over_mid_load(
    redis_cluster: RedisClusterServers, redis_cluster_url: str, tmp_path: Path, victim: str
) -> None:
    """A master of the cluster is SIGKILLed and its replica takes over (about 2 s):
    another master than the one the URL names, or that one."""
    masters = redis_cluster.masters()
    port = next(p for p in masters if (f":{p}" in redis_cluster_url) == (victim == "url-master"))

    def fault() -> None:
        print(f"\nfailed over {port} to {redis_cluster.failover(port)}", end="")

    try:
        _under_fault(redis_cluster_url, str(tmp_path / "calls.txt"), fault, cluster=True)
    finally:
        redis_cluster.heal()


def _kill_connections(server: RedisServer, pid: int) -> int:
    """Close, on the server's side, every connection of the process `pid` (its
    client name is `predial-<pid>`), as a network blip would; how many."""
    listing = server.command("CLIENT", "LIST")
    assert isinstance(listing, bytes)
    ids = [
        fields["id"]
        for fields in (
            dict(part.split("=", 1) for part in line.split() if "=" in part)
            for line in listing.decode().splitlines()
        )
        if fields.get("name") == f"predial-{pid}"
    ]
    for client_id in ids:
        server.command("CLIENT", "KILL", "ID", client_id)
    return len(ids)


def test_a_holder_losing_its_connection_does_not_fail_the_waiters(
    fresh_redis_server: RedisServer, tmp_path: Path
) -> None:
    """The holder of a lead's CRM call (0.5 s) loses its connections to Redis while
    the call runs (the server closes them: a network blip, a proxy's idle timeout, a
    failover); a waiter in another process must still be answered within its deadline
    (handed the number, or fetching it itself), not refused because of Redis.
    (Before cffe4dc the holder skipped its publish while degraded, and the waiter
    blocked on the orphaned claim until its deadline: refused `timeout`.)"""
    counter = str(tmp_path / "calls.txt")
    members = {
        name: MemberConfig(
            fresh_redis_server.url,
            settings={"counter_file": counter, "member": name, "latency": 0.5},
            deadline=2.0,
            timeout=0.05,
        )
        for name in ("holder", "waiter")
    }
    with Fleet(members) as fleet:
        _warm(fleet, 5)
        holder_pid = fleet.call("holder", "state")["pid"]
        fleet.send("holder", "resolve", ids=["4242"])
        time.sleep(0.15)
        fleet.send("waiter", "resolve", ids=["4242"])
        time.sleep(0.15)
        killed = _kill_connections(fresh_redis_server, holder_pid)
        [held] = fleet.reply("holder")
        [waited] = fleet.reply("waiter")
        tiers = fleet.all("state")
    print(
        f"\nholder lost {killed} connections: holder {held}, waiter {waited}, CRM calls "
        f"{read_calls(counter)}, tier events {[t['counts'] for t in tiers.values()]}"
    )
    assert killed > 0
    assert held.get("number") == expected_number("4242"), held
    assert tiers["waiter"]["counts"].get("wait") == 1, "the waiter did not wait on the holder"
    assert waited.get("number") == expected_number("4242"), waited
    assert waited["elapsed"] <= 2.0 + 0.1, waited
