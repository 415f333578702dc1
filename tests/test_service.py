"""`predial serve` under real uvicorn on 127.0.0.1: every route and every status of
the contract (issue 11), admission, draining, metrics, the access log and the
OpenAPI document. Authentication is in test_service_auth.py; the batch endpoint,
the platform shims, schemathesis and the property test in test_service_contract.py."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families
from service_helpers import (
    KEY_ALL,
    NUMBERS,
    RETRY_AFTER,
    Running,
    answer_for,
    capture_all_logs,
    dumps,
    keyed_settings,
    lead,
    make_resolver,
    running,
    wait_for_line,
)
from starlette.routing import Route

from predial.service import ServiceConfig, create_app
from predial.service._openapi import openapi_document
from predial.testing._serving import serve

E164 = re.compile(r"\+[1-9]\d{1,14}")
DECISION_KEYS = {
    "status",
    "phoneNumber",
    "source",
    "reason",
    "retryAfter",
    "campaignId",
    "externalId",
    "decisionId",
}


@pytest.fixture(scope="module")
def open_service() -> Iterator[Running]:
    """One unauthenticated loopback service for the tests that only read answers."""
    with running(ServiceConfig(allow_unauthenticated=True, max_body_bytes=4096)) as service:
        yield service


@pytest.fixture
def client(open_service: Running) -> Iterator[httpx.Client]:
    with open_service.client() as http:
        yield http


def _error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"}
    if code is not None:
        assert error["code"] == code
    return dict(error)


# -- 200: the decision is in the body ------------------------------------------------------


def test_ok_decision_carries_the_crms_e164_number_and_a_decision_id(client: httpx.Client) -> None:
    response = client.post("/v1/resolve", json=lead("ok-first"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    decision = response.json()
    assert set(decision) >= DECISION_KEYS
    assert decision["status"] == "ok"
    assert decision["phoneNumber"] == answer_for("ok-first")
    assert E164.fullmatch(decision["phoneNumber"])
    assert decision["source"] == "crm"
    assert decision["reason"] is None
    assert decision["retryAfter"] is None
    assert decision["campaignId"] == "cmp_a"
    assert decision["externalId"] == "ok-first"
    assert decision["decisionId"].startswith("dec_")

    again = client.post("/v1/resolve", json=lead("ok-first")).json()
    assert again["status"] == "ok"
    assert again["source"] == "cache"
    assert again["phoneNumber"] == decision["phoneNumber"]
    assert again["decisionId"] != decision["decisionId"]


@pytest.mark.parametrize(
    ("external_id", "reason"), [("gone-1", "not_found"), ("dnc-1", "do_not_call")]
)
def test_skip_decision_carries_the_reason(
    client: httpx.Client, external_id: str, reason: str
) -> None:
    response = client.post("/v1/resolve", json=lead(external_id, "cmp_b"))
    assert response.status_code == 200
    decision = response.json()
    assert decision["status"] == "skip"
    assert decision["reason"] == reason
    assert decision["phoneNumber"] is None
    assert decision["source"] is None
    assert decision["retryAfter"] is None
    assert decision["campaignId"] == "cmp_b"
    assert decision["externalId"] == external_id


def test_retry_later_decision_carries_retry_after(client: httpx.Client) -> None:
    response = client.post("/v1/resolve", json=lead("down-1"))
    assert response.status_code == 200
    decision = response.json()
    assert decision["status"] == "retry_later"
    assert decision["reason"] == "unavailable"
    assert decision["retryAfter"] == RETRY_AFTER
    assert decision["phoneNumber"] is None


def test_stored_numbers_standard_leads_and_fallbacks(client: httpx.Client) -> None:
    standard = client.post(
        "/v1/resolve", json={"campaignId": "cmp_a", "phoneNumber": "+12025550143"}
    ).json()
    assert standard["status"] == "ok"
    assert (standard["phoneNumber"], standard["source"]) == ("+12025550143", "stored")
    assert standard["externalId"] is None

    fallback = client.post(
        "/v1/resolve", json=lead("gone-fallback", phoneNumber="+12025550143")
    ).json()
    assert fallback["status"] == "ok"
    assert (fallback["source"], fallback["reason"]) == ("stored", "not_found")


def test_fields_the_dialer_adds_are_accepted_and_ignored(client: httpx.Client) -> None:
    body = {
        **lead("ok-extra"),
        "_id": "j57a8kqnq0nsk3v4",
        "status": "queued",
        "attempts": 3,
        "_creationTime": 1_717_171_717_171.5,
        "metadata": {"name": "Ada", "tier": 2},
        "priority": 7,
        "scheduledFor": "2030-01-01T09:00:00Z",
        "somethingNew": {"nested": [1, 2]},
    }
    response = client.post("/v1/resolve", json=body)
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["status"] == "ok"
    assert decision["phoneNumber"] == answer_for("ok-extra")
    assert "_id" not in decision
    # The dialer's own `status` does not leak into (or override) the decision's.
    assert decision["status"] != "queued"


# -- 400, 404, 413: the request, not the decision ----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"campaignId": "cmp_a", "externalId": "x"', b"\xff\xfe", b"NaN", b""],
)
def test_malformed_json_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post(
        "/v1/resolve", content=body, headers={"content-type": "application/json"}
    )
    assert _error(response, 400, "invalid_json")["field"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"campaignId": "cmp_a", "externalId": "x", "phoneNumber": "555-0123"}, "phoneNumber"),
        ({"campaignId": "cmp_a", "phoneNumber": 12025550143}, "phoneNumber"),
        ({"externalId": "x"}, "campaignId"),
        ({"campaignId": 42, "externalId": "x"}, "campaignId"),
        ({"campaignId": "", "externalId": "x"}, "campaignId"),
        ({"campaignId": "cmp_a", "externalId": "x" * 2000}, "externalId"),
        ({"campaignId": "cmp_a", "externalId": "x", "priority": 500}, "priority"),
        ({"campaignId": "cmp_a", "externalId": "x", "metadata": "vip"}, "metadata"),
        ({"campaignId": "cmp_a", "externalId": "x", "scheduledFor": "soon"}, "scheduledFor"),
        # Neither identifier: the lead cannot be resolved at all.
        ({"campaignId": "cmp_a"}, "externalId"),
        ({"campaignId": "cmp_a", "externalId": " ", "phoneNumber": ""}, "externalId"),
    ],
)
def test_invalid_lead_is_400_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    error = _error(client.post("/v1/resolve", json=body), 400, "invalid_lead")
    assert error["field"] == field
    assert error["message"]


@pytest.mark.parametrize("body", [[lead()], "cmp_a", 42, None])
def test_a_body_that_is_not_an_object_is_400(client: httpx.Client, body: Any) -> None:
    _error(client.post("/v1/resolve", content=dumps(body)), 400, "invalid_lead")


def test_invalid_phone_number_is_not_echoed(client: httpx.Client) -> None:
    body = {"campaignId": "cmp_a", "phoneNumber": "+1 (202) 987-6543 ext 99"}
    error = _error(client.post("/v1/resolve", json=body), 400, "invalid_lead")
    assert "987" not in error["message"]
    assert "6543" not in error["message"]


def test_unknown_campaign_is_404(client: httpx.Client) -> None:
    error = _error(client.post("/v1/resolve", json=lead(campaign="cmp_nope")), 404)
    assert error == {
        "code": "unknown_campaign",
        "message": error["message"],
        "field": "campaignId",
    }


def _oversized(limit: int) -> bytes:
    body = dumps({**lead(), "metadata": {"blob": "x" * (limit + 100)}})
    assert len(body) > limit
    return body


def test_body_over_the_limit_with_content_length_is_413(
    open_service: Running, client: httpx.Client
) -> None:
    body = _oversized(open_service.service.settings.max_body_bytes)
    response = client.post(
        "/v1/resolve", content=body, headers={"content-type": "application/json"}
    )
    assert "content-length" in response.request.headers
    _error(response, 413, "body_too_large")
    # Also when only the declared length is over the limit: nothing is read first.
    batch = client.post("/v1/resolve/batch", content=body)
    _error(batch, 413, "body_too_large")


def test_chunked_body_over_the_limit_is_413(open_service: Running, client: httpx.Client) -> None:
    body = _oversized(open_service.service.settings.max_body_bytes)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    response = client.post(
        "/v1/resolve", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    _error(response, 413, "body_too_large")


def test_chunked_body_under_the_limit_is_read(client: httpx.Client) -> None:
    body = dumps(lead("ok-chunked"))

    def chunks() -> Iterator[bytes]:
        for index in range(len(body)):
            yield body[index : index + 1]

    response = client.post("/v1/resolve", content=chunks())
    assert response.status_code == 200, response.text
    assert response.json()["phoneNumber"] == answer_for("ok-chunked")


def test_a_non_numeric_content_length_is_refused(open_service: Running) -> None:
    # httpx will not send a bad Content-Length; a raw socket will. h11 refuses it
    # before the app sees it, and the answer is still a 4xx, never a 5xx.
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(open_service.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/resolve HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n"
            b"Connection: close\r\n\r\n{}"
        )
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500


# -- 429: admission ----------------------------------------------------------------------


def test_a_caller_over_its_concurrency_gets_429_with_retry_after() -> None:
    with running(ServiceConfig(allow_unauthenticated=True, max_in_flight=2)) as service:
        answers: list[httpx.Response] = []

        def hold(external_id: str) -> None:
            with service.client() as http:
                answers.append(http.post("/v1/resolve", json=lead(external_id)))

        threads = [threading.Thread(target=hold, args=(f"hold-{n}",)) for n in range(2)]
        for thread in threads:
            thread.start()
        try:
            service.crm.wait_in_flight(2)
            with service.client() as http:
                refused = http.post("/v1/resolve", json=lead("ok-third"))
                _error(refused, 429, "too_many_requests")
                assert int(refused.headers["retry-after"]) >= 1
                # Health and metrics are not admission-controlled.
                assert http.get("/livez").status_code == 200
                assert http.get("/metrics").status_code == 200
        finally:
            service.crm.gate.set()
            for thread in threads:
                thread.join(30)
        assert [answer.status_code for answer in answers] == [200, 200]
        assert all(answer.json()["status"] == "ok" for answer in answers)
        # The allowance is given back: the next request is admitted.
        with service.client() as http:
            assert http.post("/v1/resolve", json=lead("ok-after")).status_code == 200


def test_a_caller_over_its_rate_gets_429_with_retry_after() -> None:
    # Two a minute, not two a second: three requests never straddle the window on
    # a slow machine.
    with (
        running(ServiceConfig(allow_unauthenticated=True, rate_limit="2/minute")) as service,
        service.client() as http,
    ):
        assert http.post("/v1/resolve", json=lead("ok-r1")).status_code == 200
        assert http.post("/v1/resolve", json=lead("ok-r2")).status_code == 200
        refused = http.post("/v1/resolve", json=lead("ok-r3"))
        _error(refused, 429, "too_many_requests")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "2/minute" in refused.json()["error"]["message"]


def test_rates_are_per_caller() -> None:
    settings = keyed_settings(rate_limit="1/minute")
    with running(settings) as service, service.client() as http:
        for key in ("key-for-campaign-a-0123456789", KEY_ALL):
            headers = {"x-api-key": key}
            assert http.post("/v1/resolve", json=lead(), headers=headers).status_code == 200
            assert http.post("/v1/resolve", json=lead(), headers=headers).status_code == 429


# -- 503 and health: draining ------------------------------------------------------------


def test_livez_and_readyz() -> None:
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        assert http.get("/livez").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200
        # Anyone may ask: no campaign ids in it.
        assert ready.json() == {"status": "ready"}


def test_readyz_is_503_until_the_lifespan_has_started() -> None:
    resolver = make_resolver()
    try:
        app = create_app(resolver, settings=ServiceConfig(allow_unauthenticated=True))
        with serve(app) as url, httpx.Client(base_url=url) as http:  # lifespan off
            assert http.get("/livez").status_code == 200
            starting = http.get("/readyz")
            assert starting.status_code == 503
            assert starting.json() == {"status": "starting"}
    finally:
        resolver.close_sync()


def test_draining_answers_503_with_retry_after_and_lets_in_flight_requests_finish() -> None:
    settings = ServiceConfig(allow_unauthenticated=True, retry_after=4)
    with running(settings) as service:
        answers: list[httpx.Response] = []

        def hold() -> None:
            with service.client() as http:
                answers.append(http.post("/v1/resolve", json=lead("hold-drain")))

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            service.crm.wait_in_flight(1)
            service.service.drain()
            with service.client() as http:
                for path in ("/v1/resolve", "/v1/resolve/batch", "/v1/platforms/connect"):
                    refused = http.post(path, json=lead())
                    _error(refused, 503, "shutting_down")
                    assert refused.headers["retry-after"] == "4"
                ready = http.get("/readyz")
                assert ready.status_code == 503
                assert ready.json() == {"status": "draining"}
                assert ready.headers["retry-after"] == "4"
                assert http.get("/livez").status_code == 200
        finally:
            service.crm.gate.set()
            thread.join(30)
        assert len(answers) == 1
        assert answers[0].status_code == 200
        assert answers[0].json()["status"] == "ok"


# -- /metrics -------------------------------------------------------------------------------


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def _value(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    matching = [value for found, value in samples if labels.items() <= found.items()]
    assert matching, f"no sample with {labels}"
    return sum(matching)


def test_metrics_in_prometheus_text_format() -> None:
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        for external_id in ("ok-m1", "ok-m1", "gone-m", "down-m"):
            assert http.post("/v1/resolve", json=lead(external_id)).status_code == 200
        assert http.post("/v1/resolve", content=b"{").status_code == 400
        response = http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = _samples(response.text)

    resolves = samples["predial_resolves_total"]
    assert {"campaign", "source", "status", "reason"} <= set(resolves[0][0])
    assert _value(resolves, campaign="cmp_a", source="crm", status="ok", reason="") == 1
    assert _value(resolves, campaign="cmp_a", source="cache", status="ok", reason="") == 1
    assert _value(resolves, campaign="cmp_a", source="", status="skip", reason="not_found") == 1
    retry = _value(
        resolves, campaign="cmp_a", source="", status="retry_later", reason="unavailable"
    )
    assert retry == 1

    lookups = samples["predial_cache_lookups_total"]
    assert _value(lookups, campaign="cmp_a", result="hit") == 1
    assert _value(lookups, campaign="cmp_a", result="miss") == 3

    assert _value(samples["predial_crm_call_duration_seconds_count"], campaign="cmp_a") == 3
    assert _value(samples["predial_crm_calls_total"], campaign="cmp_a", outcome="ok") == 1
    buckets = samples["predial_crm_call_duration_seconds_bucket"]
    assert {labels["le"] for labels, _ in buckets} >= {"0.005", "0.1", "10.0", "+Inf"}
    assert _value(samples["predial_resolve_duration_seconds_count"], campaign="cmp_a") == 4

    breaker = samples["predial_breaker_state"]
    for campaign in ("cmp_a", "cmp_b"):
        assert _value(breaker, campaign=campaign, state="closed") == 1
        assert _value(breaker, campaign=campaign, state="open") == 0
        assert _value(breaker, campaign=campaign, state="half_open") == 0

    requests = samples["predial_http_requests_total"]
    assert _value(requests, route="/v1/resolve", method="POST", status="200") == 4
    assert _value(requests, route="/v1/resolve", method="POST", status="400") == 1
    assert "predial_http_request_duration_seconds_bucket" in samples


def test_metric_labels_cannot_be_grown_by_callers() -> None:
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        for n in range(5):
            http.post(f"/no/such/path/{n}", json=lead())
            http.post("/v1/resolve", json=lead(campaign=f"cmp_made_up_{n}"))
        text = http.get("/metrics").text
    assert "made_up" not in text
    assert "/no/such" not in text
    requests = _samples(text)["predial_http_requests_total"]
    assert _value(requests, route="unmatched", status="404") == 5
    assert _value(requests, route="/v1/resolve", status="404") == 5


# -- the access log ---------------------------------------------------------------------------


def test_each_answer_has_a_unique_decision_id_that_is_in_its_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="predial.access")
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        decisions = [
            http.post("/v1/resolve", json=lead(external_id)).json()
            for external_id in ("ok-log", "ok-log", "gone-log", "down-log")
        ]
        ids = [decision["decisionId"] for decision in decisions]
        assert len(set(ids)) == len(ids)
        for decision in decisions:
            line = wait_for_line(caplog, decision["decisionId"])
            assert f"decision={decision['status']}" in line
            assert "path=/v1/resolve" in line
            assert "status=200" in line
            assert "campaignId=cmp_a" in line
            assert f"externalId={decision['externalId']}" in line

        ok_line = wait_for_line(caplog, ids[0])
        number = decisions[0]["phoneNumber"]
        assert number not in ok_line
        masked = re.search(r"phoneNumber=(\S+)", ok_line)
        assert masked is not None
        assert masked.group(1) == f"{number[:5]}***{number[-4:]}"  # +1202***1111 style


def test_the_log_line_of_a_stored_number_masks_it(caplog: pytest.LogCaptureFixture) -> None:
    capture_all_logs(caplog)
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        decision = http.post(
            "/v1/resolve", json={"campaignId": "cmp_a", "phoneNumber": "+12025550123"}
        ).json()
        line = wait_for_line(caplog, decision["decisionId"])
    assert "phoneNumber=+1202***0123" in line
    assert "+12025550123" not in "\n".join(r.getMessage() for r in caplog.records)


def test_json_access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="predial.access")
    settings = ServiceConfig(allow_unauthenticated=True, access_log="json")
    with running(settings) as service, service.client() as http:
        decision = http.post("/v1/resolve", json=lead("ok-json")).json()
        line = wait_for_line(caplog, decision["decisionId"])
        batch = http.post("/v1/resolve/batch", json={"leads": [lead("ok-j1"), lead("gone-j2")]})
        batch_ids = [item["decisionId"] for item in batch.json()["results"]]
        batch_line = wait_for_line(caplog, batch_ids[1])
    entry = json.loads(line)
    assert entry["decisionId"] == decision["decisionId"]
    assert entry["method"] == "POST"
    assert entry["path"] == "/v1/resolve"
    assert entry["status"] == 200
    assert entry["decision"] == "ok"
    assert entry["caller"] == "anonymous"
    assert entry["phoneNumber"].count("*") == 3
    assert decision["phoneNumber"] not in line
    assert isinstance(entry["durationMs"], float | int)
    batch_entry = json.loads(batch_line)
    assert batch_entry["decisionIds"] == batch_ids
    assert batch_entry["decisions"] == {"ok": 1, "skip": 1}


def test_access_log_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="predial.access")
    settings = ServiceConfig(allow_unauthenticated=True, access_log="off")
    with running(settings) as service, service.client() as http:
        assert http.post("/v1/resolve", json=lead()).status_code == 200
        assert http.get("/livez").status_code == 200
    assert [r for r in caplog.records if r.name == "predial.access"] == []


def test_one_access_log_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="predial.access")
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        http.get("/livez")
        http.post("/v1/resolve", content=b"{")
        http.get("/openapi.json")
        http.get("/readyz")  # the last: once its line is there, every line is
        wait_for_line(caplog, "path=/readyz")
    lines = [r.getMessage() for r in caplog.records if r.name == "predial.access"]
    assert len(lines) == 4
    assert "path=/livez status=200" in lines[0]
    assert "path=/v1/resolve status=400" in lines[1]


# -- /openapi.json ----------------------------------------------------------------------------


def test_openapi_describes_every_route_and_nothing_else() -> None:
    resolver = make_resolver()
    try:
        app = create_app(resolver, settings=ServiceConfig(allow_unauthenticated=True))
        with serve(app, lifespan="on") as url, httpx.Client(base_url=url) as http:
            response = http.get("/openapi.json")
        assert response.status_code == 200
        document = response.json()
        validate_openapi(document)
        assert document["openapi"].startswith("3.1")
        served = {
            (route.path, method.lower())
            for route in app.routes
            if isinstance(route, Route)
            for method in (route.methods or ())
            if method != "HEAD"
        }
        described = {(path, method) for path, item in document["paths"].items() for method in item}
        assert served == described
        assert document == json.loads(json.dumps(openapi_document()))
    finally:
        resolver.close_sync()


def test_openapi_documents_the_statuses_of_the_contract() -> None:
    paths = openapi_document()["paths"]
    resolve = paths["/v1/resolve"]["post"]["responses"]
    assert set(resolve) == {"200", "400", "401", "403", "404", "408", "413", "429", "503"}
    decision = openapi_document()["components"]["schemas"]["Decision"]
    assert set(decision["properties"]) >= DECISION_KEYS
    assert set(decision["properties"]["status"]["enum"]) == {"ok", "skip", "retry_later"}
    assert set(paths["/v1/platforms/vapi/tool"]["post"]["responses"]) == {"200"}
    assert "503" in paths["/readyz"]["get"]["responses"]


def test_numbers_of_the_decision_are_e164(client: httpx.Client) -> None:
    """Every ok answer over the wire is one of the CRM's numbers, in E.164."""
    for n in range(10):
        decision = client.post("/v1/resolve", json=lead(f"ok-e164-{n}", "cmp_b")).json()
        assert decision["phoneNumber"] in NUMBERS
