"""One structured access-log line and the HTTP metrics of every request.

A pure ASGI middleware (no per-request task or body buffering, unlike Starlette's
BaseHTTPMiddleware). The line carries the decision ids the handler put in
`scope["state"]`, so a dialer's record joins the service's log; numbers are masked
and no header is ever logged, so no key is either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import select
import time
from collections import Counter as Tally
from datetime import UTC, datetime
from time import perf_counter
from typing import IO, TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._phone import mask_phone
from .._redaction import redact
from ..metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from ._app import PredialService

__all__ = ["AccessLog", "LineWriter", "ServiceMetrics", "logfmt"]

access_log = logging.getLogger("predial.access")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ServiceMetrics:
    """`predial_http_requests_total` and `predial_http_request_duration_seconds`
    (OpenTelemetry's `http.server.request.duration`), by route, method and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "predial_http_requests",
            "HTTP requests to predial serve, by route, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "predial_http_request_duration_seconds",
            "Duration of HTTP requests to predial serve, by route, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, elapsed: float) -> None:
        key = (route, method if method in _METHODS else "other", str(status))
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(*key),
                self.duration.labels(*key),
            )
        children[0].inc()
        children[1].observe(elapsed)


# A value that needs no quoting: printable ASCII but space, '"', '=' and '\\'.
_BARE = re.compile(r"[!#-<>-\[\]-~]+")


def logfmt(fields: dict[str, Any]) -> str:
    """`key=value` pairs; a value with spaces, quotes or controls is JSON-quoted."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        kind = type(value)
        if kind is int or (kind is float and math.isfinite(value)):
            parts.append(f"{key}={value!r}")
            continue
        text = value if kind is str else json.dumps(value, separators=(",", ":"))
        if not _BARE.fullmatch(text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


# An id shown as it is: printable ASCII, fewer than 5 digits in all (no number hides
# in it, however punctuated) and shorter than the shortest API key (16).
_PLAIN_ID = re.compile(r"(?!(?:\D*\d){5})[!-~]{1,15}")


def _shown_id(value: str | None) -> str | None:
    """A caller's id in an access line: escaped and number-masked by `redact`, which
    the common id (`C-1001`, `003Dn00000AbCdE`) does not need."""
    if value is None or _PLAIN_ID.fullmatch(value):
        return value
    return redact(value, limit=200)


class LineWriter:
    """Access lines straight to a stream, buffered and flushed every 0.1 s.

    `predial serve` owns its stdout: a line through `logging` (a record, a lock, a
    formatter, a write and a flush per request) cost as much as the rest of a cache
    hit. Lines written here are flushed by the event loop shortly after, and at
    shutdown, in writes of at most `PIPE_BUF` bytes that end a line: several
    workers share one pipe (a container's stdout), and only such writes are atomic
    on it, so their lines never interleave. The timestamp is formatted once per
    second.
    """

    def __init__(self, stream: IO[str], *, timestamps: bool = True) -> None:
        self._stream = stream
        self._timestamps = timestamps
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""
        self._flush_pending = False
        self.dropped = 0

    def __call__(self, line: str) -> None:
        if self._timestamps:
            now = time.time()
            if int(now) != self._second:
                self._second = int(now)
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            line = f"{self._stamp},{int(now * 1000) % 1000:03d} {line}"
        self._lines.append(line)
        if not self._flush_pending:
            self._flush_pending = True
            try:
                asyncio.get_running_loop().call_later(0.1, self.flush)
            except RuntimeError:  # no loop (a test calling directly): write now
                self.flush()

    def flush(self) -> None:
        self._flush_pending = False
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        try:
            self._stream.flush()  # whatever else went to the stream goes first
            fd = self._stream.fileno()
        except (OSError, ValueError, AttributeError):  # not a file (a test's StringIO)
            fd = None
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            data = (line + "\n").encode("utf-8", "replace")
            if chunk and size + len(data) > select.PIPE_BUF:
                self._write(fd, b"".join(chunk), len(chunk))
                chunk, size = [], 0
            chunk.append(data)
            size += len(data)
        self._write(fd, b"".join(chunk), len(chunk))

    def _write(self, fd: int | None, data: bytes, count: int) -> None:
        try:
            if fd is None:
                self._stream.write(data.decode("utf-8"))
                self._stream.flush()
                return
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            # A closed or broken stdout must not fail the request or the shutdown;
            # the lines are lost, and counted.
            self.dropped += count


class AccessLog:
    def __init__(self, app: ASGIApp, service: PredialService, routes: set[str]) -> None:
        self.app = app
        self.service = service
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500  # what the server answers if the app fails before responding
        state = scope.setdefault("state", {})

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = perf_counter() - started
            path = scope["path"]
            route = path if path in self.routes else "unmatched"
            self.service.http.observe(route, scope["method"], status, elapsed)
            service = self.service
            if service.settings.access_log != "off" and (
                service.access_writer is not None or access_log.isEnabledFor(logging.INFO)
            ):
                self._log(scope, state, route, status, elapsed)

    def _log(
        self, scope: Scope, state: dict[str, Any], route: str, status: int, elapsed: float
    ) -> None:
        client = scope.get("client")
        fields: dict[str, Any] = {
            "method": scope["method"],
            "path": route if route != "unmatched" else redact(scope["path"], limit=120),
            "status": status,
            "durationMs": round(elapsed * 1000, 2),
            "client": client[0] if client else None,
            "caller": state.get("predial.caller"),
            "error": state.get("predial.error"),
            "replayed": True if state.get("predial.replayed") else None,
        }
        decisions: list[dict[str, Any]] | None = state.get("predial.decisions")
        if decisions is not None and len(decisions) == 1 and route == "/v1/resolve":
            decision = decisions[0]
            fields.update(
                decisionId=decision["decisionId"],
                decision=decision["status"],
                reason=decision["reason"],
                source=decision["source"],
                campaignId=_shown_id(decision["campaignId"]),
                externalId=_shown_id(decision["externalId"]),
                phoneNumber=mask_phone(decision["phoneNumber"])
                if decision["phoneNumber"]
                else None,
            )
        elif decisions:
            fields["decisions"] = dict(Tally(item["status"] for item in decisions))
            fields["decisionIds"] = [item["decisionId"] for item in decisions]
        if state.get("predial.item_errors"):
            fields["itemErrors"] = state["predial.item_errors"]
        write = self.service.access_writer
        if self.service.settings.access_log == "json":
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            line = json.dumps({"time": stamp, **{k: v for k, v in fields.items() if v is not None}})
        else:
            line = logfmt(fields)
        if write is not None:
            write(line)
        else:
            access_log.info("%s", line)
