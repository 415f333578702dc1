"""The contract of `predial serve` beyond one lead: the batch endpoint, the Vapi and
Amazon Connect shims, schemathesis against the service's own /openapi.json, and a
property test that HTTP answers are `Resolver.resolve`'s decisions. Under real
uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from service_helpers import (
    CAMPAIGNS,
    KEY_A,
    KEY_ALL,
    NUMBERS,
    RETRY_AFTER,
    Crm,
    Running,
    access_lines,
    answer_for,
    dumps,
    keyed_settings,
    lead,
    make_resolver,
    running,
)

from predial import Lead, Resolution, Unresolvable
from predial.service import ServiceConfig, create_app
from predial.service._openapi import openapi_document


@pytest.fixture(scope="module")
def open_service() -> Iterator[Running]:
    with running(ServiceConfig(allow_unauthenticated=True, max_batch=1000)) as service:
        yield service


@pytest.fixture
def client(open_service: Running) -> Iterator[httpx.Client]:
    with open_service.client() as http:
        yield http


def conforms(document: Any, model: str) -> None:
    """`document` is valid against the OpenAPI document's schema `model`."""
    components = openapi_document()["components"]
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{model}", "components": components}
    )
    validator.validate(document)


# -- POST /v1/resolve/batch --------------------------------------------------------------------


def test_a_batch_of_mixed_items_answers_each_in_input_order(client: httpx.Client) -> None:
    leads: list[Any] = [
        lead("ok-b1"),
        lead("ok-b2", phoneNumber="555-0199"),  # invalid: names phoneNumber
        lead("ok-b3", "cmp_unknown"),  # 404 as an item
        lead("gone-b4", "cmp_b"),
        "not a lead",
        lead("down-b6"),
        {**lead("ok-b7", "cmp_b"), "_id": "x", "status": "queued", "attempts": 2},
        {"externalId": "ok-b8"},  # names campaignId
        lead("boom-b9"),
        lead("dnc-b10"),
    ]
    response = client.post("/v1/resolve/batch", json={"leads": leads})
    assert response.status_code == 200
    results = response.json()["results"]
    conforms(response.json(), "BatchResponse")
    assert len(results) == len(leads)

    def error(index: int) -> dict[str, Any]:
        item = results[index]
        assert set(item) == {"index", "error"}, item
        assert item["index"] == index
        return dict(item["error"])

    assert results[0]["status"] == "ok"
    assert results[0]["phoneNumber"] == answer_for("ok-b1")
    assert (error(1)["code"], error(1)["field"]) == ("invalid_lead", "phoneNumber")
    assert (error(2)["code"], error(2)["field"]) == ("unknown_campaign", "campaignId")
    assert (results[3]["status"], results[3]["reason"]) == ("skip", "not_found")
    assert error(4)["code"] == "invalid_lead"
    assert results[5]["status"] == "retry_later"
    assert results[5]["retryAfter"] == RETRY_AFTER
    assert (results[6]["status"], results[6]["externalId"]) == ("ok", "ok-b7")
    assert error(7)["field"] == "campaignId"
    assert (results[8]["status"], results[8]["reason"]) == ("retry_later", "adapter_error")
    assert NUMBERS[1] not in json.dumps(results[8])
    assert (results[9]["status"], results[9]["reason"]) == ("skip", "do_not_call")

    ids = [item["decisionId"] for item in results if "decisionId" in item]
    assert len(ids) == 6
    assert len(set(ids)) == len(ids)
    for index, item in enumerate(results):
        if "decisionId" in item:
            assert item["externalId"] == leads[index]["externalId"]


def test_an_empty_batch_is_an_empty_answer(client: httpx.Client) -> None:
    response = client.post("/v1/resolve/batch", json={"leads": []})
    assert response.status_code == 200
    assert response.json() == {"results": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([lead()], None),
        ({"leads": lead()}, "leads"),
        ({"lead": [lead()]}, "leads"),
        ({"leads": None}, "leads"),
        ("leads", None),
    ],
)
def test_a_batch_that_is_not_leads_is_400(
    client: httpx.Client, body: Any, field: str | None
) -> None:
    response = client.post("/v1/resolve/batch", content=dumps(body))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["field"] == field


def test_malformed_json_of_a_batch_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/resolve/batch", content=b'{"leads": [')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_a_batch_over_max_batch_is_400() -> None:
    with running(ServiceConfig(allow_unauthenticated=True, max_batch=5)) as service:
        with service.client() as http:
            full = http.post("/v1/resolve/batch", json={"leads": [lead()] * 5})
            assert full.status_code == 200
            over = http.post("/v1/resolve/batch", json={"leads": [lead()] * 6})
        assert over.status_code == 400
        assert over.json()["error"]["code"] == "batch_too_large"
        assert over.json()["error"]["field"] == "leads"
        # Nothing of a refused batch was resolved.
        assert service.crm.calls == ["ok-1"]


def test_the_default_batch_holds_a_thousand_leads(client: httpx.Client) -> None:
    leads = [lead(f"ok-k{n}", CAMPAIGNS[n % 2]) for n in range(1000)]
    response = client.post("/v1/resolve/batch", json={"leads": leads})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [item["externalId"] for item in results] == [item["externalId"] for item in leads]
    assert all(item["phoneNumber"] == answer_for(item["externalId"]) for item in results)
    over = client.post("/v1/resolve/batch", json={"leads": [*leads, lead()]})
    assert over.status_code == 400


def test_a_batch_is_resolved_concurrently(open_service: Running, client: httpx.Client) -> None:
    """50 leads against a CRM taking 0.2 s each: 10 s one after another; the bound
    is generous so a slow machine does not fail it."""
    open_service.crm.peak = 0
    leads = [lead(f"slow-c{n}") for n in range(50)]
    started = time.monotonic()
    response = client.post("/v1/resolve/batch", json={"leads": leads})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert [item["status"] for item in response.json()["results"]] == ["ok"] * 50
    assert elapsed < 5.0
    assert open_service.crm.peak > 10


# -- the Vapi shim -----------------------------------------------------------------------------


def _vapi(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"message": {"type": "tool-calls", "toolCallList": list(calls)}}


def _call(call_id: str, arguments: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "predial", "arguments": arguments},
    }


def _vapi_results(response: httpx.Response) -> list[dict[str, Any]]:
    """Vapi's rules: HTTP 200, and each result or error a single line of JSON."""
    assert response.status_code == 200, response.text
    conforms(response.json(), "VapiToolResponse")
    results: list[dict[str, Any]] = response.json()["results"]
    for item in results:
        text = item.get("result") or item.get("error")
        assert isinstance(text, str)
        assert len(text.splitlines()) == 1
        json.loads(text)
    return results


def test_vapi_tool_calls_get_one_line_decisions(client: httpx.Client) -> None:
    body = _vapi(
        _call("call_object", lead("ok-v1")),
        _call("call_string", json.dumps(lead("gone-v2", "cmp_b"))),
        _call("call_bad", {"campaignId": "cmp_a", "externalId": "ok-v3", "phoneNumber": "1"}),
        _call("call_newline", lead("ok-v4\nsecond line\u2028third")),
    )
    results = _vapi_results(client.post("/v1/platforms/vapi/tool", json=body))
    assert [item["toolCallId"] for item in results] == [
        "call_object",
        "call_string",
        "call_bad",
        "call_newline",
    ]
    first = json.loads(results[0]["result"])
    assert (first["status"], first["phoneNumber"]) == ("ok", answer_for("ok-v1"))
    assert first["decisionId"].startswith("dec_")
    second = json.loads(results[1]["result"])
    assert (second["status"], second["reason"]) == ("skip", "not_found")
    assert "result" not in results[2]
    assert json.loads(results[2]["error"])["field"] == "phoneNumber"
    assert json.loads(results[3]["result"])["externalId"] == "ok-v4\nsecond line\u2028third"


def test_vapi_campaign_from_the_query_string(client: httpx.Client) -> None:
    body = _vapi(
        _call("a", {"externalId": "ok-q1"}),
        _call("b", json.dumps({"externalId": "ok-q2", "campaignId": "cmp_a"})),
        _call("c", {"externalId": "ok-q3", "campaignId": "cmp_nope"}),
    )
    results = _vapi_results(client.post("/v1/platforms/vapi/tool?campaignId=cmp_b", json=body))
    assert json.loads(results[0]["result"])["campaignId"] == "cmp_b"
    assert json.loads(results[1]["result"])["campaignId"] == "cmp_a"  # its own wins
    assert json.loads(results[2]["error"])["code"] == "unknown_campaign"
    # Without the default, arguments without campaignId are an error for that call.
    plain = _vapi_results(client.post("/v1/platforms/vapi/tool", json=body))
    assert json.loads(plain[0]["error"])["field"] == "campaignId"


def test_vapi_tool_calls_under_their_other_name(client: httpx.Client) -> None:
    body = {"message": {"type": "tool-calls", "toolCalls": [_call("t1", lead("ok-t1"))]}}
    results = _vapi_results(client.post("/v1/platforms/vapi/tool", json=body))
    assert json.loads(results[0]["result"])["status"] == "ok"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"message": {}}', b'{"message": {"toolCallList": 3}}', b""],
)
def test_vapi_gets_200_even_for_a_bad_request(client: httpx.Client, body: bytes) -> None:
    results = _vapi_results(client.post("/v1/platforms/vapi/tool", content=body))
    assert len(results) == 1
    assert results[0]["toolCallId"] == ""
    assert json.loads(results[0]["error"])["code"] in {"invalid_json", "invalid_request"}


def test_vapi_bad_arguments_are_per_call_errors(client: httpx.Client) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    body = _vapi(
        _call("deep", deep),
        _call("nan", '{"campaignId": "cmp_a", "externalId": "ok-n", "metadata": {"x": NaN}}'),
        _call("text", "not json"),
        {"id": "no-function"},
        "not a call",
        _call("good", lead("ok-g")),
    )
    results = _vapi_results(client.post("/v1/platforms/vapi/tool", json=body))
    assert [item["toolCallId"] for item in results] == [
        "deep",
        "nan",
        "text",
        "no-function",
        "",
        "good",
    ]
    assert all("error" in item for item in results[:5])
    assert json.loads(results[5]["result"])["status"] == "ok"


def test_vapi_gets_200_for_bad_auth_and_admission() -> None:
    with running(keyed_settings(max_in_flight=1)) as service, service.client() as http:
        body = _vapi(_call("c1", lead("ok-1")))
        for headers in ({}, {"x-vapi-secret": "not-the-right-secret-000"}):
            results = _vapi_results(
                http.post("/v1/platforms/vapi/tool", json=body, headers=headers)
            )
            assert json.loads(results[0]["error"])["code"] == "unauthenticated"
            # An unauthenticated body is never read, so the call is not named.
            assert results[0]["toolCallId"] == ""
        # Vapi's own secret header carries an API key.
        good = _vapi_results(
            http.post("/v1/platforms/vapi/tool", json=body, headers={"x-vapi-secret": KEY_A})
        )
        assert json.loads(good[0]["result"])["status"] == "ok"
        scoped = _vapi(_call("c2", lead("ok-2", "cmp_b")))
        refused = _vapi_results(
            http.post("/v1/platforms/vapi/tool", json=scoped, headers={"x-vapi-secret": KEY_A})
        )
        assert json.loads(refused[0]["error"])["code"] == "forbidden"

        answers: list[httpx.Response] = []

        def hold() -> None:
            with service.client() as other:
                held = lead("hold-v")
                answers.append(other.post("/v1/resolve", json=held, headers={"x-api-key": KEY_ALL}))

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            service.crm.wait_in_flight(1)
            busy = http.post("/v1/platforms/vapi/tool", json=body, headers={"x-api-key": KEY_ALL})
            assert int(busy.headers["retry-after"]) >= 1
            assert json.loads(_vapi_results(busy)[0]["error"])["code"] == "too_many_requests"
            assert _vapi_results(busy)[0]["toolCallId"] == "c1"
            service.service.drain()
            draining = _vapi_results(
                http.post("/v1/platforms/vapi/tool", json=body, headers={"x-api-key": KEY_ALL})
            )
            assert json.loads(draining[0]["error"])["code"] == "shutting_down"
        finally:
            service.crm.gate.set()
            thread.join(30)
        assert answers[0].status_code == 200


# -- the Amazon Connect shim ---------------------------------------------------------------------


def _connect(*profiles: Any) -> dict[str, Any]:
    return {
        "InvocationMetadata": {"Arn": "arn:aws:connect-campaigns:eu-west-1:1:campaign/x"},
        "Items": {"CustomerProfiles": list(profiles)},
    }


def test_connect_profiles_get_per_item_answers(client: httpx.Client) -> None:
    body = _connect(
        {"ProfileId": "ok-p1", "CustomerData": json.dumps({"campaignId": "cmp_a"})},
        {
            "ProfileId": "profile-2",
            "CustomerData": json.dumps({"campaignId": "cmp_b", "externalId": "gone-p2"}),
        },
        {"ProfileId": "ok-p3", "CustomerData": {"campaignId": "cmp_a", "phoneNumber": "12"}},
        {"ProfileId": "ok-p4", "CustomerData": {"campaignId": "cmp_a"}, "IdempotencyToken": "t"},
        {"ProfileId": "ok-p5", "CustomerData": json.dumps({"campaignId": "cmp_zz"})},
    )
    response = client.post("/v1/platforms/connect", json=body)
    assert response.status_code == 200
    conforms(response.json(), "ConnectResponse")
    answers = response.json()["Items"]["CustomerProfiles"]
    assert [item["Id"] for item in answers] == ["ok-p1", "profile-2", "ok-p3", "ok-p4", "ok-p5"]
    first = answers[0]
    assert first["IsFailure"] is False
    assert first["ResultData"]["status"] == "ok"
    assert first["ResultData"]["phoneNumber"] == answer_for("ok-p1")
    assert first["ResultData"]["externalId"] == "ok-p1"  # the ProfileId by default
    assert answers[1]["ResultData"]["status"] == "skip"
    assert answers[1]["IsFailure"] is False  # a decision, not a failure
    assert answers[2]["IsFailure"] is True
    assert answers[2]["ErrorCode"] == "invalid_lead"
    assert "phoneNumber" in answers[2]["ErrorMessage"]
    assert answers[3]["ResultData"]["status"] == "ok"
    assert (answers[4]["IsFailure"], answers[4]["ErrorCode"]) == (True, "unknown_campaign")


def test_connect_campaign_from_the_query_string(client: httpx.Client) -> None:
    body = _connect(
        {"ProfileId": "ok-cq1"},
        {"ProfileId": "ok-cq2", "CustomerData": "{}"},
        {"ProfileId": "ok-cq3", "CustomerData": "not json"},
        {"ProfileId": "ok-cq4", "CustomerData": json.dumps({"campaignId": "cmp_a"})},
    )
    answers = client.post("/v1/platforms/connect?campaignId=cmp_b", json=body).json()["Items"][
        "CustomerProfiles"
    ]
    assert [item.get("ResultData", {}).get("campaignId") for item in answers] == [
        "cmp_b",
        "cmp_b",
        None,
        "cmp_a",
    ]
    # Unreadable CustomerData is a failed item, never a lead made of its ProfileId.
    assert answers[2]["IsFailure"] is True
    assert answers[2]["ErrorCode"] == "invalid_lead"
    assert "CustomerData" in answers[2]["ErrorMessage"]


def test_connect_bad_items_never_fail_the_batch(client: httpx.Client) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    body = _connect(
        "not a profile",
        {"ProfileId": 7, "CustomerData": {"campaignId": "cmp_a"}},
        {"ProfileId": "ok-d", "CustomerData": deep},
        {"ProfileId": "ok-e", "CustomerData": {"campaignId": "cmp_a"}},
    )
    response = client.post("/v1/platforms/connect?campaignId=cmp_a", json=body)
    assert response.status_code == 200
    answers = response.json()["Items"]["CustomerProfiles"]
    assert [item["IsFailure"] for item in answers] == [True, True, True, False]
    assert answers[0]["Id"] == ""
    assert answers[2]["ErrorCode"] == "invalid_lead"


@pytest.mark.parametrize("data", ["[1, 2]", '"a string"', "42", [1, 2]])
def test_connect_customer_data_that_is_not_an_object_fails_the_item(
    client: httpx.Client, data: Any
) -> None:
    body = _connect({"ProfileId": "ok-f", "CustomerData": data})
    answer = client.post("/v1/platforms/connect?campaignId=cmp_a", json=body).json()
    (item,) = answer["Items"]["CustomerProfiles"]
    assert item["IsFailure"] is True
    assert item["ErrorCode"] == "invalid_lead"


@pytest.mark.parametrize(
    "body", [b"{", b"[]", b'{"Items": {}}', b'{"Items": {"CustomerProfiles": 1}}']
)
def test_connect_request_that_is_not_a_batch_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post("/v1/platforms/connect", content=body)
    assert response.status_code == 400
    conforms(response.json(), "ErrorBody")


def test_connect_over_max_batch_is_400() -> None:
    with running(ServiceConfig(allow_unauthenticated=True, max_batch=2)) as service:
        with service.client() as http:
            body = _connect(*({"ProfileId": f"ok-{n}"} for n in range(3)))
            response = http.post("/v1/platforms/connect?campaignId=cmp_a", json=body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "batch_too_large"


def test_connect_needs_credentials() -> None:
    with running(keyed_settings()) as service, service.client() as http:
        body = _connect({"ProfileId": "ok-1"})
        assert http.post("/v1/platforms/connect?campaignId=cmp_a", json=body).status_code == 401
        scoped = http.post(
            "/v1/platforms/connect?campaignId=cmp_b", json=body, headers={"x-api-key": KEY_A}
        )
        assert scoped.status_code == 200
        assert scoped.json()["Items"]["CustomerProfiles"][0]["ErrorCode"] == "forbidden"


# -- schemathesis against the served /openapi.json ----------------------------------------------

SCHEMATHESIS_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _steered(case: Any) -> Any | None:
    """The case again with the configured campaign ids, so a generated lead reaches
    the resolve and its decision (random ids only ever reach the 404)."""
    body = case.body
    if case.path == "/v1/resolve" and isinstance(body, dict):
        case.body = {**body, "campaignId": "cmp_a"}
    elif case.path == "/v1/resolve/batch" and isinstance(body, dict):
        leads = body.get("leads")
        if not isinstance(leads, list):
            return None
        case.body = {
            **body,
            "leads": [
                {**item, "campaignId": "cmp_b"} if isinstance(item, dict) else item
                for item in leads
            ],
        }
    elif case.path.startswith("/v1/platforms/"):
        case.query = {**(case.query or {}), "campaignId": "cmp_a"}
    else:
        return None
    return case


def test_schemathesis_finds_no_server_error_and_no_answer_breaking_the_schema() -> None:
    """Positive and negative requests generated from the served document, sent to an
    unauthenticated loopback service (so they reach the resolve), and each answer
    checked: not a 5xx, a documented status and content type, the documented
    schema. Each generated lead is also sent again with a configured campaign."""
    crm = Crm()
    crm.gate.set()  # a generated "hold-…" id must not wait
    with running(ServiceConfig(allow_unauthenticated=True), crm=crm) as service:
        # A fresh configuration: no schemathesis.toml found on disk applies.
        schema = schemathesis.openapi.from_url(
            f"{service.url}/openapi.json", config=SchemathesisConfig()
        )
        # No generated credentials: they would all be refused with 401.
        schema.config.generation.update(with_security_parameters=False)
        strategy = st.one_of(
            schema.as_strategy(GenerationMode.POSITIVE),
            schema.as_strategy(GenerationMode.NEGATIVE),
        )
        statuses: dict[tuple[str, int], int] = {}

        @settings(
            max_examples=200,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(case=strategy)
        def check(case: Any) -> None:
            response = case.call_and_validate(checks=SCHEMATHESIS_CHECKS)
            key = (case.path, response.status_code)
            statuses[key] = statuses.get(key, 0) + 1
            steered = _steered(case)
            if steered is not None:
                response = steered.call_and_validate(checks=SCHEMATHESIS_CHECKS)
                key = (case.path, response.status_code)
                statuses[key] = statuses.get(key, 0) + 1

        check()
    # The run reached the decisions, not only the 4xx answers.
    assert statuses.get(("/v1/resolve", 200), 0) > 0, statuses
    assert statuses.get(("/v1/resolve/batch", 200), 0) > 0, statuses


# -- the same decisions through HTTP and through Resolver.resolve ---------------------------------

_ids = st.one_of(
    st.builds(
        "{}-{}".format,
        st.sampled_from(["ok", "gone", "down", "dnc", "junk", "boom"]),
        st.text(max_size=8),
    ),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20).filter(
        lambda text: not text.strip().startswith(("hold-", "slow-"))
    ),
)


def _lead_body(
    campaign: str, external_id: str | None, number: str | None, priority: int | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"campaignId": campaign}
    if external_id is not None:
        body["externalId"] = external_id
    if number is not None:
        body["phoneNumber"] = number
    if priority is not None:
        body["priority"] = priority
    return body


_leads = st.builds(
    _lead_body,
    st.sampled_from(CAMPAIGNS),
    st.one_of(st.none(), _ids),
    st.sampled_from([None, "+12025550143", "+447911123456", "+15555551234"]),
    st.one_of(st.none(), st.integers(0, 100)),
)


COMPARED = ("status", "phoneNumber", "source", "reason", "retryAfter")


def _in_process(outcome: Resolution | Unresolvable) -> dict[str, Any]:
    if isinstance(outcome, Resolution):
        return {
            "status": "ok",
            "phoneNumber": outcome.phone_number,
            "source": outcome.source,
            "reason": outcome.fallback_reason,
            "retryAfter": None,
        }
    return {
        "status": "retry_later" if outcome.retryable else "skip",
        "phoneNumber": None,
        "source": None,
        "reason": outcome.reason,
        "retryAfter": outcome.retry_after if outcome.retryable else None,
    }


@pytest.fixture(scope="module")
def twin() -> Iterator[Any]:
    """A second resolver over an identical CRM, used in-process, on one event loop."""
    resolver = make_resolver()
    with asyncio.Runner() as runner:
        yield resolver, runner
        runner.run(resolver.close())


def _valid(body: dict[str, Any]) -> bool:
    try:
        Lead.model_validate(body)
    except ValueError:
        return False
    return True


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(leads=st.lists(_leads.filter(_valid), min_size=1, max_size=6))
def test_http_answers_are_resolver_resolve_decisions(
    open_service: Running, client: httpx.Client, twin: Any, leads: list[dict[str, Any]]
) -> None:
    """Leads of every kind (found, not found, CRM down, do-not-call, a bad number, an
    adapter bug; with and without a stored number; repeated, so from the cache too)
    get the same decision over HTTP as from an identical resolver in-process."""
    resolver, runner = twin
    open_service.resolver.clear_cache()
    resolver.clear_cache()
    for body in [*leads, *leads]:
        response = client.post("/v1/resolve", json=body)
        assert response.status_code == 200, response.text
        over_http = {key: response.json()[key] for key in COMPARED}
        try:
            outcome: Resolution | Unresolvable = runner.run(resolver.resolve(body))
        except Unresolvable as refusal:
            outcome = refusal
        assert over_http == _in_process(outcome), body


def test_vapi_over_max_batch_is_one_error_per_call_with_200() -> None:
    with running(ServiceConfig(allow_unauthenticated=True, max_batch=2)) as service:
        with service.client() as http:
            body = _vapi(*(_call(f"c{n}", lead(f"ok-{n}")) for n in range(3)))
            results = _vapi_results(http.post("/v1/platforms/vapi/tool", json=body))
        assert [item["toolCallId"] for item in results] == ["c0", "c1", "c2"]
        assert {json.loads(item["error"])["code"] for item in results} == {"batch_too_large"}
        assert service.crm.calls == []


def test_unknown_routes_and_methods_answer_in_the_error_shape(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = client.get("/v1/resolve")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]


async def test_extra_routes_are_served_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A shim of the user's own (docs/service.md) is a route like the others."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def retell(request: Request) -> Response:
        return JSONResponse({"call_inbound": {}})

    caplog.set_level(logging.INFO, logger="predial.access")
    resolver = make_resolver()
    try:
        app = create_app(
            resolver,
            settings=ServiceConfig(allow_unauthenticated=True),
            extra_routes=[Route("/v1/platforms/retell", retell, methods=["POST"])],
        )
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            assert (await http.post("/v1/platforms/retell")).status_code == 200
            metrics = (await http.get("/metrics")).text
    finally:
        await resolver.close()
    assert 'route="/v1/platforms/retell"' in metrics
    assert any("path=/v1/platforms/retell" in line for line in access_lines(caplog))


def test_the_access_line_says_why_a_request_was_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Even Vapi's always-200 answers and 429s name the error, and 429s the caller."""
    caplog.set_level(logging.INFO, logger="predial.access")
    with running(keyed_settings(rate_limit="1/minute")) as service, service.client() as http:
        http.post("/v1/platforms/vapi/tool", json=_vapi(_call("c1", lead())))
        http.post("/v1/resolve", json=lead(), headers={"x-api-key": KEY_ALL})
        limited = http.post("/v1/resolve", json=lead(), headers={"x-api-key": KEY_ALL})
        batch = http.post(
            "/v1/resolve/batch",
            json={"leads": [lead(), {"bad": 1}]},
            headers={"x-api-key": KEY_A},
        )
    assert limited.status_code == 429
    assert batch.status_code == 200
    lines = access_lines(caplog)
    assert "error=unauthenticated" in lines[0]
    assert "status=200" in lines[0]
    assert "error=too_many_requests" in lines[2]
    assert "caller=" in lines[2]
    assert "itemErrors=1" in lines[3]
