"""`PooledTransport`: the connection pool `HttpAdapter` sends through.

Up to `max_connections` HTTP/1.1 connections, made by `AsyncioBackend`. Each answer
is read whole under the adapter's size cap (decoded, its framing headers dropped)
before it is returned, so what comes back is an ordinary, already-read
`httpx.Response`.

The pool is its own rather than httpcore's `AsyncConnectionPool`, which scans every
connection of the pool on every request and response (a pool of a hundred collapses
under load) and takes anyio locks and cancel scopes for each request. Here:

- a request takes the newest idle connection to its origin from a stack (O(1)),
  checking that the server has not closed it meanwhile, as httpcore does;
- with every connection busy it waits in line: a connection given back goes straight
  to the first waiter (its pool timeout counts from when it started waiting), so a
  busy caller cannot overtake it;
- each release also checks the oldest idle connection of each origin, so those left
  from a burst, or to a host no longer used, are closed once their keep-alive ends;
- connections belong to the event loop that made them (asyncio's do), so each loop
  has its own; `aclose()` closes another running loop's connections on that loop.

The connections are httpcore's own (`AsyncHTTPConnection`: HTTP/1.1 with h11, TLS,
keep-alive expiry), which is also where respx intercepts requests in tests.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections import deque

import httpcore
import httpx

from ..errors import AdapterUnavailable
from ._network import AsyncioBackend
from ._transport import FRAMING_HEADERS, HTTPX_ERRORS, as_httpx_errors, decode_body, read_capped

__all__ = ["PooledTransport"]

log = logging.getLogger("predial.adapters.http")

#: An origin as a dict key (`httpcore.Origin` is not hashable): scheme, host, port.
OriginKey = tuple[bytes, bytes, int]
Connection = httpcore.AsyncHTTPConnection
#: What a waiter is handed: a connection to its origin, or None: a place to open one.
Handed = Connection | None

#: `FRAMING_HEADERS` as httpcore gives header names.
_FRAMING = tuple(name.encode() for name in FRAMING_HEADERS)
#: What of httpcore's response extensions an answer keeps (not the network stream of
#: a connection that is back in the pool).
_KEPT_EXTENSIONS = ("http_version", "reason_phrase")


class _Connections:
    """One event loop's connections: idle ones by origin (newest last), the count of
    all that are open, and the requests waiting for one, first come first served."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[OriginKey, deque[Connection]] = {}
        self.open = 0
        self.waiters: deque[tuple[OriginKey, asyncio.Future[Handed]]] = deque()


class PooledTransport(httpx.AsyncBaseTransport):
    """Up to `max_connections` connections; answers read whole under
    `max_response_bytes`. See the module docstring."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        max_response_bytes: int,
        keepalive_expiry: float = 5.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = ssl_context
        self._limit = max_connections
        self._cap = max_response_bytes
        self._keepalive_expiry = keepalive_expiry
        self._backend = AsyncioBackend()
        self._by_loop: dict[asyncio.AbstractEventLoop, _Connections] = {}
        # The last loop seen, weakly: skips a dict look-up per request without
        # keeping a finished loop alive.
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop] | None, _Connections | None] = (
            None,
            None,
        )
        self._closed = False

    def _connections(self) -> _Connections:
        loop = asyncio.get_running_loop()
        last, connections = self._last
        if last is not None and last() is loop and connections is not None:
            return connections
        # A loop that has ended cannot close its connections any more: forget them
        # (their sockets close when collected), so the loop is not kept alive.
        for ended in [other for other in self._by_loop if other.is_closed()]:
            del self._by_loop[ended]
        connections = self._by_loop.get(loop)
        if connections is None:
            connections = self._by_loop[loop] = _Connections(loop)
        self._last = (weakref.ref(loop), connections)
        return connections

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        response = await self.send(core_request)
        response.request = request
        return response

    async def send(self, request: httpcore.Request) -> httpx.Response:
        """Send `request` as it is; the answer as an already-read `httpx.Response`
        (its `request` is the caller's to set)."""
        origin = request.url.origin
        key = (origin.scheme, origin.host, origin.port)
        timeouts = request.extensions.get("timeout")
        pool_timeout = timeouts.get("pool") if isinstance(timeouts, dict) else None
        connections = self._connections()
        while True:
            connection = await self._acquire(connections, origin, key, pool_timeout)
            try:
                with as_httpx_errors():
                    response = await connection.handle_async_request(request)
                try:
                    raw = await read_capped(response.aiter_stream(), self._cap)
                except tuple(HTTPX_ERRORS) as error:
                    reason = f"the CRM's answer was cut ({type(error).__name__})"
                    raise AdapterUnavailable(reason) from None
                finally:
                    await response.aclose()
            except httpcore.ConnectionNotAvailable:
                # httpcore's word for a connection that cannot take a request (it was
                # not sent): take another.
                continue
            finally:
                await self._release(connections, key, connection)
            break
        headers = response.headers
        encoding = next((v for k, v in headers if k.lower() == b"content-encoding"), b"")
        if encoding:
            raw = decode_body(raw, encoding.decode("latin-1"), self._cap)
        kept = [(name, value) for name, value in headers if name.lower() not in _FRAMING]
        extensions = {
            name: value for name, value in response.extensions.items() if name in _KEPT_EXTENSIONS
        }
        return httpx.Response(response.status, headers=kept, content=raw, extensions=extensions)

    def _new(self, origin: httpcore.Origin) -> Connection:
        return httpcore.AsyncHTTPConnection(
            origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._backend,
        )

    async def _acquire(
        self,
        connections: _Connections,
        origin: httpcore.Origin,
        key: OriginKey,
        pool_timeout: float | None,
    ) -> Connection:
        """The newest reusable idle connection to the origin, else a new one (in
        place of an idle one to another origin if need be), else the first one given
        back while this request waits."""
        if self._closed:
            raise AdapterUnavailable("the adapter is closed")
        stack = connections.idle.get(key)
        while stack:
            connection = stack.pop()
            if connection.is_available() and not connection.has_expired():
                return connection
            await self._discard(connections, connection)
        if connections.open < self._limit:
            connections.open += 1
            return self._new(origin)
        for other in connections.idle.values():
            if other:
                await other.popleft().aclose()  # the oldest; its place is taken at once
                return self._new(origin)
        waiter: asyncio.Future[Handed] = connections.loop.create_future()
        connections.waiters.append((key, waiter))
        try:
            async with asyncio.timeout(pool_timeout):
                handed = await waiter
        except BaseException as error:
            # A cancelled or timed-out waiter stays in line and is skipped there. One
            # handed something just as it gave up passes it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                await self._pass_on(connections, key, waiter.result())
            if isinstance(error, TimeoutError):
                raise httpx.PoolTimeout(f"no connection free within {pool_timeout} s") from None
            raise
        return handed if handed is not None else self._new(origin)

    async def _release(
        self, connections: _Connections, key: OriginKey, connection: Connection
    ) -> None:
        if self._closed or not connection.is_available():
            # Closed, failed, or never connected (respx answered the request).
            await self._discard(connections, connection)
            self._hand_place(connections)
            return
        await self._pass_on(connections, key, connection)
        # The oldest idle connection of each origin, if its keep-alive has run out or
        # the server closed it: one check per origin and release (the one just given
        # back is fresh). So connections left from a burst, or to a host the adapter
        # no longer uses (after `use_base_url`), do not stay open.
        for origin_key, stack in list(connections.idle.items()):
            if stack and (origin_key != key or len(stack) > 1) and stack[0].has_expired():
                await self._discard(connections, stack.popleft())

    async def _pass_on(self, connections: _Connections, key: OriginKey, handed: Handed) -> None:
        """Give a connection (or a place to open one) to the first live waiter; a
        connection nobody waits for goes on its origin's idle stack."""
        if handed is None:
            connections.open -= 1
            self._hand_place(connections)
            return
        while connections.waiters:
            wanted, waiter = connections.waiters.popleft()
            if waiter.done():
                continue  # it gave up
            if wanted != key:
                # The first in line wants another origin: this connection makes way.
                await handed.aclose()
            waiter.set_result(handed if wanted == key else None)
            return
        connections.idle.setdefault(key, deque()).append(handed)

    def _hand_place(self, connections: _Connections) -> None:
        """A connection has closed: the first live waiter may open one."""
        while connections.waiters:
            _, waiter = connections.waiters.popleft()
            if not waiter.done():
                connections.open += 1
                waiter.set_result(None)
                return

    async def _discard(self, connections: _Connections, connection: Connection) -> None:
        connections.open -= 1
        await connection.aclose()

    async def aclose(self) -> None:
        """Close every idle connection, on its own loop; one still in use is closed
        when its answer is read. Later requests fail."""
        self._closed = True
        current = asyncio.get_running_loop()
        for loop, connections in list(self._by_loop.items()):
            if loop is current:
                await self._close_idle(connections)
            elif loop.is_running():
                # Another thread's loop (the resolver's for resolve_sync): asyncio
                # transports are closed on the loop that owns them.
                done = asyncio.run_coroutine_threadsafe(self._close_idle(connections), loop)
                try:
                    async with asyncio.timeout(5.0):
                        await asyncio.wrap_future(done)
                except TimeoutError:
                    log.warning("another event loop did not close its idle connections in 5 s")
        self._by_loop.clear()
        self._last = (None, None)

    async def _close_idle(self, connections: _Connections) -> None:
        for stack in connections.idle.values():
            while stack:
                await self._discard(connections, stack.pop())
        while connections.waiters:
            _, waiter = connections.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(AdapterUnavailable("the adapter is closed"))
