"""An httpcore network backend on plain asyncio protocols.

httpcore's default backend under asyncio is anyio's: every read and write opens a
cancel scope (`anyio.fail_after`), and every check of an idle connection builds
anyio's socket attributes (a `getpeername` and an address parse) before it polls the
socket. Under a hundred lookups in flight that is about a fifth of the CPU of a
request (`benchmarks/http_adapter.py`). This backend does the same job with what
asyncio already provides: a `Protocol` that buffers what arrives, a future per
wait, and a bare timer per timeout.

It implements httpcore's documented backend interface (`AsyncNetworkBackend`,
`AsyncNetworkStream`), so the connection pools, HTTP/1.1 and TLS handling above it
are httpcore's own. It runs under asyncio only, which is all `HttpAdapter` runs on.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any, Literal

import httpcore

__all__ = ["AsyncioBackend"]

#: Stop reading from the socket while this much is buffered and unread.
_HIGH_WATER = 256 * 1024

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class _Buffering(asyncio.Protocol):
    """Keeps what the peer sends until a reader asks; wakes the one waiting reader."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # EOF or connection lost: no more bytes will come
        self.error: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None
        self.paused = False
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def taken(self, count: int) -> bytes:
        """The first `count` buffered bytes, removed; reading resumes once the buffer
        has drained to half the high-water mark."""
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        if self.paused and len(self.buffer) <= _HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def eof_received(self) -> bool:
        self.closed = True
        self._wake_reader()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake_reader()
        self.resume_writing()

    async def wait(self, event: Literal["data", "drained"], seconds: float | None) -> bool:
        """Wait for data (or the end) to arrive, or for a paused write to drain;
        False if `seconds` passed first."""
        waiter = asyncio.get_running_loop().create_future()
        if event == "data":
            self.reader = waiter
        else:
            self.writer = waiter
        try:
            return await _wait(waiter, seconds)
        finally:
            if event == "data":
                self.reader = None
            else:
                self.writer = None

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter = self.writer
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter = self.reader
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None], expired: list[bool]) -> None:
    if not waiter.done():
        expired.append(True)
        waiter.set_result(None)


async def _wait(waiter: asyncio.Future[None], seconds: float | None) -> bool:
    """Wait for `waiter`; False if `seconds` passed first. A bare timer rather
    than `asyncio.timeout`: this runs on every read that has to wait."""
    if seconds is None:
        await waiter
        return True
    expired: list[bool] = []
    timer = waiter.get_loop().call_later(seconds, _expire, waiter, expired)
    try:
        await waiter
    finally:
        timer.cancel()
    return not expired


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection (plain or TLS) as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Buffering) -> None:
        self._transport = transport
        self._protocol = protocol
        sock = transport.get_extra_info("socket")
        self._fd: int = sock.fileno() if sock is not None else -1

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.closed:
            if not await protocol.wait("data", timeout):
                raise httpcore.ReadTimeout(f"no data within {timeout} s")
        if protocol.buffer:
            return protocol.taken(max_bytes)
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""  # the peer closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.closed or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if protocol.writing_paused:
            # The kernel's buffer is full: wait until asyncio has sent enough.
            if not await protocol.wait("drained", timeout):
                raise httpcore.WriteTimeout(f"could not send within {timeout} s")
            if protocol.closed:
                raise httpcore.WriteError("the connection closed while sending")

    async def aclose(self) -> None:
        # Aborted, as anyio's backend ends by doing: httpcore closes a connection
        # once its answer is read or on an error, when nothing left to send matters,
        # and a graceful close could wait on a peer that stopped reading (or, with
        # TLS, for its close_notify) for good.
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            # The connect timeout bounds the handshake; asyncio's own handshake
            # timeout (60 s) would end it as a ConnectionAbortedError instead.
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout} s") from None
        except (OSError, ssl.SSLError) as error:
            self._transport.abort()
            raise httpcore.ConnectError(str(error) or type(error).__name__) from error
        if tls is None:  # typeshed allows it; asyncio raises instead on a failed handshake
            self._transport.abort()
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        # From now on the TLS layer feeds the protocol: pausing must pause that layer.
        self._protocol.transport = tls
        return AsyncioStream(tls, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks this of an idle kept-alive connection: readable means the
            # server closed it (or sent something unasked), so it is not reused. What
            # asyncio has already read answers at once; the socket is asked for what
            # arrived since, as httpcore's own backends do.
            protocol = self._protocol
            if protocol.buffer or protocol.closed:
                return True
            return _socket_readable(self._fd)
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


def _socket_readable(fd: int) -> bool:
    if fd < 0:
        return True  # no socket left: the next read returns the end
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # pragma: no cover - Windows
    return bool(readable)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections for httpcore made with `loop.create_connection`."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        # Addresses are tried one after another (as socket.create_connection does),
        # not raced: asyncio's happy-eyeballs race leaks the socket it was connecting
        # when it is cancelled (seen here on 3.11).
        connecting = loop.create_connection(
            _Buffering, host, port, local_addr=(local_address, 0) if local_address else None
        )
        transport, protocol = await _connected(connecting, timeout)
        return _stream(transport, protocol, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        connecting = loop.create_unix_connection(_Buffering, path)
        transport, protocol = await _connected(connecting, timeout)
        return _stream(transport, protocol, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connected(
    connecting: Coroutine[Any, Any, tuple[asyncio.BaseTransport, _Buffering]],
    seconds: float | None,
) -> tuple[asyncio.BaseTransport, _Buffering]:
    """The connection, or httpcore's ConnectTimeout / ConnectError."""
    try:
        async with asyncio.timeout(seconds):
            return await connecting
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"no connection within {seconds} s") from None
    except OSError as error:
        raise httpcore.ConnectError(str(error) or type(error).__name__) from error


def _stream(
    transport: asyncio.BaseTransport,
    protocol: _Buffering,
    socket_options: Iterable[SocketOption] | None,
) -> AsyncioStream:
    assert isinstance(transport, asyncio.Transport)
    sock = transport.get_extra_info("socket")
    try:
        for option in socket_options or ():
            sock.setsockopt(*option)
    except OSError as error:
        transport.close()
        raise httpcore.ConnectError(f"socket option refused: {error}") from error
    # asyncio has set TCP_NODELAY on TCP sockets: small requests are not held back.
    return AsyncioStream(transport, protocol)
