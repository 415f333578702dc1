"""Pieces of `HttpAdapter`'s sending: the deadline of one exchange, answers read
under a size cap, httpcore's errors as httpx's, the deferred request, and sharded
transports for proxies (with the places their pools lose to cancelled requests).

Requests and responses keep httpx's types throughout, so an adapter's hooks, respx
and mock transports see what they always see.
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections.abc import AsyncIterable, Iterator
from contextlib import contextmanager
from types import TracebackType

import httpcore
import httpx

from ..errors import AdapterUnavailable

__all__ = [
    "FRAMING_HEADERS",
    "HTTPX_ERRORS",
    "Deadline",
    "DeferredRequest",
    "ShardedTransport",
    "as_httpx_errors",
    "body_chunks",
    "decode_body",
    "read_capped",
    "reclaim_orphans",
    "unframed",
]


class Deadline:
    """A bound on the whole of one exchange: `with Deadline(seconds, message):`
    around its awaits (connect, send, every read of the answer).

    Transports time each read on its own, so a server that sends a byte at a time,
    or informational answers without end, would hold a request for ever. At
    `seconds` the task is cancelled, and the block ends with
    `AdapterUnavailable(message)` instead of `CancelledError`. A cancellation from
    anywhere else (the caller's own deadline) stays a `CancelledError`, also when it
    comes as the timer fires: as `asyncio.timeout` tells them apart, by the task's
    count of cancel requests.

    A plain (not async) context manager with a bare timer: `asyncio.timeout` does
    the same with two coroutines more per request. Each use needs a new instance.
    """

    __slots__ = ("_cancelling", "_expired", "_message", "_seconds", "_task", "_timer")

    def __init__(self, seconds: float, message: str) -> None:
        self._seconds = seconds
        self._message = message
        self._expired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline is used inside an asyncio task")
        loop = task.get_loop()
        self._task = task
        self._cancelling = task.cancelling()
        self._timer = loop.call_at(loop.time() + self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        # The timer's cancel request is withdrawn however the block ended (code in it
        # may have caught the CancelledError: the task must not stay marked as
        # cancelled); a request left over is someone else's, and theirs to see.
        if (
            self._expired
            and self._task.uncancel() <= self._cancelling
            and kind is not None
            and issubclass(kind, asyncio.CancelledError)
        ):
            raise AdapterUnavailable(self._message) from None


#: httpcore's exceptions as httpx raises them (the mapping httpx's own transport uses).
HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
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


@contextmanager
def as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except tuple(HTTPX_ERRORS) as error:
        # The most specific match: the dict lists subclasses before their bases.
        mapped = next(cls for base, cls in HTTPX_ERRORS.items() if isinstance(error, base))
        raise mapped(str(error)) from error


async def read_capped(chunks: AsyncIterable[bytes], cap: int) -> bytes:
    """The whole body, or `AdapterUnavailable` as soon as it passes `cap` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise AdapterUnavailable(f"the CRM's answer exceeds {cap} bytes")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def body_chunks(response: httpx.Response) -> AsyncIterable[bytes]:
    """`response`'s body as it arrives, undecoded, with httpx's errors; unlike
    `aiter_raw`, not closed at its end: the caller closes it after its deadline, which
    must not cut a close short (httpx's pool would keep the request for good)."""
    stream = response.stream
    return stream if isinstance(stream, httpx.AsyncByteStream) else response.aiter_raw()


#: Framing headers that no longer describe a body once it has been read and decoded.
FRAMING_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


def unframed(headers: httpx.Headers) -> list[tuple[str, str]]:
    """`headers` without the framing of a body that has been read and decoded."""
    items = headers.multi_items()
    return [(name, value) for name, value in items if name.lower() not in FRAMING_HEADERS]


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

    def _build(self) -> bool:
        """Run httpx's constructor now if it has not run; False if it had."""
        deferred = self.__dict__.pop("_deferred", None)
        if deferred is None:
            return False
        method, url, headers, content, extensions = deferred
        try:
            httpx.Request.__init__(
                self, method, url, headers=headers, content=content, extensions=extensions
            )
        except BaseException:
            self.__dict__["_deferred"] = deferred  # the next read raises the same
            raise
        return True

    def __getattr__(self, name: str) -> object:
        if not self._build():
            raise AttributeError(name)
        return getattr(self, name)

    def __setattr__(self, name: str, value: object) -> None:
        self._build()  # a value set now must not be overwritten by the build
        super().__setattr__(name, value)


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


#: What `reclaim_orphans` uses of an httpcore pool: an httpcore of another shape (one
#: that fixed the bug, or changed its insides) is left to itself.
_POOL_PARTS = (
    "_optional_thread_lock",
    "_requests",
    "_connections",
    "_assign_requests_to_connections",
    "_close_connections",
)


async def reclaim_orphans(transport: httpx.AsyncBaseTransport) -> None:
    """Give back the places that httpx's connection pools lose to cancelled requests.

    httpcore 1.0 (encode/httpcore#1093): a request cancelled while it waits for a
    connection, just as the pool hands it a new one, leaves that connection in the
    pool unconnected, owned by no request, neither idle nor closed. It holds its
    place for good; once every place is held, the pool only answers `PoolTimeout`.
    `HttpAdapter` cancels requests on purpose at their deadline (and callers cancel
    at theirs), so after an exchange through httpx's transports fails, connections
    that no request owns and that are neither idle nor closed are dropped, and their
    places handed to the requests waiting. Other transports are left alone.
    """
    if isinstance(transport, ShardedTransport):
        for shard in transport.transports:
            await reclaim_orphans(shard)
        return
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not all(
        hasattr(pool, part) for part in _POOL_PARTS
    ):
        return
    with pool._optional_thread_lock:
        owners = [request.connection for request in pool._requests]
        orphans = [
            connection
            for connection in pool._connections
            if not connection.is_idle()
            and not connection.is_closed()
            and not any(connection is owner for owner in owners)
        ]
        if not orphans:
            return
        for connection in orphans:
            pool._connections.remove(connection)
        closing = pool._assign_requests_to_connections()
    await pool._close_connections([*orphans, *closing])
