"""Pieces of sending shared by `HttpAdapter` and its OAuth client: the deadline of
one exchange, and answers read under a size cap and decoded.

Requests and responses keep httpx's types throughout, so an adapter's hooks, respx
and mock transports see what they always see.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterable
from types import TracebackType

import httpx

from ..errors import AdapterUnavailable

__all__ = ["Deadline", "body_chunks", "decode_body", "read_capped", "unframed"]


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
    must not cut a close short."""
    stream = response.stream
    return stream if isinstance(stream, httpx.AsyncByteStream) else response.aiter_raw()


#: Framing headers that no longer describe a body once it has been read and decoded.
_FRAMING_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


def unframed(headers: httpx.Headers) -> list[tuple[str, str]]:
    """`headers` without the framing of a body that has been read and decoded."""
    items = headers.multi_items()
    return [(name, value) for name, value in items if name.lower() not in _FRAMING_HEADERS]


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
