"""Who may ask `predial serve`: API keys (Bearer or x-api-key) scoped to campaigns,
Standard Webhooks signatures (signed here with the independent `standardwebhooks`
package), and unauthenticated access on loopback only. Under real uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from service_helpers import (
    KEY_A,
    KEY_ALL,
    SECRET_NEW,
    SECRET_OLD,
    Running,
    all_log_text,
    answer_for,
    capture_all_logs,
    dumps,
    keyed_settings,
    lead,
    make_resolver,
    running,
    signed_headers,
    wait_for_line,
)

from predial.errors import ConfigurationError
from predial.service import ApiKeyConfig, ServiceConfig, create_app

UNKNOWN_SECRET = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="


@pytest.fixture(scope="module")
def keyed() -> Iterator[Running]:
    with running(keyed_settings()) as service:
        yield service


@pytest.fixture
def http(keyed: Running) -> Iterator[httpx.Client]:
    with keyed.client() as client:
        yield client


def _unauthenticated(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthenticated"
    message: str = error["message"]
    return message


def _ok(response: httpx.Response, external_id: str = "ok-1") -> dict[str, Any]:
    assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    assert decision["status"] == "ok"
    assert decision["phoneNumber"] == answer_for(external_id)
    return decision


# -- API keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {KEY_ALL}"},
        {"authorization": f"bearer   {KEY_ALL}"},
        {"x-api-key": KEY_ALL},
    ],
    ids=["bearer", "bearer-lowercase-spaced", "x-api-key"],
)
def test_an_api_key_is_accepted_in_either_header(
    http: httpx.Client, headers: dict[str, str]
) -> None:
    _ok(http.post("/v1/resolve", json=lead(campaign="cmp_b"), headers=headers))


def test_no_credentials_is_401(http: httpx.Client) -> None:
    message = _unauthenticated(http.post("/v1/resolve", json=lead()))
    assert "API key" in message


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer key-that-is-not-configured-000"},
        {"x-api-key": "key-that-is-not-configured-000"},
        {"authorization": f"Bearer {KEY_ALL}x"},
        {"x-api-key": KEY_ALL[:-1]},
        {"authorization": f"Basic {KEY_ALL}"},
        {"authorization": "Bearer"},
        {"authorization": KEY_ALL},
    ],
)
def test_a_wrong_key_is_401(http: httpx.Client, headers: dict[str, str]) -> None:
    message = _unauthenticated(http.post("/v1/resolve", json=lead(), headers=headers))
    assert KEY_ALL not in message


def test_a_key_scoped_to_campaign_a_may_ask_for_a_only(http: httpx.Client) -> None:
    headers = {"authorization": f"Bearer {KEY_A}"}
    _ok(http.post("/v1/resolve", json=lead(campaign="cmp_a"), headers=headers))
    refused = http.post("/v1/resolve", json=lead(campaign="cmp_b"), headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert refused.json()["error"]["field"] == "campaignId"
    # A scoped key learns nothing about which other campaigns exist.
    unknown = http.post("/v1/resolve", json=lead(campaign="cmp_zz"), headers=headers)
    assert unknown.status_code == 403
    # A key for every campaign gets the 404 of a configuration mistake.
    everything = {"x-api-key": KEY_ALL}
    assert (
        http.post("/v1/resolve", json=lead(campaign="cmp_zz"), headers=everything).status_code
        == 404
    )


def test_out_of_scope_items_of_a_batch_are_per_item_403(http: httpx.Client) -> None:
    body = {"leads": [lead("ok-1", "cmp_a"), lead("ok-2", "cmp_b"), lead("ok-3", "cmp_a")]}
    response = http.post("/v1/resolve/batch", json=body, headers={"x-api-key": KEY_A})
    assert response.status_code == 200
    first, second, third = response.json()["results"]
    assert first["status"] == "ok"
    assert second == {
        "index": 1,
        "error": {
            "code": "forbidden",
            "message": second["error"]["message"],
            "field": "campaignId",
        },
    }
    assert third["status"] == "ok"
    assert third["phoneNumber"] == answer_for("ok-3")


# -- Standard Webhooks -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET_NEW, SECRET_OLD], ids=["new", "old"])
def test_a_request_signed_by_either_configured_secret_is_accepted(
    http: httpx.Client, secret: str
) -> None:
    body = dumps(lead(campaign="cmp_b"))
    _ok(http.post("/v1/resolve", content=body, headers=signed_headers(body, secret)))


def test_a_header_with_several_signatures_is_accepted_if_one_matches(http: httpx.Client) -> None:
    body = dumps(lead())
    at = datetime.now(UTC)
    old = signed_headers(body, SECRET_OLD, msg_id="msg_rotating_1", at=at)
    new = signed_headers(body, SECRET_NEW, msg_id="msg_rotating_1", at=at)
    both = {**new, "webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}
    _ok(http.post("/v1/resolve", content=body, headers=both))

    foreign = signed_headers(body, UNKNOWN_SECRET, msg_id="msg_rotating_2", at=at)
    good = signed_headers(body, SECRET_OLD, msg_id="msg_rotating_2", at=at)
    mixed = {
        **good,
        "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl v2,xyz "
        f"{foreign['webhook-signature']} {good['webhook-signature']}",
    }
    _ok(http.post("/v1/resolve", content=body, headers=mixed))


def test_a_bad_signature_is_401(http: httpx.Client) -> None:
    body = dumps(lead())
    foreign = signed_headers(body, UNKNOWN_SECRET)
    assert "signature" in _unauthenticated(http.post("/v1/resolve", content=body, headers=foreign))

    # Signed, then the body changed on the way.
    headers = signed_headers(body)
    tampered = dumps(lead(campaign="cmp_b"))
    _unauthenticated(http.post("/v1/resolve", content=tampered, headers=headers))

    # The right signature under another version tag, or none at all.
    versioned = signed_headers(body)
    versioned["webhook-signature"] = versioned["webhook-signature"].replace("v1,", "v2,")
    _unauthenticated(http.post("/v1/resolve", content=body, headers=versioned))
    for junk in ("v1,", "v1", ",", "v1,!!!", "v1,a v1,b"):
        headers = {**signed_headers(body), "webhook-signature": junk}
        _unauthenticated(http.post("/v1/resolve", content=body, headers=headers))


def test_a_signature_needs_all_three_headers(http: httpx.Client) -> None:
    body = dumps(lead())
    for missing in ("webhook-id", "webhook-timestamp"):
        headers = signed_headers(body)
        del headers[missing]
        message = _unauthenticated(http.post("/v1/resolve", content=body, headers=headers))
        assert "webhook-id, webhook-timestamp and webhook-signature" in message


@pytest.mark.parametrize(
    "skew", [timedelta(minutes=-6), timedelta(minutes=6)], ids=["stale", "future"]
)
def test_a_timestamp_more_than_five_minutes_off_is_401(http: httpx.Client, skew: timedelta) -> None:
    body = dumps(lead())
    headers = signed_headers(body, at=datetime.now(UTC) + skew)
    message = _unauthenticated(http.post("/v1/resolve", content=body, headers=headers))
    assert "timestamp" in message


def test_a_timestamp_within_five_minutes_is_accepted(http: httpx.Client) -> None:
    body = dumps(lead())
    for skew in (timedelta(minutes=-4), timedelta(minutes=4)):
        headers = signed_headers(body, at=datetime.now(UTC) + skew)
        _ok(http.post("/v1/resolve", content=body, headers=headers))


@pytest.mark.parametrize(
    "stamp", ["soon", "", "1.5e9", "9" * 400, "-" + "9" * 400, "9" * 5000, "0x65", "1e400"]
)
def test_a_malformed_timestamp_is_401_not_a_server_error(http: httpx.Client, stamp: str) -> None:
    body = dumps(lead())
    headers = {**signed_headers(body), "webhook-timestamp": stamp}
    _unauthenticated(http.post("/v1/resolve", content=body, headers=headers))


def test_a_replayed_webhook_id_gets_the_same_answer_never_a_new_one(
    http: httpx.Client,
) -> None:
    """The id is an idempotency key (Standard Webhooks): a sender retrying a lost
    answer gets that answer again; the id never buys a second resolve."""
    body = dumps(lead())
    headers = signed_headers(body, msg_id="msg_replayed_once")
    first = _ok(http.post("/v1/resolve", content=body, headers=headers))
    again = http.post("/v1/resolve", content=body, headers=headers)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first  # the same decisionId: nothing was resolved twice
    # Re-signed with a fresh timestamp, or by the other secret: still the same id.
    later = signed_headers(
        body, SECRET_OLD, msg_id="msg_replayed_once", at=datetime.now(UTC) + timedelta(seconds=2)
    )
    assert http.post("/v1/resolve", content=body, headers=later).json() == first
    # The same id for another body (a sender reusing ids): a replay, refused.
    other = dumps(lead("ok-3"))
    reused = signed_headers(other, msg_id="msg_replayed_once")
    assert "replay" in _unauthenticated(http.post("/v1/resolve", content=other, headers=reused))
    # A rejected request does not burn its id: the genuine one still goes through.
    fresh = dumps(lead("ok-2"))
    forged = {**signed_headers(fresh, UNKNOWN_SECRET, msg_id="msg_not_yet_seen")}
    _unauthenticated(http.post("/v1/resolve", content=fresh, headers=forged))
    genuine = signed_headers(fresh, msg_id="msg_not_yet_seen")
    _ok(http.post("/v1/resolve", content=fresh, headers=genuine), "ok-2")


def test_signed_requests_are_refused_when_no_secret_is_configured() -> None:
    settings = ServiceConfig(keys=[ApiKeyConfig(key=KEY_ALL, campaigns=["*"])])
    with running(settings) as service, service.client() as http:
        body = dumps(lead())
        message = _unauthenticated(
            http.post("/v1/resolve", content=body, headers=signed_headers(body))
        )
        assert "not configured" in message


def test_signed_batches_and_shims(http: httpx.Client) -> None:
    body = dumps({"leads": [lead("ok-1"), lead("gone-1", "cmp_b")]})
    response = http.post("/v1/resolve/batch", content=body, headers=signed_headers(body))
    assert [item["status"] for item in response.json()["results"]] == ["ok", "skip"]
    connect = dumps({"Items": {"CustomerProfiles": [{"ProfileId": "ok-1", "CustomerData": "{}"}]}})
    answer = http.post(
        "/v1/platforms/connect?campaignId=cmp_a", content=connect, headers=signed_headers(connect)
    )
    assert answer.status_code == 200
    assert answer.json()["Items"]["CustomerProfiles"][0]["IsFailure"] is False


# -- unauthenticated, on loopback only ---------------------------------------------------------


def test_allow_unauthenticated_works_on_loopback() -> None:
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        _ok(http.post("/v1/resolve", json=lead()))
        # A key that is sent must still be a valid one.
        _unauthenticated(http.post("/v1/resolve", json=lead(), headers={"x-api-key": "x" * 20}))


async def test_allow_unauthenticated_is_ignored_off_loopback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through httpx's ASGI transport the server is "example.org:80", not a loopback
    address: the setting must not open the service there."""
    caplog.set_level(logging.WARNING, logger="predial.service")
    resolver = make_resolver()
    try:
        app = create_app(resolver, settings=ServiceConfig(allow_unauthenticated=True))
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://example.org") as client:
            for _ in range(2):
                _unauthenticated(await client.post("/v1/resolve", json=lead()))
    finally:
        await resolver.close()
    warnings = [r for r in caplog.records if "allow_unauthenticated applies" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    "forwarding",
    [{"x-forwarded-for": "198.51.100.7"}, {"forwarded": "for=198.51.100.7"}],
)
def test_allow_unauthenticated_never_admits_a_forwarded_request(
    forwarding: dict[str, str],
) -> None:
    """A reverse proxy on the same host connects from loopback: what it forwards
    comes from elsewhere and needs credentials."""
    with running(ServiceConfig(allow_unauthenticated=True)) as service, service.client() as http:
        _unauthenticated(http.post("/v1/resolve", json=lead(), headers=forwarding))
        _ok(http.post("/v1/resolve", json=lead()))


async def test_allow_unauthenticated_needs_a_loopback_client() -> None:
    """A loopback listener reached from another address (a port forward, a container
    network) is not "local": its callers need credentials."""
    resolver = make_resolver()
    try:
        app = create_app(resolver, settings=ServiceConfig(allow_unauthenticated=True))
        for client in (("203.0.113.9", 1234), ("127.0.0.1", 1234)):
            transport = httpx.ASGITransport(app=app, client=client)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                response = await http.post("/v1/resolve", json=lead())
            assert response.status_code == (401 if client[0] != "127.0.0.1" else 200)
    finally:
        await resolver.close()


def test_a_service_without_credentials_refuses_to_start() -> None:
    resolver = make_resolver()
    try:
        with pytest.raises(ConfigurationError, match="no credentials"):
            create_app(resolver, settings=ServiceConfig())
    finally:
        resolver.close_sync()
    with pytest.raises(ValueError, match="loopback"):
        ServiceConfig(allow_unauthenticated=True).check_listening("0.0.0.0")
    ServiceConfig(allow_unauthenticated=True).check_listening("127.0.0.1")


# -- secrets stay secret ---------------------------------------------------------------------


def test_keys_and_secrets_never_reach_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    capture_all_logs(caplog)
    wrong = "wrong-key-that-someone-typed-123"
    with running(keyed_settings(access_log="json")) as service, service.client() as http:
        requests = [
            http.post("/v1/resolve", json=lead(), headers={"authorization": f"Bearer {KEY_A}"}),
            http.post("/v1/resolve", json=lead("ok-2"), headers={"x-api-key": KEY_ALL}),
            http.post("/v1/resolve", json=lead(campaign="cmp_b"), headers={"x-api-key": KEY_A}),
            http.post("/v1/resolve", json=lead(), headers={"x-api-key": wrong}),
            http.post(f"/v1/{KEY_ALL}", json=lead(), headers={"x-api-key": KEY_ALL}),
            http.post(
                "/v1/platforms/vapi/tool", json={"message": {}}, headers={"x-vapi-secret": KEY_A}
            ),
        ]
        body = dumps(lead("ok-3"))
        requests.append(http.post("/v1/resolve", content=body, headers=signed_headers(body)))
        requests.append(http.get("/livez"))  # the last request: its line is the last one
        wait_for_line(caplog, '"path": "/livez"')
    assert [r.status_code for r in requests] == [200, 200, 403, 401, 404, 200, 200, 200]
    # The service's own lines (the test client's httpx logs its URLs, not ours).
    text = all_log_text(caplog, exclude=("httpx", "httpcore"))
    for secret in (KEY_A, KEY_ALL, wrong, SECRET_OLD, SECRET_NEW):
        assert secret not in text
        assert secret[6:20] not in text
    assert '"caller": "dialer-a"' in text
    assert '"caller": "dialer-all"' in text
    assert '"caller": "webhook"' in text
    for response in requests:
        assert KEY_A not in response.text
        assert KEY_ALL not in response.text
