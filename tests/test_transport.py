"""The HTTP base's transport: its connection pool, the asyncio network backend, TLS,
and the fast path that sends what httpx would have sent."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpcore
import httpx
import pytest
import respx
import trustme
from hypothesis import given
from hypothesis import strategies as st

from predial import AdapterUnavailable
from predial.adapters._pool import PooledTransport
from predial.adapters._transport import DeferredRequest, ShardedTransport
from predial.adapters.http import HttpAdapter, safe_path

BODY = b'{"phone": "+12024561111"}'
TIMEOUTS = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}


class KeepAliveServer:
    """An HTTP/1.1 server on 127.0.0.1 that keeps connections open between requests,
    counting connections and requests; `delay` before each answer, `close_after_answer`
    to hang up once answered (as a server whose keep-alive timed out)."""

    def __init__(self, *, delay: float = 0.0, close_after_answer: bool = False) -> None:
        self.delay = delay
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.open = 0
        self.most_open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                await asyncio.sleep(self.delay)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
                    + BODY
                )
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up: the end of this connection
        finally:
            self.open -= 1
            writer.close()


@asynccontextmanager
async def serving(
    handler: Any, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, int]]:
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield "127.0.0.1", port
    finally:
        server.close()
        # Handlers still at work (a slow answer nobody waits for) end with the test.
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def transport(max_connections: int = 10, cap: int = 100_000) -> PooledTransport:
    return PooledTransport(
        ssl_context=ssl.create_default_context(),
        max_connections=max_connections,
        max_response_bytes=cap,
    )


async def get(through: PooledTransport, url: str, **timeouts: float) -> httpx.Response:
    request = httpx.Request("GET", url, extensions={"timeout": {**TIMEOUTS, **timeouts}})
    return await through.handle_async_request(request)


class Acme(HttpAdapter):
    name = "acme"

    async def fetch_phone(self, external_id: str) -> Any:
        return await self.get_json("/c/{}", external_id)


async def test_one_connection_serves_requests_one_after_another() -> None:
    """Sequential requests reuse the kept-alive connection."""
    server = KeepAliveServer()
    async with serving(server.handle) as (host, port):
        pool = transport()
        for _ in range(20):
            response = await get(pool, f"http://{host}:{port}/c/1")
            assert response.json() == {"phone": "+12024561111"}
        await pool.aclose()
    assert server.connections == 1
    assert len(server.requests) == 20


async def test_requests_in_flight_never_open_more_than_max_connections() -> None:
    """50 concurrent requests over at most 10 connections, all answered."""
    server = KeepAliveServer(delay=0.02)
    async with serving(server.handle) as (host, port):
        pool = transport(max_connections=10)
        answers = await asyncio.gather(
            *(get(pool, f"http://{host}:{port}/c/{i}") for i in range(50))
        )
        assert all(answer.status_code == 200 for answer in answers)
        assert server.most_open <= 10
        # Every connection is back, idle and reusable.
        answers = await asyncio.gather(
            *(get(pool, f"http://{host}:{port}/c/{i}") for i in range(10))
        )
        await pool.aclose()
    assert server.connections <= 10
    assert len(server.requests) == 60


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    """A server that hangs up after each answer (a keep-alive timeout) costs a new
    connection, never a failed request."""
    server = KeepAliveServer(close_after_answer=True)
    async with serving(server.handle) as (host, port):
        pool = transport(max_connections=2)
        for _ in range(5):
            await get(pool, f"http://{host}:{port}/c/1")
            await asyncio.sleep(0.02)  # the FIN arrives while the connection is idle
        await pool.aclose()
    assert server.connections == 5


async def test_a_full_pool_makes_the_next_request_wait_then_time_out() -> None:
    """With every connection busy, a request waits for one, up to its pool timeout."""
    server = KeepAliveServer(delay=0.3)
    async with serving(server.handle) as (host, port):
        pool = transport(max_connections=1)
        busy = asyncio.create_task(get(pool, f"http://{host}:{port}/c/1"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await get(pool, f"http://{host}:{port}/c/2", pool=0.05)
        assert (await busy).status_code == 200
        # The waiter that gave up left no trace: the next request goes straight through.
        assert (await get(pool, f"http://{host}:{port}/c/3", pool=0.05)).status_code == 200
        await pool.aclose()


class CancelsAfterHandOff(PooledTransport):
    """Cancels `victim` right after a connection was handed to it, before it runs."""

    victim: asyncio.Task[httpx.Response] | None = None

    async def _pass_on(self, connections: Any, key: Any, handed: Any) -> None:
        await super()._pass_on(connections, key, handed)
        victim, self.victim = self.victim, None
        if victim is not None and not victim.done():
            victim.cancel()


async def eventually(condition: Any, within: float = 2.0) -> None:
    """Wait until `condition()` holds (a close done on another thread, say)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polls state another thread changes
            await asyncio.sleep(0.01)


def pool_state(pool: PooledTransport) -> tuple[int, int, int]:
    """(open, idle, live waiters) of the pool's one event loop."""
    (connections,) = pool._by_loop.values()
    idle = sum(len(stack) for stack in connections.idle.values())
    waiting = sum(not waiter.done() for _, waiter in connections.waiters)
    return connections.open, idle, waiting


async def test_a_waiter_cancelled_after_being_handed_a_connection_passes_it_on() -> None:
    """Handed the connection and cancelled before it could use it: the next waiter
    gets that connection (no new one is opened, none is lost)."""
    server = KeepAliveServer(delay=0.05)
    async with serving(server.handle) as (host, port):
        pool = CancelsAfterHandOff(
            ssl_context=ssl.create_default_context(), max_connections=1, max_response_bytes=1000
        )
        url = f"http://{host}:{port}/c/1"
        busy = asyncio.create_task(get(pool, url))
        await asyncio.sleep(0)
        first = asyncio.create_task(get(pool, url))
        second = asyncio.create_task(get(pool, url))
        await asyncio.sleep(0)
        pool.victim = first
        await busy
        with pytest.raises(asyncio.CancelledError):
            await first
        assert (await asyncio.wait_for(second, 2.0)).status_code == 200
        assert pool_state(pool) == (1, 1, 0)
        await pool.aclose()
    assert server.connections == 1


async def test_a_waiter_for_another_origin_gets_the_place_of_a_closed_connection() -> None:
    """With the only connection busy for origin A, a request for origin B waits; A's
    connection, given back, makes way for one to B."""
    first, second = KeepAliveServer(delay=0.05), KeepAliveServer()
    async with serving(first.handle) as (host, port_a), serving(second.handle) as (_, port_b):
        pool = transport(max_connections=1)
        busy = asyncio.create_task(get(pool, f"http://{host}:{port_a}/c/1"))
        await asyncio.sleep(0)
        other = asyncio.create_task(get(pool, f"http://{host}:{port_b}/c/1"))
        await busy
        assert (await asyncio.wait_for(other, 2.0)).status_code == 200
        assert pool_state(pool) == (1, 1, 0)
        # Full of idle connections to B, a request for A closes one to make room.
        assert (await get(pool, f"http://{host}:{port_a}/c/2")).status_code == 200
        assert pool_state(pool) == (1, 1, 0)
        await pool.aclose()
        await asyncio.sleep(0.05)
    assert first.open == second.open == 0


async def test_idle_connections_past_their_keep_alive_are_closed() -> None:
    """Left from a burst, or to a host no longer asked: closed once their keep-alive
    ends, as later requests are given back (not kept open until the adapter closes)."""
    first, second = KeepAliveServer(delay=0.02), KeepAliveServer()
    async with serving(first.handle) as (host, port_a), serving(second.handle) as (_, port_b):
        pool = PooledTransport(
            ssl_context=ssl.create_default_context(),
            max_connections=10,
            max_response_bytes=1000,
            keepalive_expiry=0.1,
        )
        await asyncio.gather(*(get(pool, f"http://{host}:{port_a}/c/{i}") for i in range(5)))
        assert pool_state(pool) == (5, 5, 0)
        await asyncio.sleep(0.2)  # their keep-alive ends
        for _ in range(6):  # one expired connection is closed per origin and release
            await get(pool, f"http://{host}:{port_b}/c/1")
        assert pool_state(pool) == (1, 1, 0)
        await eventually(lambda: first.open == 0)
        await pool.aclose()


async def test_requests_waiting_when_the_pool_closes_are_told_so() -> None:
    server = KeepAliveServer(delay=0.1)
    async with serving(server.handle) as (host, port):
        pool = transport(max_connections=1)
        url = f"http://{host}:{port}/c/1"
        busy = asyncio.create_task(get(pool, url))
        await asyncio.sleep(0.01)
        waiting = asyncio.create_task(get(pool, url))
        await asyncio.sleep(0.01)
        await pool.aclose()
        with pytest.raises(AdapterUnavailable, match="closed"):
            await waiting
        assert (await busy).status_code == 200


@pytest.mark.parametrize("seed", range(4))
async def test_random_load_leaves_the_pool_consistent(seed: int) -> None:
    """Random delays, cancellations, pool timeouts and servers hanging up, over two
    origins: afterwards every open connection is idle, none waits, none is over the
    limit (the bookkeeping matches what is really open)."""
    rng = random.Random(seed)

    class Flaky(KeepAliveServer):
        async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.open += 1
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    await asyncio.sleep(rng.choice([0, 0, 0.001, 0.005, 0.02]))
                    hang_up = rng.random() < 0.1
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                        + (b"Connection: close\r\n" if hang_up and rng.random() < 0.5 else b"")
                        + b"\r\n{}"
                    )
                    await writer.drain()
                    if hang_up:
                        break
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the client hung up
            finally:
                self.open -= 1
                writer.close()

    servers = [Flaky(), Flaky()]
    outcomes: dict[str, int] = {}
    async with (
        serving(servers[0].handle) as (host, port_a),
        serving(servers[1].handle) as (
            _,
            port_b,
        ),
    ):
        pool = transport(max_connections=3)
        urls = [f"http://{host}:{port_a}/x", f"http://{host}:{port_b}/x"]

        async def one() -> None:
            pool_timeout = rng.choice([0.005, 0.05, 1.0])
            try:
                await asyncio.wait_for(
                    get(pool, rng.choice(urls), pool=pool_timeout), rng.choice([0.003, 0.02, 5])
                )
                outcome = "ok"
            except (TimeoutError, httpx.PoolTimeout, httpx.TransportError) as error:
                outcome = type(error).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        tasks = []
        for _ in range(200):
            tasks.append(asyncio.create_task(one()))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.choice([0, 0.001, 0.003]))
        await asyncio.gather(*tasks)
        open_, idle, waiting = pool_state(pool)
        assert open_ == idle, outcomes
        assert waiting == 0
        assert open_ <= 3
        assert outcomes.get("ok", 0) > 0
        await pool.aclose()


async def test_a_cancelled_request_gives_its_connection_back() -> None:
    """A request cancelled mid-answer closes its connection and frees its place."""
    server = KeepAliveServer(delay=0.5)
    async with serving(server.handle) as (host, port):
        pool = transport(max_connections=1)
        url = f"http://{host}:{port}/c/1"
        slow = asyncio.create_task(get(pool, url))
        await asyncio.sleep(0.05)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        server.delay = 0.0
        assert (await get(pool, url, pool=0.5)).status_code == 200
        await pool.aclose()
    assert server.connections == 2  # the cancelled one was not reused half-read


async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # until the client gives up and hangs up
        writer.close()

    async with serving(silent) as (host, port):
        pool = transport()
        with pytest.raises(httpx.ReadTimeout):
            await get(pool, f"http://{host}:{port}/c/1", read=0.05)
        await pool.aclose()


async def test_a_closed_port_is_a_connect_error() -> None:
    async with serving(KeepAliveServer().handle) as (host, port):
        pass  # the server is gone: its port refuses connections
    pool = transport()
    with pytest.raises(httpx.ConnectError):
        await get(pool, f"http://{host}:{port}/c/1")
    await pool.aclose()


async def test_an_answer_cut_short_is_unavailable() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"phone"')
        await writer.drain()
        writer.close()

    async with serving(cut) as (host, port):
        pool = transport()
        with pytest.raises(AdapterUnavailable, match="cut"):
            await get(pool, f"http://{host}:{port}/c/1")
        await pool.aclose()


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_https_through_the_asyncio_backend(certificate_authority: trustme.CA) -> None:
    """TLS is started on the backend's connection and the certificate is checked."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)
    server = KeepAliveServer()
    async with serving(server.handle, server_context) as (_, port):
        pool = PooledTransport(
            ssl_context=client_context, max_connections=2, max_response_bytes=10_000
        )
        for _ in range(3):
            response = await get(pool, f"https://localhost:{port}/c/1")
            assert response.json() == {"phone": "+12024561111"}
        await pool.aclose()

        untrusting = PooledTransport(
            ssl_context=ssl.create_default_context(), max_connections=2, max_response_bytes=10_000
        )
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await get(untrusting, f"https://localhost:{port}/c/1")
        await untrusting.aclose()
    assert server.connections == 1


async def test_an_adapter_reaches_a_real_server_through_the_pool() -> None:
    """The adapter's own path: fast requests through `PooledTransport` to a socket."""
    server = KeepAliveServer()
    async with serving(server.handle) as (host, port):
        adapter = Acme(base_url=f"http://{host}:{port}/api", token="t0k3n")
        assert await adapter.fetch_phone("a b/c") == {"phone": "+12024561111"}
        await adapter.aclose()
    head = server.requests[0].decode()
    assert head.startswith("GET /api/c/a%20b%2Fc HTTP/1.1\r\n")
    assert f"Host: {host}:{port}\r\n" in head
    assert "Authorization: Bearer t0k3n\r\n" in head


# -- the fast path sends what httpx sends ----------------------------------------------


class Sender(HttpAdapter):
    name = "sender"

    async def fetch_phone(self, external_id: str) -> Any:
        return await self.get_json("/c/{}", external_id)


def recorded(request: httpx.Request) -> tuple[str, str, list[tuple[str, str]], bytes]:
    headers = sorted((key.lower(), value) for key, value in request.headers.multi_items())
    return request.method, str(request.url), headers, request.read()


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8123",
        "http://127.0.0.1:80",
        "https://127.0.0.1",
        "https://127.0.0.1:443/api/v2/",
        "https://bücher.example",
    ],
)
@pytest.mark.parametrize(
    ("method", "template", "params", "body"),
    [
        ("GET", "/c/{}", None, None),
        ("GET", "/c/{}", {"fields": "phone,mobile", "q": "a b&c"}, None),
        ("GET", "/c/{}", [("properties", "phone"), ("properties", "mobilephone")], None),
        ("POST", "/batch/{}", None, {"inputs": [{"id": "1"}], "name": "Ünïcode"}),
    ],
)
async def test_the_fast_path_sends_what_httpx_would(
    base_url: str, method: str, template: str, params: Any, body: Any
) -> None:
    """Through `PooledTransport` (respx catches it at httpcore) and through an httpx
    transport, the same call sends the same method, URL, headers and body."""
    external_id = "ïd 1/2"
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    with respx.mock(assert_all_called=False) as router:
        router.route().mock(side_effect=answer)
        fast = Sender(base_url=base_url, token="t0k3n")
        assert fast._target(safe_path(template, external_id), "") is not None
        await fast.request(method, safe_path(template, external_id), params=params, json_body=body)
        await fast.aclose()
    slow = Sender(base_url=base_url, token="t0k3n", transport=httpx.MockTransport(answer))
    await slow.request(method, safe_path(template, external_id), params=params, json_body=body)
    await slow.aclose()
    assert recorded(seen[0]) == recorded(seen[1])


@given(
    segments=st.lists(st.text(max_size=12), min_size=1, max_size=3),
    params=st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)), max_size=3),
    base_path=st.sampled_from(["", "/", "/api", "/api/v1/"]),
)
def test_the_fast_target_is_httpx_s_target(
    segments: list[str], params: list[tuple[str, str]], base_path: str
) -> None:
    """Whenever the adapter works the target out itself, httpx's URL parser agrees."""
    adapter = Sender(base_url="https://crm.example" + base_path, token="t")
    try:
        path = safe_path("/x" + "/{}" * len(segments), *segments)
    except Exception:
        return  # "." and ".." are refused before any request
    query = str(httpx.QueryParams(params)) if params else ""
    target = adapter._target(path, query)
    if target is not None:
        url = httpx.URL(adapter.base_url + path + ("?" + query if query else ""))
        assert target == url.raw_path


@pytest.mark.parametrize("path", ["/a/../b", "/a/./b", "/a b", "/a%zz", "/ü"])
def test_paths_httpx_would_change_take_the_slow_path(path: str) -> None:
    assert Sender(base_url="https://crm.example", token="t")._target(path, "") is None


# -- the deferred request ---------------------------------------------------------------


def test_a_deferred_request_is_built_when_first_read() -> None:
    request = DeferredRequest(
        "POST", "https://crm.example/c/1?x=1", [("Accept", "application/json")], b"{}", {}
    )
    assert "_deferred" in request.__dict__
    assert isinstance(request, httpx.Request)
    assert request.url == httpx.URL("https://crm.example/c/1?x=1")
    assert "_deferred" not in request.__dict__
    assert request.method == "POST"
    assert request.headers["accept"] == "application/json"
    assert request.read() == b"{}"
    assert repr(request) == "<DeferredRequest('POST', 'https://crm.example/c/1?x=1')>"
    with pytest.raises(AttributeError):
        _ = request.no_such_attribute  # type: ignore[attr-defined]


def test_answers_carry_a_usable_request() -> None:
    """httpx's own helpers work on an answer whose request was deferred."""
    response = httpx.Response(404, json={})
    response.request = DeferredRequest("GET", "https://crm.example/c/1", [], None, {})
    assert response.url == httpx.URL("https://crm.example/c/1")
    with pytest.raises(httpx.HTTPStatusError, match="404 Not Found"):
        response.raise_for_status()


# -- through a proxy ---------------------------------------------------------------------


class Counting(httpx.AsyncBaseTransport):
    def __init__(self, gauge: list[int]) -> None:
        self.gauge = gauge
        self.in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.gauge.append(self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return httpx.Response(200, content=json.dumps({}).encode())


async def test_sharded_transports_are_never_overfull() -> None:
    """Through a proxy, 100 in flight spread over pools of two, none with more."""
    gauges: list[list[int]] = [[] for _ in range(50)]
    sharded = ShardedTransport([Counting(gauge) for gauge in gauges], per_transport=2)
    await asyncio.gather(
        *(sharded.handle_async_request(httpx.Request("GET", "http://x/")) for _ in range(100))
    )
    assert max(max(gauge) for gauge in gauges) == 2
    assert all(gauge for gauge in gauges)  # every pool was used
    await sharded.aclose()


# -- found in review: waiting, closing, loops, TLS flow control, the wire ----------------


async def test_a_waiter_cancelled_as_the_connection_frees_up_stays_cancelled() -> None:
    """Cancelled while a release hands on the turn: CancelledError, not a crash, and
    the next waiter is served."""
    pool = transport(max_connections=1)
    gate = asyncio.Event()
    first_waiter: asyncio.Task[httpx.Response] | None = None

    async def answer(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        assert first_waiter is not None
        first_waiter.cancel()  # just as the busy request finishes
        return httpx.Response(200, json={})

    with respx.mock() as router:
        router.route().mock(side_effect=answer)
        url = "http://127.0.0.1:9/c/1"
        busy = asyncio.create_task(get(pool, url))
        await asyncio.sleep(0.01)
        first_waiter = asyncio.create_task(get(pool, url))
        second_waiter = asyncio.create_task(get(pool, url))
        await asyncio.sleep(0.01)
        gate.set()
        assert (await busy).status_code == 200
        with pytest.raises(asyncio.CancelledError):
            await first_waiter
        assert (await asyncio.wait_for(second_waiter, 2.0)).status_code == 200
    await pool.aclose()


async def test_a_waiting_request_is_served_before_a_busy_callers_next_one() -> None:
    """First come, first served: a caller sending back to back cannot overtake a
    request already waiting for the one connection."""
    server = KeepAliveServer(delay=0.02)
    async with serving(server.handle) as (host, port):
        pool = transport(max_connections=1)
        url = f"http://{host}:{port}/c/1"
        order: list[str] = []

        async def back_to_back() -> None:
            for _ in range(10):
                await get(pool, url)
                order.append("busy")

        busy = asyncio.create_task(back_to_back())
        await asyncio.sleep(0.005)
        await get(pool, url, pool=1.0)
        order.append("waiter")
        await busy
        await pool.aclose()
    assert order.index("waiter") <= 1


async def test_closing_with_a_request_in_flight_closes_its_connection_too() -> None:
    server = KeepAliveServer(delay=0.1)
    async with serving(server.handle) as (host, port):
        pool = transport(max_connections=2)
        in_flight = asyncio.create_task(get(pool, f"http://{host}:{port}/c/1"))
        await asyncio.sleep(0.02)
        await pool.aclose()
        assert (await in_flight).status_code == 200
        await asyncio.sleep(0.05)
        assert server.open == 0  # given back after the close: closed, not kept
        with pytest.raises(AdapterUnavailable, match="closed"):
            await get(pool, f"http://{host}:{port}/c/1")


async def test_an_adapter_used_from_two_event_loops_closes_both() -> None:
    """The resolver's shape: resolve_sync on its private loop thread and resolve on
    the caller's loop; closing on the caller's loop closes the private loop's
    connections on that loop (asyncio transports are not thread-safe)."""
    from predial._threads import LoopThread

    server = KeepAliveServer()
    async with serving(server.handle) as (host, port):
        adapter = Acme(base_url=f"http://{host}:{port}", token="t")
        private = LoopThread()
        try:
            await asyncio.to_thread(private.run, adapter.fetch_phone("1"))
            await adapter.fetch_phone("2")
            assert server.connections == 2  # one per loop
            await adapter.aclose()
            await eventually(lambda: server.open == 0)
        finally:
            await asyncio.to_thread(private.stop)


async def test_a_host_header_set_by_an_adapter_is_sent_once() -> None:
    """A virtual host named by configuration: httpx's rules (one Host), not two."""

    class VirtualHost(Acme):
        def auth_headers(self) -> dict[str, str]:
            return {"Host": "crm.internal.example"}

    server = KeepAliveServer()
    async with serving(server.handle) as (host, port):
        adapter = VirtualHost(base_url=f"http://{host}:{port}")
        assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
        await adapter.aclose()
    head = server.requests[0].decode().lower()
    assert head.count("\r\nhost:") == 1
    assert "host: crm.internal.example" in head


async def test_methods_and_empty_bodies_go_out_as_httpx_sends_them() -> None:
    """A lowercase method is sent uppercase; a POST without a body says Content-Length 0."""
    server = KeepAliveServer()
    async with serving(server.handle) as (host, port):
        adapter = Acme(base_url=f"http://{host}:{port}", token="t")
        await adapter.request("get", "/c/1")
        await adapter.request("POST", "/search", params={"q": "x"})
        await adapter.aclose()
    assert server.requests[0].startswith(b"GET /c/1 HTTP/1.1\r\n")
    assert server.requests[1].startswith(b"POST /search?q=x HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 0\r\n" in server.requests[1]


async def test_a_tls_connection_resumes_reading_after_its_buffer_filled(
    certificate_authority: trustme.CA,
) -> None:
    """More than the read buffer's high-water mark arrives over TLS before anyone
    reads: reading pauses, and resumes as the buffer drains (on the TLS layer)."""
    from predial.adapters._network import AsyncioBackend, AsyncioStream

    size = 1_000_000
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"x" * size)
        await writer.drain()
        await reader.read()

    async with serving(big, server_context) as (_, port):
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5.0)
        stream = await stream.start_tls(client_context, "localhost", timeout=5.0)
        assert isinstance(stream, AsyncioStream)
        # What the protocol pauses and resumes is the TLS layer that feeds it, not the
        # raw socket under it (which the TLS layer would go on draining).
        assert stream._protocol.transport is stream._transport
        assert stream._transport.get_extra_info("ssl_object") is not None
        await stream.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await asyncio.sleep(0.3)  # a busy loop: everything piles up unread
        received = 0
        while received < size:
            chunk = await stream.read(65_536, timeout=2.0)
            assert chunk, "the connection closed early"
            received += len(chunk)
        await stream.aclose()
    assert received == size


async def test_a_write_timeout_leaves_no_socket_behind() -> None:
    """A peer that stops reading: the write times out and the socket is closed, not
    left draining for ever."""
    from predial.adapters._network import AsyncioBackend

    stalled = asyncio.Event()

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stalled.wait()

    async with serving(never_reads) as (host, port):
        stream = await AsyncioBackend().connect_tcp(host, port, timeout=5.0)

        async def flood() -> None:
            for _ in range(1_000):
                await stream.write(b"x" * 1_000_000, timeout=0.05)

        with pytest.raises(httpcore.WriteTimeout):
            await flood()
        socket_ = stream.get_extra_info("socket")
        await stream.aclose()
        await asyncio.sleep(0.01)
        assert socket_.fileno() == -1
        stalled.set()


def test_a_value_set_on_a_deferred_request_survives_its_build() -> None:
    request = DeferredRequest("GET", "https://crm.example/c/1", [], None, {})
    request.extensions = {"trace": "abc"}
    assert request.extensions == {"trace": "abc"}
    assert request.url.path == "/c/1"
