"""Shared pieces of the service tests: a deterministic in-process CRM, credentials,
and the predial app served by real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette

import predial
from predial import (
    AdapterUnavailable,
    BreakerSettings,
    Campaign,
    CrmContact,
    CrmPhone,
    RecordNotFound,
    Resolver,
    RetrySettings,
)
from predial.service import ApiKeyConfig, PredialService, ServiceConfig, create_app
from predial.testing._serving import serve

CAMPAIGNS = ("cmp_a", "cmp_b")
NUMBERS = ("+12024561111", "+12024561414", "+447911123456")
RETRY_AFTER = 7.0

KEY_A = "key-for-campaign-a-0123456789"  # scoped to cmp_a
KEY_ALL = "key-for-every-campaign-9876543210"  # scoped to "*"
SECRET_OLD = "whsec_" + base64.b64encode(bytes(range(32))).decode()
SECRET_NEW = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()


def answer_for(external_id: str) -> Any:
    """What the test CRM answers for an external id: decided by its prefix.

    `gone-…` not found (skip), `down-…` unavailable for 7 s (retry_later), `dnc-…`
    do-not-call (skip), `junk-…` no valid number (skip), `boom-…` an adapter bug
    (retry_later); anything else one of NUMBERS, the same one every time for the
    same id.
    """
    kind = external_id.split("-", 1)[0]
    if kind == "gone":
        raise RecordNotFound("no such contact")
    if kind == "down":
        raise AdapterUnavailable("the CRM is down", retry_after=RETRY_AFTER)
    if kind == "dnc":
        return CrmContact(phones=[CrmPhone(NUMBERS[0])], do_not_call=True)
    if kind == "junk":
        return "not a phone number"
    if kind == "boom":
        raise ZeroDivisionError(f"adapter bug while reading {NUMBERS[1]}")
    return NUMBERS[zlib.crc32(external_id.encode("utf-8", "surrogatepass")) % len(NUMBERS)]


@dataclass
class Crm:
    """The test CRM's controls: `slow-…` ids sleep `delay` seconds; `hold-…` ids
    wait until `gate` is set. Counts calls in flight (read from the test thread)."""

    delay: float = 0.2
    gate: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    peak: int = 0
    calls: list[str] = field(default_factory=list)

    def wait_in_flight(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.in_flight < count:
            assert time.monotonic() < deadline, f"{self.in_flight} calls in flight, not {count}"
            time.sleep(0.005)


class DirectoryAdapter:
    """An async adapter over `answer_for`, with the controls of a `Crm`."""

    name = "directory"

    def __init__(self, crm: Crm) -> None:
        self.crm = crm

    async def fetch_phone(self, external_id: str) -> Any:
        crm = self.crm
        crm.calls.append(external_id)
        crm.in_flight += 1
        crm.peak = max(crm.peak, crm.in_flight)
        try:
            if external_id.startswith("hold-"):
                # A threading.Event: the test's thread opens it, not this loop's.
                while not crm.gate.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            elif external_id.startswith("slow-"):
                await asyncio.sleep(crm.delay)
            return answer_for(external_id)
        finally:
            crm.in_flight -= 1


class DirectoryPlugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(DirectoryAdapter)


def make_resolver(crm: Crm | None = None, *, deadline: float = 10.0) -> Resolver:
    """A resolver of CAMPAIGNS over the test CRM: one attempt per call and a breaker
    that never opens, so every answer depends on the lead alone."""
    crm = crm or Crm()
    return Resolver(
        [Campaign(cid, "directory", {"crm": crm}, default_region="US") for cid in CAMPAIGNS],
        plugins=[DirectoryPlugin()],
        load_entrypoints=False,
        deadline=deadline,
        retry=RetrySettings(attempts=1),
        breaker=BreakerSettings(failure_threshold=10**9),
    )


def keyed_settings(**overrides: Any) -> ServiceConfig:
    """Settings with both API keys and both webhook secrets configured."""
    values: dict[str, Any] = {
        "keys": [
            ApiKeyConfig(key=KEY_A, campaigns=["cmp_a"], name="dialer-a"),
            ApiKeyConfig(key=KEY_ALL, campaigns=["*"], name="dialer-all"),
        ],
        "webhook_secrets": [SECRET_OLD, SECRET_NEW],
    }
    values.update(overrides)
    return ServiceConfig(**values)


@dataclass
class Running:
    url: str
    app: Starlette
    resolver: Resolver
    crm: Crm

    @property
    def service(self) -> PredialService:
        service: PredialService = self.app.state.predial
        return service

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.url, **kwargs)


@contextmanager
def running(settings: ServiceConfig | None = None, *, crm: Crm | None = None) -> Iterator[Running]:
    """The predial app over a fresh resolver, under real uvicorn, lifespan on."""
    crm = crm or Crm()
    resolver = make_resolver(crm)
    try:
        app = create_app(resolver, settings=settings or ServiceConfig(allow_unauthenticated=True))
        with serve(app, lifespan="on") as url:
            yield Running(url, app, resolver, crm)
    finally:
        crm.gate.set()
        resolver.close_sync()


def lead(external_id: str = "ok-1", campaign: str = "cmp_a", **more: Any) -> dict[str, Any]:
    return {"campaignId": campaign, "externalId": external_id, **more}


def signed_headers(
    body: bytes,
    secret: str = SECRET_NEW,
    *,
    msg_id: str | None = None,
    at: datetime | None = None,
) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed by the independent package."""
    msg_id = msg_id or f"msg_{time.monotonic_ns()}_{threading.get_ident()}"
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "predial.access"]


def wait_for_line(caplog: pytest.LogCaptureFixture, needle: str, timeout: float = 10.0) -> str:
    """The access-log line holding `needle`: it is written just after the answer is
    sent, by the server's thread, so it may land a moment after the client reads it."""
    deadline = time.monotonic() + timeout
    while True:
        for line in access_lines(caplog):
            if needle in line:
                return line
        assert time.monotonic() < deadline, f"no access-log line with {needle!r}"
        time.sleep(0.005)


def all_log_text(caplog: pytest.LogCaptureFixture, exclude: tuple[str, ...] = ()) -> str:
    lines = []
    for record in caplog.records:
        if record.name.split(".")[0] in exclude:
            continue
        lines.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            lines.append(repr(record.exc_info[1]))
    return "\n".join(lines)


def capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Every record at DEBUG, whatever levels earlier tests left on predial's loggers."""
    for name in (None, "predial", "predial.access", "predial.service", "predial._resolver"):
        caplog.set_level(logging.DEBUG, logger=name)
