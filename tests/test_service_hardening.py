"""predial serve against hostile callers and faults: what an unauthenticated sender
can make it hold, retries after a 429, log injection, batch fan-out."""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from service_helpers import (
    KEY_ALL,
    Crm,
    access_lines,
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


def test_unverified_bytes_are_capped_and_idle_connections_hold_none() -> None:
    settings = keyed_settings(max_unverified_bytes=65_536, body_timeout=30.0)
    with running(settings) as service:
        parts = urlsplit(service.url)
        address = (parts.hostname, parts.port)
        fresh = signed_headers(b"{}")
        idle = [socket.create_connection(address, timeout=10) for _ in range(8)]
        held = socket.create_connection(address, timeout=10)
        try:
            # Idle senders of signed headers hold nothing: a signed request gets in.
            for sock in idle:
                sock.sendall(_head("/v1/resolve", fresh, 1000).encode())
            with service.client() as http:
                body = dumps(lead())
                ok = http.post("/v1/resolve", content=body, headers=signed_headers(body))
                assert ok.status_code == 200
                # One sender holding 60 KB unverified leaves no room for another 10 KB.
                held.sendall(_head("/v1/resolve", fresh, 100_000).encode() + b" " * 60_000)
                time.sleep(0.3)
                padded = dumps({**lead(), "padding": "x" * 10_000})
                busy = http.post("/v1/resolve", content=padded, headers=signed_headers(padded))
                assert busy.status_code == 503
                assert busy.json()["error"]["code"] == "busy"
                assert busy.headers["retry-after"] == "1"
                # ...which API-key callers do not share.
                keyed = http.post("/v1/resolve", json=lead(), headers={"x-api-key": KEY_ALL})
                assert keyed.status_code == 200
        finally:
            for sock in [*idle, held]:
                sock.close()


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
        for phone_shaped in ("+14155550199", "(415)555-2671", "tel:+44-7911-123-456"):
            assert http.post("/v1/resolve", json=lead(phone_shaped)).status_code == 200
    for record in caplog.records:
        text = record.getMessage()
        assert "\n2026-12-01" not in text
        assert "\x1b" not in text
        for digits in ("4155550199", "555-2671", "7911-123-456"):
            assert digits not in text


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


def test_a_replayed_answer_is_kept_per_route_and_never_a_retry_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="predial.access")
    with running(keyed_settings()) as service, service.client() as http:
        single = dumps(lead("ok-4"))
        headers = signed_headers(single, msg_id="msg_per_route")
        first = http.post("/v1/resolve", content=single, headers=headers).json()
        again = http.post("/v1/resolve", content=single, headers=headers)
        assert again.json() == first
        # The same id and body to another route is that route's request, not a replay.
        other = http.post("/v1/resolve/batch", content=single, headers=headers)
        assert other.status_code == 400  # not {"leads": [...]}
        assert "idempotent-replayed" not in other.headers
        # A retry_later is resolved again on retry: by then the CRM may be back.
        down = dumps(lead("down-1"))
        retried = signed_headers(down, msg_id="msg_retry_later")
        one = http.post("/v1/resolve", content=down, headers=retried).json()
        two = http.post("/v1/resolve", content=down, headers=retried)
        assert two.status_code == 200
        assert "idempotent-replayed" not in two.headers
        assert two.json()["decisionId"] != one["decisionId"]
    lines = [line for line in access_lines(caplog) if "replayed=true" in line]
    assert len(lines) == 1
    assert first["decisionId"] in lines[0]


def test_line_writer_writes_whole_lines_within_pipe_buf(tmp_path: Path) -> None:
    """Several workers share one pipe: only writes of at most PIPE_BUF bytes are atomic
    there, so each write must end a line and fit."""
    import os
    import select

    from predial.service._accesslog import LineWriter

    read_end, write_end = os.pipe()
    writes: list[bytes] = []
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    with os.fdopen(write_end, "w") as stream:
        writer = LineWriter(stream, timestamps=False)
        lines = [f"line {n} " + "x" * (n % 300) for n in range(400)]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "write", spy)
            for line in lines:
                writer._lines.append(line)
            writer.flush()
    with os.fdopen(read_end) as out:
        assert out.read().splitlines() == lines
    assert len(writes) > 1
    assert all(len(chunk) <= select.PIPE_BUF and chunk.endswith(b"\n") for chunk in writes)


def test_line_writer_survives_a_broken_stdout() -> None:
    import os

    from predial.service._accesslog import LineWriter

    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as stream:
        writer = LineWriter(stream, timestamps=False)
        writer("one")  # no event loop here: written at once
        assert writer.dropped == 1
