"""predial serve against hostile callers and faults: what an unauthenticated sender
can make it hold, retries after a 429, log injection, batch fan-out."""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from service_helpers import (
    KEY_ALL,
    Crm,
    dumps,
    keyed_settings,
    lead,
    running,
    signed_headers,
)

from predial.service import ApiKeyConfig, ServiceConfig


def _raw_request(url: str, head: str, body: bytes, read_timeout: float = 10.0) -> bytes:
    """Send `head` and part of a body on a raw socket; return the whole answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=read_timeout) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        headers, _, content = answer.partition(b"\r\n\r\n")
        length = int(headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(content) < length:
            content += sock.recv(65536)
        return headers + b"\r\n\r\n" + content


def _head(path: str, headers: dict[str, str], length: int) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


def test_a_stale_signed_request_is_refused_before_its_body_is_read() -> None:
    """Its body never arrives: the 401 must come from the headers alone (reading the
    body would wait out body_timeout and answer 408)."""
    settings = keyed_settings(body_timeout=60.0)
    with running(settings) as service:
        stale = signed_headers(b"{}", at=datetime.now(UTC) - timedelta(minutes=10))
        answer = _raw_request(service.url, _head("/v1/resolve", stale, 900_000), b"{")
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_unverified_bodies_are_capped() -> None:
    settings = keyed_settings(max_unverified_reads=1, body_timeout=30.0)
    with running(settings) as service:
        parts = urlsplit(service.url)
        fresh = signed_headers(b"{}")
        # One signed request whose body stalls holds the only unverified slot...
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as held:
            held.sendall(_head("/v1/resolve", fresh, 1000).encode() + b"{")
            time.sleep(0.3)
            with service.client() as http:
                body = dumps(lead())
                busy = http.post("/v1/resolve", content=body, headers=signed_headers(body))
                assert busy.status_code == 503
                assert busy.json()["error"]["code"] == "busy"
                assert busy.headers["retry-after"] == "1"
                # ...which API-key callers do not share.
                ok = http.post("/v1/resolve", json=lead(), headers={"x-api-key": KEY_ALL})
                assert ok.status_code == 200


def test_a_stalled_body_times_out_and_frees_the_callers_slot() -> None:
    settings = keyed_settings(body_timeout=0.5)
    settings = settings.model_copy(
        update={"keys": [ApiKeyConfig(key=KEY_ALL, campaigns=["*"], max_in_flight=1)]}
    )
    with running(settings) as service:
        head = _head("/v1/resolve", {"x-api-key": KEY_ALL}, 100)
        answer = _raw_request(service.url, head, b'{"campaignId"')
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"body_timeout" in answer
        with service.client() as http:
            again = http.post("/v1/resolve", json=lead(), headers={"x-api-key": KEY_ALL})
        assert again.status_code == 200


def test_a_signed_request_retried_after_a_429_gets_in() -> None:
    """Standard Webhooks senders resend the same webhook-id: a 429 must not burn it."""
    crm = Crm()
    with running(keyed_settings(max_in_flight=1), crm=crm) as service:
        answers: list[httpx.Response] = []

        def hold() -> None:
            body = dumps(lead("hold-1"))
            with service.client() as other:
                answers.append(
                    other.post("/v1/resolve", content=body, headers=signed_headers(body))
                )

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            crm.wait_in_flight(1)
            body = dumps(lead("ok-7"))
            headers = signed_headers(body, msg_id="msg_retried_after_429")
            with service.client() as http:
                refused = http.post("/v1/resolve", content=body, headers=headers)
                assert refused.status_code == 429
                crm.gate.set()
                thread.join(30)
                retried = http.post("/v1/resolve", content=body, headers=headers)
            assert retried.status_code == 200, retried.text
            assert retried.json()["status"] == "ok"
        finally:
            crm.gate.set()
            thread.join(30)
        assert answers[0].status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        {"x-real-ip": "203.0.113.9"},
        {"via": "1.1 proxy"},
        {"true-client-ip": "203.0.113.9"},
        {"cf-connecting-ip": "203.0.113.9"},
        {"x-forwarded-host": "predial.example.com"},
        {"x-envoy-external-address": "203.0.113.9"},
    ],
)
def test_allow_unauthenticated_refuses_every_forwarded_shape(header: dict[str, str]) -> None:
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        refused = http.post("/v1/resolve", json=lead(), headers=header)
        assert refused.status_code == 401
        assert "forwarded request" in refused.json()["error"]["message"]


def test_ids_cannot_forge_log_lines_or_leak_numbers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    forged = "gone-1\n2026-12-01 17:00:00,000 CRITICAL predial.service: FORGED\x1b[2J"
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        assert http.post("/v1/resolve", json=lead(forged)).json()["status"] == "skip"
        phone_shaped = "+14155550199"
        assert http.post("/v1/resolve", json=lead(phone_shaped)).status_code == 200
    for record in caplog.records:
        text = record.getMessage()
        assert "\n2026-12-01" not in text
        assert "\x1b" not in text
        assert "4155550199" not in text


def test_a_batch_is_at_most_batch_concurrency_crm_calls_at_once() -> None:
    crm = Crm(delay=0.1)
    settings = ServiceConfig(allow_unauthenticated=True, batch_concurrency=5)
    with running(settings, crm=crm) as service, service.client() as http:
        leads: list[dict[str, Any]] = [lead(f"slow-{n}") for n in range(30)]
        answer = http.post("/v1/resolve/batch", json={"leads": leads})
    assert [item["status"] for item in answer.json()["results"]] == ["ok"] * 30
    assert 1 < crm.peak <= 5


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ({"key": "k" * 20, "campaigns": ["*"], "name": "webhook"}, "reserved"),
        ({"key": "k" * 20, "campaigns": ["*"], "name": "anonymous"}, "reserved"),
        ({"key": "ключ-ключ-ключ-ключ", "campaigns": ["*"]}, "printable ASCII"),
    ],
)
def test_key_names_and_values_that_cannot_work_are_refused(
    key: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceConfig(keys=[ApiKeyConfig(**key)])


def test_unauthenticated_with_a_trusted_proxy_is_refused() -> None:
    settings = ServiceConfig(allow_unauthenticated=True, forwarded_allow_ips=["127.0.0.1"])
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        settings.check_listening("127.0.0.1")
