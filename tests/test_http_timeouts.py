"""The HTTP base bounded in time: `timeout` bounds each exchange as a whole (every read
of the answer included), for lookups and OAuth token requests alike, against real
servers on 127.0.0.1 that answer a byte at a time or never stop sending `100 Continue`."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import filelock
import httpx
import pytest

import predial
from predial import (
    AdapterUnavailable,
    Campaign,
    CrmContact,
    CrmPhone,
    Lead,
    Resolver,
    RetrySettings,
    Unresolvable,
)
from predial.adapters._aiohttp import AiohttpTransport
from predial.adapters._transport import Deadline
from predial.adapters.http import HttpAdapter

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Handler = Callable[[Reader, Writer], Awaitable[None]]

#: How often a trickling server sends its next byte: well inside each read's timeout.
TRICKLE = 0.3
TIMEOUT = 1.0
#: timeout + a generous margin for a busy machine.
BOUND = 3.0
#: On the old code these requests never end: each is cut off here, so the test fails
#: rather than hangs.
GUARD = 8.0
PHONE = b'{"phone": "+12024561111"}'


class Crm(HttpAdapter):
    name = "crm"

    async def fetch_phone(self, external_id: str) -> CrmContact:
        data = await self.get_json("/c/{}", external_id)
        return CrmContact(phones=[CrmPhone(data["phone"], "main", True)])


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """`handler` for each connection to a server on a free 127.0.0.1 port; handlers
    still trickling when the test is done are ended with it."""
    handlers: set[asyncio.Task[Any]] = set()

    async def tracked(reader: Reader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up on an answer it gave up on: expected here
        except asyncio.CancelledError:
            # Ended below as the test ends. Returning (rather than ending cancelled)
            # keeps asyncio's stream server from logging each such handler as an error.
            return
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: Reader) -> bytes:
    """One request's head and body (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":", 1)[1]))
    return head


async def trickle(writer: Writer, pieces: list[bytes]) -> None:
    """Send `pieces` one at a time, each after `TRICKLE` seconds."""
    for piece in pieces:
        await asyncio.sleep(TRICKLE)
        writer.write(piece)
        await writer.drain()


def ok(body: bytes = PHONE) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


# Each sends a little of its answer well within every read's timeout, for minutes.
async def trickled_head(writer: Writer) -> None:
    await trickle(writer, [bytes([byte]) for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 999])


async def trickled_length_body(writer: Writer) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    await trickle(writer, [b" "] * 1000)


async def trickled_chunks(writer: Writer) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    await trickle(writer, [b"1\r\n \r\n"] * 1000)


async def endless_continue(writer: Writer) -> None:
    await trickle(writer, [b"HTTP/1.1 100 Continue\r\n\r\n"] * 1000)


SLOW_ANSWERS = {
    "head": trickled_head,
    "length-body": trickled_length_body,
    "chunked-body": trickled_chunks,
    "100-continue": endless_continue,
}


def slow_server(answer: Callable[[Writer], Awaitable[None]]) -> Handler:
    async def handle(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        await answer(writer)

    return handle


async def timed(call: Awaitable[Any]) -> tuple[BaseException | None, float]:
    """What `call` raised (None if it returned) and how long it took, cut off at GUARD."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(GUARD):
            await call
    except Exception as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.mark.parametrize("answer", list(SLOW_ANSWERS), ids=list(SLOW_ANSWERS))
@pytest.mark.parametrize("path", ["aiohttp", "httpx-transport", "proxy"])
async def test_a_trickling_answer_ends_within_the_timeout(
    answer: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer that trickles for minutes is AdapterUnavailable within `timeout`."""
    async with serving(slow_server(SLOW_ANSWERS[answer])) as url:
        transport = httpx.AsyncHTTPTransport() if path == "httpx-transport" else None
        if path == "proxy":
            # The trickling server as the proxy.
            monkeypatch.setenv("HTTP_PROXY", url)
            monkeypatch.setenv("NO_PROXY", "")
            url = "http://crm.example.invalid"
        adapter = Crm(base_url=url, timeout=TIMEOUT, transport=transport)
        try:
            error, elapsed = await timed(adapter.get_json("/c/{}", "1"))
        finally:
            await adapter.aclose()
    assert isinstance(error, AdapterUnavailable), repr(error)
    assert str(error) == "the CRM did not answer in time"
    assert elapsed < BOUND


async def test_a_cut_off_answer_does_not_leave_its_connection_in_the_pool() -> None:
    """After a cut-off answer, the one place in the pool is free and opens a new connection."""
    connections = 0

    async def first_trickles(reader: Reader, writer: Writer) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        while True:
            await read_request(reader)
            if first:
                await trickled_length_body(writer)
            writer.write(ok())
            await writer.drain()

    async with serving(first_trickles) as url:
        adapter = Crm(base_url=url, timeout=TIMEOUT, max_in_flight=1)
        try:
            error, _ = await timed(adapter.get_json("/c/{}", "1"))
            assert isinstance(error, AdapterUnavailable), repr(error)
            async with asyncio.timeout(GUARD):
                assert await adapter.get_json("/c/{}", "2") == {"phone": "+12024561111"}
        finally:
            await adapter.aclose()
    assert connections == 2  # the half-read connection was closed, not reused


async def test_requests_cut_off_while_waiting_for_a_connection_leave_its_places_free() -> None:
    """Requests cut off while waiting for one of `max_in_flight` connections do not use
    up the places for good."""

    async def only_fast_answers(reader: Reader, writer: Writer) -> None:
        while True:
            request = await read_request(reader)
            if not request.startswith(b"GET /c/fast "):
                await asyncio.sleep(GUARD)  # never answered while the test runs
            writer.write(ok())
            await writer.drain()

    async with serving(only_fast_answers) as url:
        # Two connections, shared by a hurried adapter and a patient one.
        transport = AiohttpTransport(ssl_context=ssl.create_default_context(), max_connections=2)
        hurried = Crm(base_url=url, timeout=0.1, transport=transport)
        patient = Crm(base_url=url, timeout=GUARD, transport=transport)
        try:
            for _ in range(10):
                # Two requests hold the two places; two wait for one; all four are
                # cut off together, as the first two's places pass to the others.
                await asyncio.gather(
                    *(hurried.get_json("/c/{}", i) for i in range(4)), return_exceptions=True
                )
            async with asyncio.timeout(GUARD):
                assert await patient.get_json("/c/fast") == {"phone": "+12024561111"}
        finally:
            await hurried.aclose()
            await patient.aclose()


async def test_a_callers_own_cancellation_stays_a_cancellation() -> None:
    """Cancelling a lookup mid-answer raises CancelledError, not AdapterUnavailable."""
    async with serving(slow_server(trickled_length_body)) as url:
        adapter = Crm(base_url=url, timeout=30.0)
        try:
            lookup = asyncio.create_task(adapter.get_json("/c/{}", "1"))
            await asyncio.sleep(2 * TRICKLE)  # the answer has started to trickle
            lookup.cancel()
            with pytest.raises(asyncio.CancelledError):
                await lookup
        finally:
            await adapter.aclose()


async def test_the_retry_after_a_401_is_bounded_too() -> None:
    """A 401, a refresh, then a retry that trickles: AdapterUnavailable within `timeout`."""
    issued = 0

    async def crm(reader: Reader, writer: Writer) -> None:
        nonlocal issued
        while True:
            request = await read_request(reader)
            if request.startswith(b"POST /oauth/token"):
                issued += 1
                body = b'{"access_token": "a%d", "expires_in": 3600}' % issued
                writer.write(ok(body))
            elif b"Bearer a1\r\n" in request:
                writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            else:
                await trickled_length_body(writer)
            await writer.drain()

    async with serving(crm) as url:
        adapter = Crm(
            base_url=url, timeout=TIMEOUT, client_id="cid", client_secret="cs", refresh_token="r0"
        )
        try:
            error, elapsed = await timed(adapter.get_json("/c/{}", "1"))
        finally:
            await adapter.aclose()
    assert isinstance(error, AdapterUnavailable), repr(error)
    assert str(error) == "the CRM did not answer in time"
    assert issued == 2  # the retry went out with the refreshed token
    assert elapsed < 2 * BOUND  # two bounded exchanges and a quick refresh


async def test_a_trickling_token_endpoint_fails_the_refresh_and_frees_the_token_file(
    tmp_path: Path,
) -> None:
    """A trickling token answer fails the lookup in time and frees the file's lock."""
    fixed = False

    async def crm(reader: Reader, writer: Writer) -> None:
        while True:
            request = await read_request(reader)
            if request.startswith(b"POST /oauth/token"):
                if not fixed:
                    await trickled_length_body(writer)
                writer.write(ok(b'{"access_token": "a1", "expires_in": 3600}'))
            else:
                writer.write(ok())
            await writer.drain()

    store = tmp_path / "refresh"
    async with serving(crm) as url:
        adapter = Crm(
            base_url=url,
            timeout=TIMEOUT,
            client_id="cid",
            client_secret="cs",
            refresh_token="r0",
            refresh_token_file=str(store),
        )
        try:
            error, elapsed = await timed(adapter.fetch_phone("1"))
            assert isinstance(error, AdapterUnavailable), repr(error)
            assert str(error) == "the token endpoint did not answer in time"
            assert elapsed < BOUND
            # Another process's refresh could take the file's lock now.
            other = filelock.FileLock(f"{store}.lock", timeout=0)
            other.acquire()
            other.release()
            fixed = True  # the next lookup refreshes again, and succeeds
            async with asyncio.timeout(GUARD):
                contact = await adapter.fetch_phone("1")
            assert contact.phones[0].value == "+12024561111"
        finally:
            await adapter.aclose()


async def test_a_trickling_crm_through_the_resolver_is_a_retryable_refusal() -> None:
    """Through the resolver, the adapter's bound ends the lookup well before the deadline."""

    class Plugin:
        @predial.hookimpl
        def register_adapters(self, register: Callable[[type], None]) -> None:
            register(Crm)

    async with serving(slow_server(trickled_length_body)) as url:
        campaign = Campaign("c", "crm", {"base_url": url, "timeout": TIMEOUT}, default_region="US")
        resolver = Resolver(
            [campaign],
            plugins=[Plugin()],
            load_entrypoints=False,
            deadline=30.0,
            retry=RetrySettings(attempts=1),
        )
        async with resolver:
            error, elapsed = await timed(resolver.resolve(Lead(campaign_id="c", external_id="1")))
    assert isinstance(error, Unresolvable), repr(error)
    assert error.retryable
    assert elapsed < BOUND  # the adapter's bound, not the resolver's 30 s deadline
    assert resolver.stats().adapter_errors == {"unavailable": 1}


# -- the deadline itself --------------------------------------------------------------


async def test_a_deadline_that_fires_leaves_the_task_uncancelled() -> None:
    """After the deadline's AdapterUnavailable, the task is not left marked cancelled."""
    with pytest.raises(AdapterUnavailable, match="late"), Deadline(0.01, "late"):
        await asyncio.sleep(GUARD)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # else the task's later timeouts and groups misread it


@pytest.mark.parametrize("first", ["deadline", "caller"])
async def test_a_caller_cancelling_as_the_deadline_fires_gets_a_cancellation(first: str) -> None:
    """The caller's cancel and the deadline's, in either order: CancelledError wins."""
    deadline = 0.05 if first == "deadline" else 0.2

    async def exchange() -> None:
        with Deadline(deadline, "late"):
            try:
                await asyncio.sleep(GUARD)
            finally:
                await asyncio.sleep(0.5)  # clean-up, under way when the other cancel comes

    task = asyncio.create_task(exchange())
    await asyncio.sleep(0.1)  # the first cancel has come (the deadline's, or next line's)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(GUARD):
            await task
