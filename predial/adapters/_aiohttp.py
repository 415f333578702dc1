"""`AiohttpTransport`: the transport `HttpAdapter` sends through, aiohttp under httpx.

Requests and responses keep httpx's types (adapters, their hooks and mock transports
see what they always see); aiohttp holds the connections: up to `max_connections`
per event loop, each serving one request at a time, kept alive for reuse.

Not httpx-aiohttp's `AiohttpTransport`, which this follows: that one shares one
session across event loops, lets aiohttp's errors for a malformed answer escape,
reads a server that hangs up as a connect timeout, and has yarl re-quote the URL
httpx built (`%21` goes out as `!`). Here:

- each event loop has its own session (a session belongs to the loop that made it:
  `resolve_sync` runs on a loop of its own), and `aclose()` closes another running
  loop's session on that loop;
- the URL, headers and body go out as httpx built them, nothing added;
- aiohttp's errors come out as httpx's (`_ERRORS`), and nothing else does;
- answers are not decompressed (the adapter decodes them under its size cap), no
  cookies are kept, no redirect is followed, the environment is not read (the
  adapter names the proxy).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
import yarl
from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["AiohttpTransport"]

log = logging.getLogger(__name__)

#: aiohttp's errors as httpx's: the first match wins, so subclasses come first. A
#: server hanging up or answering with something that is not HTTP is a protocol
#: error, as httpcore reports it.
_ERRORS: tuple[tuple[type[aiohttp.ClientError], type[httpx.TransportError]], ...] = (
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
)

#: Headers aiohttp would add of its own; a request carries what httpx put in it.
_NOT_ADDED = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientError as error:
        mapped = next(httpx_error for cls, httpx_error in _ERRORS if isinstance(error, cls))
        raise mapped(str(error) or type(error).__name__) from error
    except HttpProcessingError as error:
        # A body aiohttp's Python parser could not frame (without its C extension).
        raise httpx.RemoteProtocolError(str(error) or type(error).__name__) from error


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives, undecoded; closing it before its end closes
    the connection (aiohttp keeps only connections whose answer was read whole)."""

    def __init__(self, answer: aiohttp.ClientResponse) -> None:
        self._answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self._answer.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._answer.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests over aiohttp: up to `max_connections` per event loop, TLS
    checked with `ssl_context`, through `proxy` (an http(s) URL) if set."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        proxy: str | None = None,
        keepalive_expiry: float = 5.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = ssl_context
        self._limit = max_connections
        # As httpx's: a server closing idle connections after 5 s (Node's default)
        # would otherwise race requests reusing them.
        self._keepalive_expiry = keepalive_expiry
        self.use_proxy(proxy)
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._keepers: set[asyncio.Task[None]] = set()
        # Loops in several threads (resolve_sync's, the caller's) open and close them.
        self._lock = threading.Lock()
        self._closed = False

    def use_proxy(self, url: str | None) -> None:
        """Send later requests through the http(s) proxy at `url`, or straight."""
        if url is not None and not url.startswith(("http://", "https://")):
            scheme, found, _ = url.partition("://")
            if not (found and scheme.isalnum() and len(scheme) <= 16):
                scheme = "non-URL"  # never the text itself: it may hold a password
            raise ValueError(
                f"the environment names a {scheme} proxy: predial reaches CRMs through "
                "http(s) proxies only (set HTTPS_PROXY, or NO_PROXY for the CRM's host)"
            )
        self._proxy = yarl.URL(url) if url is not None else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop) or await self._open(loop)
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        try:
            with _as_httpx_errors():
                answer = await session.request(
                    request.method,
                    yarl.URL(str(request.url), encoded=True),
                    headers=[
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                    ],
                    data=body or None,
                    proxy=self._proxy,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        connect=timeouts.get("pool"),
                        sock_connect=timeouts.get("connect"),
                        sock_read=timeouts.get("read"),
                    ),
                )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed and task is not None and not task.cancelling():
                # Nobody cancelled this request: closing the session ended its wait
                # for a connection.
                raise httpx.ConnectError("the transport is closed") from None
            raise
        # No extensions: httpx's defaults (HTTP/1.1, the status's reason) serve.
        return httpx.Response(answer.status, headers=answer.raw_headers, stream=_Body(answer))

    async def _open(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        """This loop's session, made on its first request; sessions of loops that
        have ended are let go (nothing of theirs can be closed any more)."""
        with self._lock:
            if self._closed:
                raise httpx.ConnectError("the transport is closed")
            ended = [other for other in self._sessions if other.is_closed()]
            left = [self._sessions.pop(other) for other in ended]
            session = self._sessions[loop] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._limit,
                    ssl=self._ssl_context,
                    keepalive_timeout=self._keepalive_expiry,
                ),
                skip_auto_headers=_NOT_ADDED,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        for old in left:
            await old.close()  # marks it closed: its loop has ended, so it touches nothing
        # Closed with its loop: asyncio.run (and asyncio.Runner, resolve_sync's loop,
        # pytest-asyncio) cancels the tasks left when its main task ends, before the
        # loop closes. Without it a loop ended before `aclose()` would leave its
        # sockets to the garbage collector (ResourceWarning: unclosed transport).
        keeper = loop.create_task(_close_with_loop(session))
        self._keepers.add(keeper)
        keeper.add_done_callback(self._keepers.discard)
        return session

    async def aclose(self) -> None:
        """Close every loop's connections, each on its own loop; requests in flight
        end with httpx's errors, later ones with `ConnectError`."""
        with self._lock:
            self._closed = True
            sessions, self._sessions = self._sessions, {}
            keepers, self._keepers = self._keepers, set()
        current = asyncio.get_running_loop()
        for keeper in keepers:
            if keeper.get_loop() is current:
                keeper.cancel()
            elif not keeper.get_loop().is_closed():
                keeper.get_loop().call_soon_threadsafe(keeper.cancel)
        for loop, session in sessions.items():
            if loop is current or loop.is_closed():
                await session.close()
            elif loop.is_running():
                # Another thread's loop (the resolver's for resolve_sync): asyncio
                # transports are closed on the loop that owns them.
                done = asyncio.run_coroutine_threadsafe(session.close(), loop)
                try:
                    async with asyncio.timeout(5.0):
                        await asyncio.wrap_future(done)
                except TimeoutError:
                    log.warning("another event loop did not close its connections in 5 s")
            else:
                log.warning("an event loop that is not running kept its connections open")


async def _close_with_loop(session: aiohttp.ClientSession) -> None:
    """Wait until cancelled (the loop ending, or `aclose()`), then close `session`."""
    try:
        await asyncio.Event().wait()
    finally:
        if not session.closed:
            await session.close()
