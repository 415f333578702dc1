"""The transport `HttpAdapter` sends through, and reading answers under a size cap.

`PooledTransport` is an httpx transport over one httpcore connection pool whose
connections are made by `AsyncioBackend` (see `_network.py` for why). It reads each
answer whole before returning it, counting bytes against the adapter's cap and
decoding any compression under the same cap, so what it returns is an ordinary,
already-read `httpx.Response`. Requests and responses keep httpx's types, so an
adapter's hooks, respx and mock transports see what they always see.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import weakref
import zlib
from collections import deque
from collections.abc import AsyncIterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx

from ..errors import AdapterUnavailable
from ._network import AsyncioBackend

__all__ = [
    "DeferredRequest",
    "PooledTransport",
    "ShardedTransport",
    "decode_body",
    "read_capped",
]

#: httpcore's exceptions as httpx raises them (the mapping httpx's own transport uses).
_HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.ProtocolError: httpx.ProtocolError,
}

#: Framing headers that no longer describe a body once it has been read and decoded.
_FRAMING = (b"content-encoding", b"content-length", b"transfer-encoding")


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except tuple(_HTTPX_ERRORS) as error:
        # The most specific match: the dict lists subclasses before their bases.
        mapped = next(cls for base, cls in _HTTPX_ERRORS.items() if isinstance(error, base))
        raise mapped(str(error)) from error


async def read_capped(chunks: AsyncIterable[bytes], cap: int) -> bytes:
    """The whole body, or `AdapterUnavailable` as soon as it passes `cap` bytes."""
    body = b""
    async for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise AdapterUnavailable(f"the CRM's answer exceeds {cap} bytes")
    return body


def decode_body(raw: bytes, encoding: str, cap: int) -> bytes:
    """`raw` decompressed under `cap`. Compression is not asked for (answers are
    small), but a server may use it anyway: gzip and deflate are decoded a bounded
    amount at a time, so a small bomb cannot balloon; other encodings are refused."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise AdapterUnavailable(f"the CRM's answer uses an unsupported encoding {encoding!r}")
    # wbits 47 reads both the gzip and the zlib container; raw deflate (which some
    # servers send for "deflate") needs -15. A zlib header is CM 8 with a check
    # making the first two bytes a multiple of 31.
    zlib_header = len(raw) >= 2 and raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0
    decoder = zlib.decompressobj(47 if encoding != "deflate" or zlib_header else -15)
    try:
        body = decoder.decompress(raw, cap + 1)
    except zlib.error:
        raise AdapterUnavailable(f"the CRM's answer is not valid {encoding}") from None
    if len(body) > cap:
        raise AdapterUnavailable(f"the CRM's answer exceeds {cap} bytes")
    if not decoder.eof:
        raise AdapterUnavailable(f"the CRM's answer was cut ({encoding} stream incomplete)")
    return body


#: An origin as a dict key (`httpcore.Origin` is not hashable): scheme, host, port.
_OriginKey = tuple[bytes, bytes, int]


class _Connections:
    """The connections of one event loop (asyncio connections belong to the loop
    that made them): idle ones by origin, newest on top, and the count of all."""

    def __init__(self) -> None:
        self.idle: dict[_OriginKey, list[httpcore.AsyncHTTPConnection]] = {}
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


def _wake_one(connections: _Connections) -> None:
    """Tell the longest-waiting request that a connection may be had."""
    while connections.waiters:
        waiter = connections.waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


class PooledTransport(httpx.AsyncBaseTransport):
    """Up to `max_connections` HTTP/1.1 connections, made by `AsyncioBackend`; each
    answer is read whole under `max_response_bytes` (decoded, its framing headers
    dropped) before it is returned.

    The pool is its own rather than httpcore's `AsyncConnectionPool`, which scans
    every connection of the pool on every request and response (a pool of a hundred
    collapses under load) and takes anyio locks and cancel scopes for each request:
    here a request takes the newest idle connection to its origin from a stack, and
    gives it back when its answer is read. The connections are httpcore's own
    (`AsyncHTTPConnection`: HTTP/1.1 with h11, TLS, keep-alive expiry), and an idle
    one that the server closed meanwhile is dropped, as httpcore's pool drops it.
    """

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
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connections] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop | None, _Connections] = (None, _Connections())

    def _connections(self) -> _Connections:
        loop = asyncio.get_running_loop()
        last_loop, connections = self._last
        if loop is not last_loop:  # skips a WeakKeyDictionary look-up per request
            connections = self._by_loop.get(loop) or self._by_loop.setdefault(loop, _Connections())
            self._last = (loop, connections)
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
        timeouts = request.extensions.get("timeout", {})
        pool_timeout = timeouts.get("pool") if isinstance(timeouts, dict) else None
        connections = self._connections()
        while True:
            connection = await self._acquire(connections, origin, pool_timeout)
            try:
                with _as_httpx_errors():
                    response = await connection.handle_async_request(request)
                try:
                    raw = await read_capped(response.aiter_stream(), self._cap)
                except tuple(_HTTPX_ERRORS) as error:
                    reason = f"the CRM's answer was cut ({type(error).__name__})"
                    raise AdapterUnavailable(reason) from None
                finally:
                    await response.aclose()
            except httpcore.ConnectionNotAvailable:
                # An idle connection that closed between the check and the send:
                # the request was not sent; take another.
                continue
            finally:
                await self._release(connections, origin, connection)
            break
        headers = response.headers
        encoding = next((v for k, v in headers if k.lower() == b"content-encoding"), b"")
        if encoding:
            raw = decode_body(raw, encoding.decode("latin-1"), self._cap)
        kept = [(key, value) for key, value in headers if key.lower() not in _FRAMING]
        return httpx.Response(
            response.status,
            headers=kept,
            content=raw,
            extensions=response.extensions,
        )

    async def _acquire(
        self, connections: _Connections, origin: httpcore.Origin, pool_timeout: float | None
    ) -> httpcore.AsyncHTTPConnection:
        """The newest reusable idle connection to `origin`, else a new one (closing an
        idle one to another origin to make room), else the next one released."""
        while True:
            stack = connections.idle.get((origin.scheme, origin.host, origin.port))
            while stack:
                connection = stack.pop()
                if connection.is_available() and not connection.has_expired():
                    return connection
                await self._discard(connections, connection)
            if connections.open < self._limit:
                connections.open += 1
                return httpcore.AsyncHTTPConnection(
                    origin,
                    ssl_context=self._ssl_context,
                    keepalive_expiry=self._keepalive_expiry,
                    network_backend=self._backend,
                )
            other = next((stack for stack in connections.idle.values() if stack), None)
            if other is not None:
                await self._discard(connections, other.pop())
                continue
            waiter = asyncio.get_running_loop().create_future()
            connections.waiters.append(waiter)
            try:
                async with asyncio.timeout(pool_timeout):
                    await waiter
            except BaseException as error:
                if waiter.done() and not waiter.cancelled():
                    _wake_one(connections)  # woken but leaving: hand the turn on
                else:
                    connections.waiters.remove(waiter)
                if isinstance(error, TimeoutError):
                    raise httpx.PoolTimeout(f"no connection free within {pool_timeout} s") from None
                raise

    async def _release(
        self,
        connections: _Connections,
        origin: httpcore.Origin,
        connection: httpcore.AsyncHTTPConnection,
    ) -> None:
        if connection.is_available():
            key = (origin.scheme, origin.host, origin.port)
            connections.idle.setdefault(key, []).append(connection)
        else:  # closed, failed, or never connected (respx answered it)
            await self._discard(connections, connection)
        _wake_one(connections)

    async def _discard(
        self, connections: _Connections, connection: httpcore.AsyncHTTPConnection
    ) -> None:
        connections.open -= 1
        await connection.aclose()

    async def aclose(self) -> None:
        for connections in list(self._by_loop.values()):
            for stack in connections.idle.values():
                while stack:
                    await self._discard(connections, stack.pop())


class DeferredRequest(httpx.Request):
    """An `httpx.Request` whose construction waits until something reads it.

    `PooledTransport.send` takes the request as httpcore's parts, which cost a tenth
    of building an `httpx.Request` (its URL parse alone is ~18 µs); most answers
    never look at their request. Anything read from this one (`url`, `headers`,
    `method`, `repr`...) first builds it with httpx's own constructor, from the
    same method, URL, headers and body that were sent.
    """

    def __init__(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        content: bytes | None,
        extensions: dict[str, object],
    ) -> None:
        self.__dict__["_deferred"] = (method, url, headers, content, extensions)

    def __getattr__(self, name: str) -> object:
        deferred = self.__dict__.pop("_deferred", None)
        if deferred is None:
            raise AttributeError(name)
        method, url, headers, content, extensions = deferred
        httpx.Request.__init__(
            self, method, url, headers=headers, content=content, extensions=extensions
        )
        return getattr(self, name)


class ShardedTransport(httpx.AsyncBaseTransport):
    """Requests spread over several transports, each taking `per_transport` at a
    time: the one with a free place from a rotating start (so all stay warm), else
    the least busy. For httpx's own transports (used through a proxy), whose pools
    collapse when one holds many connections."""

    def __init__(self, transports: list[httpx.AsyncBaseTransport], per_transport: int) -> None:
        if not transports:
            raise ValueError("ShardedTransport needs at least one transport")
        self.transports = transports
        self._per_transport = per_transport
        self._in_flight = [0] * len(transports)
        self._next = itertools.cycle(range(len(transports)))

    def _pick(self) -> int:
        start = next(self._next)
        in_flight = self._in_flight
        count = len(in_flight)
        for offset in range(count):
            index = (start + offset) % count
            if in_flight[index] < self._per_transport:
                return index
        return min(range(count), key=in_flight.__getitem__)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = self._pick()
        self._in_flight[index] += 1
        try:
            return await self.transports[index].handle_async_request(request)
        finally:
            self._in_flight[index] -= 1

    async def aclose(self) -> None:
        for transport in self.transports:
            await transport.aclose()
