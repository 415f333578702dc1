"""Resolves per second through the HTTP adapter base, beside a plain httpx client.

    python benchmarks/http_adapter.py            # full run (~1 min)
    python benchmarks/http_adapter.py --quick    # smaller counts, a smoke check

A fake CRM that answers every contact after 50 ms runs under uvicorn on 127.0.0.1,
in a process of its own (so it does not share the client's GIL). In the same run,
at 10 and at 100 lookups in flight:

- **HTTP base**: `Resolver.resolve_many` over distinct ids (every resolve a cache
  miss) with an `HttpAdapter` subclass: a GET, JSON, phone policy, cache write;
  also the client process's CPU time per resolve (`cpu µs`), which compares stacks
  better than rates on a shared machine;
- **plain client**: one `httpx.AsyncClient` whose pool holds `in_flight`
  connections, doing the same GETs with a semaphore and nothing else; also shown
  with httpx's default limits (20 kept alive, the rest reconnecting per request).

- **adapter lookups**: `fetch_phone` on the same adapter without the resolver: the
  HTTP base alone (no phone policy, cache or deadline);
- **bare transports**: the same GETs over httpx's stock transports in pools of two
  connections (the shape that avoids their pool's collapse), with no predial code
  at all: what httpx's own transports reach on this machine.

The ideal is `in_flight / 0.05 s` (200/s at 10, 2,000/s at 100). Targets: the HTTP
base at >= 0.9 of the ideal at 10; at 100, >= 0.7 of the ideal (1,400/s) and >= 8x
the plain client. Each figure is the best of `--repeats` runs.

The script uses predial's public API only, so an older checkout's stack can be
measured with it too: `PYTHONPATH=<checkout> python benchmarks/http_adapter.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import httpx

import predial
from predial import Campaign, CrmContact, CrmPhone, Lead, Resolver
from predial.adapters.http import HttpAdapter

LATENCY = 0.05
TOKEN = "bench-token"


async def fifty_ms_crm(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Every contact exists with one valid number; the answer comes after 50 ms.

    A bare ASGI app rather than a `FakeCrm`: the server must not be what limits
    the rate (it has one core; the client has the other).
    """
    if scope["type"] != "http":
        return
    contact_id = scope["path"].rsplit("/", 1)[-1]
    authorised = (b"authorization", f"Bearer {TOKEN}".encode()) in scope["headers"]
    number = f"+1202456{int(contact_id) % 10_000:04d}" if contact_id.isdigit() else "+12024561111"
    body = json.dumps({"id": contact_id, "phone": number}).encode()
    await asyncio.sleep(LATENCY)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": 200 if authorised else 401, "headers": headers}
    )
    await send({"type": "http.response.body", "body": body})


class BenchAdapter(HttpAdapter):
    name = "bench"

    async def fetch_phone(self, external_id: str) -> CrmContact:
        data = await self.get_json("/contacts/{}", external_id)
        return CrmContact(phones=[CrmPhone(data["phone"], "main", True)])


class Plugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(BenchAdapter)


def serve_forever(port: int) -> None:
    import uvicorn

    uvicorn.run(
        fifty_ms_crm,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the fake CRM did not start on port {port}")


async def adapter_lookups(base_url: str, in_flight: int, count: int, offset: int) -> float:
    """`fetch_phone` on the adapter alone: the HTTP base without the resolver (no
    phone policy, cache or deadline), `in_flight` workers."""
    adapter = BenchAdapter(base_url=base_url, token=TOKEN, max_in_flight=in_flight, timeout=10.0)

    async def worker(indexes: range) -> None:
        for index in indexes:
            await adapter.fetch_phone(str(offset + index))

    try:
        await asyncio.gather(*(worker(range(i, i + 1)) for i in range(in_flight)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(range(w, count, in_flight)) for w in range(in_flight)))
        return count / (time.perf_counter() - started)
    finally:
        await adapter.aclose()


async def through_the_base(
    base_url: str, in_flight: int, count: int, offset: int
) -> tuple[float, float]:
    """Resolves per second, and CPU µs of this process per resolve."""
    campaign = Campaign(
        "bench",
        "bench",
        {"base_url": base_url, "token": TOKEN, "max_in_flight": in_flight, "timeout": 10.0},
        default_region="US",
        deadline=10.0,
    )
    resolver = Resolver([campaign], plugins=[Plugin()], load_entrypoints=False, deadline=10.0)
    leads = [Lead(campaign_id="bench", external_id=str(offset + i)) for i in range(count)]
    async with resolver:
        # Warm the connections first, as a dialer that has been running would have.
        await resolver.resolve_many(leads[:in_flight], concurrency=in_flight)
        started, cpu_started = time.perf_counter(), time.process_time()
        results = await resolver.resolve_many(leads[in_flight:], concurrency=in_flight)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    failed = [r for r in results if not isinstance(r, predial.Resolution)]
    if failed:
        raise SystemExit(f"{len(failed)} resolves failed, e.g. {failed[0]!r}")
    return (count - in_flight) / elapsed, cpu / (count - in_flight) * 1e6


async def plain_client(
    base_url: str, in_flight: int, count: int, offset: int, sized: bool = True
) -> float:
    """One client doing the GETs. `sized`: its pool keeps `in_flight` connections
    (what one client serving 100 lookups needs); else httpx's default limits, which
    keep only 20 alive and reconnect for the rest."""
    gate = asyncio.Semaphore(in_flight)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = (
        httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        if sized
        else httpx.Limits()
    )
    async with httpx.AsyncClient(
        base_url=base_url, timeout=60.0, headers=headers, limits=limits
    ) as client:

        async def get(index: int) -> None:
            async with gate:
                for attempt in range(3):
                    try:
                        response = await client.get(f"/contacts/{offset + index}")
                        break
                    except httpx.RemoteProtocolError:
                        # Under the collapse, uvicorn may drop a connection the pool
                        # was about to reuse; a client would retry, so this one does.
                        if attempt == 2:
                            raise
                response.raise_for_status()
                response.json()

        await asyncio.gather(*(get(i) for i in range(in_flight)))
        started = time.perf_counter()
        await asyncio.gather(*(get(i) for i in range(in_flight, count)))
        return (count - in_flight) / (time.perf_counter() - started)


async def bare_transports(base_url: str, in_flight: int, count: int, offset: int) -> float:
    """httpx's own transports: the same GETs over stock pools of two connections,
    with no predial code (no resolver, policy or cache)."""
    per_pool = 2
    pools = [
        httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        )
        for _ in range(-(-in_flight // per_pool))
    ]
    timeout = httpx.Timeout(30.0).as_dict()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    next_pool = iter(range(10**9))

    async def get(index: int) -> None:
        pool = pools[next(next_pool) % len(pools)]
        url = f"{base_url}/contacts/{offset + index}"
        request = httpx.Request("GET", url, headers=headers, extensions={"timeout": timeout})
        response = await pool.handle_async_request(request)
        try:
            json.loads(await response.aread())
        finally:
            await response.aclose()

    async def worker(indexes: list[int]) -> None:
        for index in indexes:
            await get(index)

    try:
        await asyncio.gather(*(worker([i]) for i in range(in_flight)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(list(range(w, count, in_flight))) for w in range(in_flight)))
        return count / (time.perf_counter() - started)
    finally:
        for pool in pools:
            await pool.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever(args.serve)
        return

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        wait_for(port)
        base_url = f"http://127.0.0.1:{port}"
        repeats = 1 if args.quick else args.repeats
        print(
            f"fake CRM: {LATENCY * 1000:.0f} ms per answer, uvicorn on {base_url} "
            f"(own process); Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
        )
        print(
            f"{'in flight':>9} {'ideal/s':>8} {'resolves/s':>11} {'of ideal':>9} {'cpu µs':>7} "
            f"{'lookups/s':>10} {'of ideal':>9} {'plain/s':>8} {'base/plain':>11} "
            f"{'default limits/s':>17} {'bare/s':>7} {'base/bare':>10}"
        )
        offset = 0
        for in_flight in (10, 100):
            ideal = in_flight / LATENCY
            count = int(ideal * (1.5 if args.quick else 4)) + in_flight
            base_runs: list[tuple[float, float]] = []
            plain_runs, default_runs, bare_runs = [], [], []
            lookup_runs = []
            for _ in range(repeats):
                base_runs.append(asyncio.run(through_the_base(base_url, in_flight, count, offset)))
                offset += count
                lookup_runs.append(asyncio.run(adapter_lookups(base_url, in_flight, count, offset)))
                offset += count
                # A collapsed client is slow: ten rounds of in-flight requests are
                # plenty to read its rate, and keep the run short.
                plain_count = min(count, in_flight * 10)
                plain_runs.append(
                    asyncio.run(plain_client(base_url, in_flight, plain_count, offset))
                )
                offset += plain_count
                default_runs.append(
                    asyncio.run(plain_client(base_url, in_flight, plain_count, offset, sized=False))
                )
                offset += plain_count
                bare_runs.append(asyncio.run(bare_transports(base_url, in_flight, count, offset)))
                offset += count
            base, cpu = max(rate for rate, _ in base_runs), min(cpu for _, cpu in base_runs)
            plain, default = max(plain_runs), max(default_runs)
            bare, lookups = max(bare_runs), max(lookup_runs)
            print(
                f"{in_flight:>9} {ideal:>8.0f} {base:>11.0f} {base / ideal:>9.2f} {cpu:>7.0f} "
                f"{lookups:>10.0f} {lookups / ideal:>9.2f} {plain:>8.0f} {base / plain:>10.1f}x "
                f"{default:>17.0f} {bare:>7.0f} {base / bare:>10.2f}"
            )
        print("targets: >= 0.90 of ideal at 10; >= 0.70 of ideal and >= 8x plain at 100")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
