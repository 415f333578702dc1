"""The HTTP base's transport, by what it does for an adapter against real servers on
127.0.0.1: connections kept, limited and given back; what goes on the wire; TLS;
proxies; event loops; closing; and errors that are httpx's, then predial's."""

from __future__ import annotations

import asyncio
import base64
import gc
import http.server
import json
import random
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest
import trustme

import predial
from predial import AdapterUnavailable, Campaign, CrmContact, CrmPhone, Lead, Resolver
from predial.adapters._aiohttp import AiohttpTransport
from predial.adapters.http import HttpAdapter, environment_proxy, safe_path

BODY = b'{"phone": "+12024561111"}'
Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


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

    async def handle(self, reader: Reader, writer: Writer) -> None:
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
async def serving(handler: Any, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """`handler` for each connection to a server on a free 127.0.0.1 port."""
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: Reader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client hung up mid-exchange: expected in these tests
        except asyncio.CancelledError:
            return  # ended below as the test ends
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def eventually(condition: Callable[[], bool], within: float = 2.0) -> None:
    """Wait until `condition()` holds (a close done on another loop, say)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polls state another task changes
            await asyncio.sleep(0.01)


class Acme(HttpAdapter):
    name = "acme"

    async def fetch_phone(self, external_id: str) -> CrmContact:
        data = await self.get_json("/c/{}", external_id)
        return CrmContact(phones=[CrmPhone(data["phone"], "main", True)])


# -- connections: kept, limited, given back ----------------------------------------------


async def test_one_connection_serves_requests_one_after_another() -> None:
    server = KeepAliveServer()
    async with serving(server.handle) as port:
        adapter = Acme(base_url=f"http://127.0.0.1:{port}")
        for index in range(20):
            assert (await adapter.fetch_phone(str(index))).phones[0].value == "+12024561111"
        await adapter.aclose()
    assert (server.connections, len(server.requests)) == (1, 20)


async def test_requests_in_flight_never_open_more_than_max_in_flight_connections() -> None:
    """50 lookups at once over at most 10 connections, all answered; the connections
    are then kept and reused."""
    server = KeepAliveServer(delay=0.02)
    async with serving(server.handle) as port:
        adapter = Acme(base_url=f"http://127.0.0.1:{port}", max_in_flight=10)
        answers = await asyncio.gather(*(adapter.fetch_phone(str(i)) for i in range(50)))
        assert len(answers) == 50
        assert server.most_open == 10
        await asyncio.gather(*(adapter.fetch_phone(str(i)) for i in range(10)))
        await adapter.aclose()
    assert server.connections == 10
    assert len(server.requests) == 60


async def test_an_idle_connection_the_server_closed_costs_a_new_one_not_a_failure() -> None:
    server = KeepAliveServer(close_after_answer=True)
    async with serving(server.handle) as port:
        adapter = Acme(base_url=f"http://127.0.0.1:{port}", max_in_flight=2)
        for index in range(5):
            await adapter.fetch_phone(str(index))
            await asyncio.sleep(0.02)  # the FIN arrives while the connection is idle
        await adapter.aclose()
    assert server.connections == 5


async def test_waiting_for_a_connection_counts_against_the_timeout() -> None:
    """With the only connection busy, a lookup waits for it; what it waited is part of
    its `timeout`. It leaves no trace: the next lookup goes straight through."""
    server = KeepAliveServer(delay=0.3)
    async with serving(server.handle) as port:
        adapter = Acme(base_url=f"http://127.0.0.1:{port}", max_in_flight=1, timeout=0.5)
        busy = asyncio.create_task(adapter.fetch_phone("1"))
        await asyncio.sleep(0.01)
        with pytest.raises(AdapterUnavailable, match="did not answer in time"):
            await adapter.fetch_phone("2")  # 0.3 s waiting + 0.3 s answering > 0.5 s
        assert (await busy).phones
        assert (await adapter.fetch_phone("3")).phones
        await adapter.aclose()
    # The second lookup had the connection when it was cut off mid-answer: that one
    # was closed rather than kept half-read, and the third opened another.
    assert (server.connections, len(server.requests)) == (2, 3)


async def test_a_lookup_cancelled_mid_answer_gives_its_place_back() -> None:
    """The caller's cancellation closes the half-read connection (it is not reused)
    and frees its place for the next lookup."""
    server = KeepAliveServer(delay=0.5)
    async with serving(server.handle) as port:
        adapter = Acme(base_url=f"http://127.0.0.1:{port}", max_in_flight=1)
        slow = asyncio.create_task(adapter.fetch_phone("1"))
        await asyncio.sleep(0.05)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        server.delay = 0.0
        async with asyncio.timeout(2.0):
            assert (await adapter.fetch_phone("2")).phones
        await adapter.aclose()
    assert server.connections == 2


@pytest.mark.parametrize("seed", range(3))
async def test_cancellations_timeouts_and_hang_ups_leave_every_place_usable(seed: int) -> None:
    """Random delays, cancellations, timeouts and servers hanging up: afterwards the
    adapter serves exactly `max_in_flight` lookups at once, and holds no connection
    once closed."""
    rng = random.Random(seed)
    calm = False  # set once the storm is over: answers a moment later, stays connected
    open_, answering_, most_answering = 0, 0, 0

    async def flaky(reader: Reader, writer: Writer) -> None:
        nonlocal open_, answering_, most_answering
        open_ += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                answering_ += 1
                most_answering = max(most_answering, answering_)
                try:
                    await asyncio.sleep(0.02 if calm else rng.choice([0, 0, 0.001, 0.005, 0.05]))
                    hang_up = not calm and rng.random() < 0.1
                    if hang_up and rng.random() < 0.5:
                        break  # no answer at all
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(BODY)
                        + (b"Connection: close\r\n" if hang_up else b"")
                        + b"\r\n"
                        + BODY
                    )
                    await writer.drain()
                finally:
                    answering_ -= 1
                if hang_up:
                    break
        finally:
            open_ -= 1

    async with serving(flaky) as port:
        adapter = Acme(base_url=f"http://127.0.0.1:{port}", max_in_flight=3)
        outcomes: dict[str, int] = {}

        async def one(index: int) -> None:
            try:
                # Cut off by the caller, at any point of the exchange (the adapter's own
                # timeout cancels the same way: test_http_timeouts.py).
                cut_off = rng.choice([0.003, 0.03, 5])
                await asyncio.wait_for(adapter.fetch_phone(str(index)), cut_off)
                outcome = "ok"
            except (TimeoutError, AdapterUnavailable) as error:
                outcome = type(error).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        tasks = []
        for index in range(200):
            tasks.append(asyncio.create_task(one(index)))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.choice([0, 0.001, 0.003]))
        await asyncio.gather(*tasks)
        assert outcomes.get("ok", 0) > 0, outcomes
        # The server finishes answering what the adapter gave up on (it sees a
        # hang-up only as it writes); then the same adapter serves ten
        # lookups: three at a time, so no place was lost and none was added.
        calm = True
        await eventually(lambda: answering_ == 0)
        most_answering = 0
        results = await asyncio.gather(*(adapter.fetch_phone(f"after-{i}") for i in range(10)))
        assert len(results) == 10
        assert most_answering == 3
        await adapter.aclose()
        await eventually(lambda: open_ == 0)


# -- what goes on the wire -----------------------------------------------------------------


def on_the_wire(request: bytes) -> tuple[bytes, list[tuple[str, str]], bytes]:
    """The request line, the headers (lower-cased names, sorted) and the body."""
    head, _, body = request.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = sorted(
        (name.strip().lower(), value.strip())
        for name, value in (field.split(":", 1) for field in fields)
    )
    return line.encode("latin-1"), headers, body


def as_httpx_sends(request: httpx.Request) -> tuple[bytes, list[tuple[str, str]], bytes]:
    line = b"%s %s HTTP/1.1" % (request.method.encode(), request.url.raw_path)
    headers = sorted((name.lower(), value) for name, value in request.headers.multi_items())
    return line, headers, request.read()


@pytest.mark.parametrize(
    ("method", "external_id", "params", "body"),
    [
        ("GET", "ïd 1/2", None, None),
        ("GET", "!$&'()*+,;=:@~", {"fields": "phone,mobile", "q": "a b&c/d?e"}, None),
        ("GET", "%2e%2e", [("properties", "phone"), ("properties", "mobilephone")], None),
        ("POST", "x", None, {"inputs": [{"id": "1"}], "name": "Ünïcode"}),
        ("post", "x", {"q": "x"}, None),  # a lowercase method; a POST without a body
    ],
)
async def test_requests_go_out_exactly_as_httpx_built_them(
    method: str, external_id: str, params: Any, body: Any
) -> None:
    """Method, target (every escape as httpx made it), headers and body: what the
    server receives is the `httpx.Request` the adapter built, nothing added or changed."""
    built: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        built.append(request)
        return httpx.Response(200, json={})

    server = KeepAliveServer()
    async with serving(server.handle) as port:
        base_url = f"http://127.0.0.1:{port}/api/v2"
        path = safe_path("/c/{}", external_id)
        adapter = Acme(base_url=base_url, token="t0k3n")
        await adapter.request(method, path, params=params, json_body=body)
        await adapter.aclose()
    twin = Acme(base_url=base_url, token="t0k3n", transport=httpx.MockTransport(record))
    await twin.request(method, path, params=params, json_body=body)
    await twin.aclose()
    assert on_the_wire(server.requests[0]) == as_httpx_sends(built[0])
    assert server.requests[0].startswith(method.upper().encode() + b" /api/v2/c/")


async def test_a_host_header_set_by_an_adapter_is_sent_once() -> None:
    """A virtual host named by configuration: one Host, the adapter's."""

    class VirtualHost(Acme):
        def auth_headers(self) -> dict[str, str]:
            return {"Host": "crm.internal.example"}

    server = KeepAliveServer()
    async with serving(server.handle) as port:
        adapter = VirtualHost(base_url=f"http://127.0.0.1:{port}")
        await adapter.fetch_phone("1")
        await adapter.aclose()
    head = server.requests[0].decode().lower()
    assert head.count("\r\nhost:") == 1
    assert "\r\nhost: crm.internal.example\r\n" in head


# -- errors: httpx's from the transport, predial's from the adapter --------------------


async def hang_up(reader: Reader, writer: Writer) -> None:
    await reader.readuntil(b"\r\n\r\n")


def answering(*pieces: bytes) -> Callable[[Reader, Writer], Any]:
    """A server writing `pieces` of an answer a moment apart (a head before its body
    is read as the head, not with it)."""

    async def handle(reader: Reader, writer: Writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(0.02)
            writer.write(piece)
            await writer.drain()

    return handle


async def never_answer(reader: Reader, writer: Writer) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await reader.read()  # until the client gives up and hangs up


FAILURES: dict[str, tuple[Any, type[httpx.TransportError], str]] = {
    "hang-up": (hang_up, httpx.RemoteProtocolError, "cannot reach the CRM (RemoteProtocolError)"),
    "not-http": (
        answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        httpx.RemoteProtocolError,
        "cannot reach the CRM (RemoteProtocolError)",
    ),
    "bad-length": (
        answering(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
        httpx.RemoteProtocolError,
        "cannot reach the CRM (RemoteProtocolError)",
    ),
    "cut-body": (
        answering(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b'{"phone"'),
        httpx.RemoteProtocolError,
        "the CRM's answer was cut (RemoteProtocolError)",
    ),
    "silent": (never_answer, httpx.ReadTimeout, "the CRM did not answer in time"),
}


@pytest.mark.parametrize("failure", list(FAILURES), ids=list(FAILURES))
async def test_failures_are_httpx_errors_from_the_transport_and_unavailable_from_the_adapter(
    failure: str,
) -> None:
    handler, httpx_error, message = FAILURES[failure]
    async with serving(handler) as port:
        transport = AiohttpTransport(ssl_context=ssl.create_default_context(), max_connections=2)
        request = httpx.Request(
            "GET",
            f"http://127.0.0.1:{port}/c/1",
            extensions={"timeout": {"connect": 1.0, "read": 0.2, "write": 1.0, "pool": 1.0}},
        )
        with pytest.raises(httpx_error):  # noqa: PT012 - the body may fail as it is read
            response = await transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        await transport.aclose()

        adapter = Acme(base_url=f"http://127.0.0.1:{port}", timeout=0.2)
        with pytest.raises(AdapterUnavailable) as raised:
            await adapter.fetch_phone("1")
        assert str(raised.value) == message
        await adapter.aclose()


async def test_a_malformed_chunk_after_the_head_ends_the_lookup_in_time() -> None:
    """aiohttp's C parser (3.14) drops this error on the floor: nothing wakes the
    reader, not even its read timeout. The adapter's deadline still ends the lookup;
    aiohttp's Python parser reports it at once."""
    bad_chunk = answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"zz\r\n")
    async with serving(bad_chunk) as port:
        adapter = Acme(base_url=f"http://127.0.0.1:{port}", timeout=0.3)
        async with asyncio.timeout(2.0):
            with pytest.raises(
                AdapterUnavailable,
                match=r"^(the CRM's answer was cut \(RemoteProtocolError\)|the CRM did not answer in time)$",
            ):
                await adapter.fetch_phone("1")
        await adapter.aclose()


async def test_a_closed_port_cannot_be_reached() -> None:
    async with serving(KeepAliveServer().handle) as port:
        pass  # the server is gone: its port refuses connections
    adapter = Acme(base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(AdapterUnavailable, match=r"^cannot reach the CRM \(ConnectError\)$"):
        await adapter.fetch_phone("1")
    await adapter.aclose()


# aiohttp's advice for bodies over 1 MiB; predial's requests are a few KB of JSON.
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
async def test_a_request_body_the_server_never_reads_is_cut_off_in_time() -> None:
    """A peer that stops reading: the send is bounded by `timeout` like the rest, and
    its connection is closed, not left draining."""
    stop = asyncio.Event()
    hung_up = asyncio.Event()

    async def never_reads(reader: Reader, writer: Writer) -> None:
        await stop.wait()
        while await reader.read(1 << 20):
            pass  # what was sent before the client gave up
        hung_up.set()

    async with serving(never_reads) as port:
        adapter = Acme(base_url=f"http://127.0.0.1:{port}", timeout=0.3)
        with pytest.raises(AdapterUnavailable, match="did not answer in time"):
            await adapter.post_json("/search", body={"q": "x" * 20_000_000})
        stop.set()
        async with asyncio.timeout(5.0):
            await hung_up.wait()  # everything sent was read, then the end
        await adapter.aclose()


async def test_an_answer_longer_than_declared_over_the_cap_is_refused() -> None:
    class Small(Acme):
        max_response_bytes = 1000

    async with serving(
        answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
    ) as port:
        adapter = Small(base_url=f"http://127.0.0.1:{port}")
        with pytest.raises(AdapterUnavailable, match="exceeds 1000 bytes"):
            await adapter.fetch_phone("1")
        await adapter.aclose()


# -- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server_context(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "crm.example.invalid").configure_cert(context)
    return context


@pytest.fixture
def trusted(
    certificate_authority: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """certifi's bundle, as the adapter reads it, holds the test CA."""
    bundle = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setattr(certifi, "where", lambda: str(bundle))


async def test_https_is_checked_against_certifis_authorities(
    tls_server_context: ssl.SSLContext, trusted: None
) -> None:
    server = KeepAliveServer()
    async with serving(server.handle, tls_server_context) as port:
        adapter = Acme(base_url=f"https://127.0.0.1:{port}")
        for index in range(3):
            assert (await adapter.fetch_phone(str(index))).phones
        await adapter.aclose()
    assert server.connections == 1


async def test_an_untrusted_certificate_cannot_be_reached(
    tls_server_context: ssl.SSLContext,
) -> None:
    async with serving(KeepAliveServer().handle, tls_server_context) as port:
        adapter = Acme(base_url=f"https://127.0.0.1:{port}")
        with pytest.raises(AdapterUnavailable, match=r"cannot reach the CRM \(ConnectError\)"):
            await adapter.fetch_phone("1")
        await adapter.aclose()


async def test_a_large_answer_over_tls_arrives_whole(
    tls_server_context: ssl.SSLContext, trusted: None
) -> None:
    """More than the read buffers hold arrives before anyone reads: reading pauses and
    resumes, and every byte is there."""
    padding = "x" * 1_500_000
    answer = json.dumps({"phone": "+12024561111", "padding": padding}).encode()

    async def big(reader: Reader, writer: Writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()

    async with serving(big, tls_server_context) as port:
        adapter = Acme(base_url=f"https://127.0.0.1:{port}")
        data = await adapter.get_json("/c/{}", "1")
        await adapter.aclose()
    assert data["padding"] == padding


# -- proxies -------------------------------------------------------------------------------


async def test_https_through_an_authenticated_proxy_tunnels_with_connect(
    tls_server_context: ssl.SSLContext, trusted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY with credentials: a CONNECT tunnel to the CRM's host, the
    credentials as Proxy-Authorization, TLS checked end to end through it."""
    connects: list[bytes] = []
    crm = KeepAliveServer()

    async def tunnel(reader: Reader, writer: Writer) -> None:
        connects.append(await reader.readuntil(b"\r\n\r\n"))
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", crm_port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: Reader, sink: Writer) -> None:
            try:
                while data := await source.read(65_536):
                    sink.write(data)
                    await sink.drain()
            finally:
                sink.close()

        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )

    async with (
        serving(crm.handle, tls_server_context) as crm_port,
        serving(tunnel) as proxy_port,
    ):
        monkeypatch.setenv("HTTPS_PROXY", f"http://ops:s%40cret@127.0.0.1:{proxy_port}")
        monkeypatch.setenv("NO_PROXY", "")
        adapter = Acme(base_url=f"https://crm.example.invalid:{crm_port}")
        assert (await adapter.fetch_phone("1")).phones
        assert (await adapter.fetch_phone("2")).phones  # the tunnel is kept
        await adapter.aclose()
    assert len(connects) == 1
    line, headers, _ = on_the_wire(connects[0])
    assert line == f"CONNECT crm.example.invalid:{crm_port} HTTP/1.1".encode()
    credentials = base64.b64encode(b"ops:s@cret").decode()
    assert ("proxy-authorization", f"Basic {credentials}") in headers
    assert crm.requests[0].startswith(b"GET /c/1 HTTP/1.1\r\n")


def test_a_socks_proxy_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    monkeypatch.setenv("NO_PROXY", "")
    with pytest.raises(ValueError, match=r"socks5 proxy: .* http\(s\) proxies only"):
        Acme(base_url="https://crm.example.invalid")


def test_a_proxy_without_a_scheme_is_an_http_proxy_and_no_proxy_text_is_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`HTTPS_PROXY=user:secret@host:3128` is an http proxy (as for httpx and curl), not
    a proxy of scheme `user:secret@host:3128` quoted back in an error."""
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("HTTPS_PROXY", "ops:pr0xyS3cret@127.0.0.1:3128")
    assert environment_proxy("https://crm.example.invalid") == (
        "http://ops:pr0xyS3cret@127.0.0.1:3128"
    )
    Acme(base_url="https://crm.example.invalid")  # accepted
    with pytest.raises(ValueError, match="non-URL proxy") as refused:
        AiohttpTransport(
            ssl_context=ssl.create_default_context(),
            max_connections=1,
            proxy="ops:pr0xyS3cret@socks://127.0.0.1",
        )
    assert "pr0xyS3cret" not in str(refused.value)


# -- event loops and closing -----------------------------------------------------------


async def test_resolve_sync_has_connections_of_its_own_loop_and_close_ends_both() -> None:
    """The resolver's shape: resolve_sync on its private loop thread and resolve on
    the caller's loop, one connection each; closing on the caller's loop closes the
    private loop's connection on that loop."""

    class Plugin:
        @predial.hookimpl
        def register_adapters(self, register: Callable[[type], None]) -> None:
            register(Acme)

    server = KeepAliveServer()
    async with serving(server.handle) as port:
        settings = {"base_url": f"http://127.0.0.1:{port}"}
        campaign = Campaign("c", "acme", settings, default_region="US")
        async with Resolver([campaign], plugins=[Plugin()], load_entrypoints=False) as resolver:
            lead = Lead(campaign_id="c", external_id="1")
            synced = await asyncio.to_thread(resolver.resolve_sync, lead)
            awaited = await resolver.resolve(Lead(campaign_id="c", external_id="2"))
            assert (synced.source, awaited.source) == ("crm", "crm")
            assert server.connections == 2  # one per loop
        await eventually(lambda: server.open == 0)


class OneAnswerPerConnection(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: Any) -> None:
        pass  # quiet


@contextmanager
def threaded_server() -> Iterator[str]:
    """An HTTP/1.1 server in threads, for tests that run event loops of their own."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OneAnswerPerConnection)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_one_adapter_serves_one_asyncio_run_after_another() -> None:
    """Each event loop gets connections of its own: a loop that has ended takes its
    own with it, and the next loop's lookups and the close in a third still work."""
    with threaded_server() as url:
        adapter = Acme(base_url=url)
        for index in range(2):
            assert asyncio.run(adapter.fetch_phone(str(index))).phones
        asyncio.run(adapter.aclose())


class KeptAlive(OneAnswerPerConnection):
    """Answers and keeps the connection open; counts the connections open now."""

    open = 0
    lock = threading.Lock()

    def setup(self) -> None:
        super().setup()
        with KeptAlive.lock:
            KeptAlive.open += 1

    def finish(self) -> None:
        super().finish()
        with KeptAlive.lock:
            KeptAlive.open -= 1

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def test_a_loop_that_ends_before_the_close_closes_its_connections() -> None:
    """`asyncio.run` ends with the adapter still open (a dialer's script that then
    goes on with `resolve_sync`): the loop's kept-alive connection is closed as the
    loop ends, not left to the garbage collector (an unclosed-transport warning,
    an error under `-W error`), and the adapter still works and closes later."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeptAlive)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        adapter = Acme(base_url=f"http://127.0.0.1:{server.server_address[1]}")
        assert asyncio.run(adapter.fetch_phone("1")).phones
        gc.collect()  # an unclosed transport would warn here (an error in this suite)
        deadline = time.monotonic() + 5
        while KeptAlive.open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert KeptAlive.open == 0  # the server saw the client hang up
        assert asyncio.run(adapter.fetch_phone("2")).phones
        asyncio.run(adapter.aclose())
    finally:
        server.shutdown()
        server.server_close()


async def test_closing_with_lookups_in_flight_and_waiting_ends_them_all() -> None:
    """One lookup being answered, one waiting for the only connection: closing the
    adapter ends both with `the adapter is closed`, closes the connection, and later
    lookups are refused the same way."""
    requests: list[bytes] = []
    hung_up = asyncio.Event()

    async def answers_nothing(reader: Reader, writer: Writer) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        await reader.read()  # until the client hangs up
        hung_up.set()

    async with serving(answers_nothing) as port:
        adapter = Acme(base_url=f"http://127.0.0.1:{port}", max_in_flight=1)
        in_flight = asyncio.create_task(adapter.fetch_phone("1"))
        waiting = asyncio.create_task(adapter.fetch_phone("2"))
        await eventually(lambda: len(requests) == 1)
        await adapter.aclose()
        for lookup in (in_flight, waiting):
            with pytest.raises(AdapterUnavailable, match="^the adapter is closed$"):
                await lookup
        async with asyncio.timeout(2.0):
            await hung_up.wait()
        with pytest.raises(AdapterUnavailable, match="^the adapter is closed$"):
            await adapter.fetch_phone("3")
    assert len(requests) == 1


async def test_a_closed_transport_opens_nothing() -> None:
    transport = AiohttpTransport(ssl_context=ssl.create_default_context(), max_connections=1)
    await transport.aclose()
    with pytest.raises(httpx.ConnectError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1:9/"))
