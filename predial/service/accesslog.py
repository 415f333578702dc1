"""One structured access-log line and the HTTP metrics of every request.

A pure ASGI middleware (no per-request task or body buffering, unlike Starlette's
BaseHTTPMiddleware). The line carries the decision ids the handler put in
`scope["state"]`, so a dialer's record joins the service's log; numbers are masked
and no header is ever logged, so no key is either.
"""

from __future__ import annotations

import json
import logging
from collections import Counter as Tally
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import LATENCY_BUCKETS
from ..phone import mask_phone
from ..redaction import redact

if TYPE_CHECKING:
    from .app import PredialService

__all__ = ["AccessLog", "ServiceMetrics", "logfmt"]

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


def logfmt(fields: dict[str, Any]) -> str:
    """`key=value` pairs; a value with spaces, quotes or controls is JSON-quoted."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        if not text or not text.isprintable() or any(c in text for c in ' "=\\'):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


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
            if self.service.settings.access_log != "off" and access_log.isEnabledFor(logging.INFO):
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
        }
        decisions: list[dict[str, Any]] | None = state.get("predial.decisions")
        if decisions is not None and len(decisions) == 1 and route == "/v1/resolve":
            decision = decisions[0]
            fields.update(
                decisionId=decision["decisionId"],
                decision=decision["status"],
                reason=decision["reason"],
                source=decision["source"],
                campaignId=redact(decision["campaignId"], limit=200),
                externalId=redact(decision["externalId"], limit=200)
                if decision["externalId"] is not None
                else None,
                phoneNumber=mask_phone(decision["phoneNumber"])
                if decision["phoneNumber"]
                else None,
            )
        elif decisions:
            fields["decisions"] = dict(Tally(item["status"] for item in decisions))
            fields["decisionIds"] = [item["decisionId"] for item in decisions]
        if state.get("predial.item_errors"):
            fields["itemErrors"] = state["predial.item_errors"]
        if self.service.settings.access_log == "json":
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            line = json.dumps({"time": stamp, **{k: v for k, v in fields.items() if v is not None}})
        else:
            line = logfmt(fields)
        access_log.info("%s", line)
