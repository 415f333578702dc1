"""The fake Lupitor Leads API: the documented contract, both doc versions, limits, faults."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from conftest import FakeClock

from predial.testing import ApiKey, FakeLupitor, Faults, RequestRecord, serve

WRITE = {"x-api-key": "sk_test_write"}
READ = {"x-api-key": "sk_test_read"}
LEADS = "/api/v1/leads"
BULK = "/api/v1/leads/bulk"
BULK_DELETE = "/api/v1/leads/bulk-delete"
PHONE_1 = "+12025550101"
PHONE_2 = "+12025550102"
PHONE_3 = "+12025550103"


def client_for(fake: FakeLupitor) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake), base_url="http://lupitor.test"
    )


@pytest.fixture
def fake() -> FakeLupitor:
    return FakeLupitor()


@pytest.fixture
async def client(fake: FakeLupitor) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(fake) as client:
        yield client


def phones(n: int, start: int = 0) -> list[str]:
    return [f"+1202555{i:04d}" for i in range(start, start + n)]


def bulk_body(leads: list[dict[str, Any]], campaign: str = "cmp_1") -> dict[str, Any]:
    return {"campaignId": campaign, "leads": leads}


async def create(client: httpx.AsyncClient, campaign: str = "cmp_1", **lead: Any) -> httpx.Response:
    return await client.post(LEADS, headers=WRITE, json={"campaignId": campaign, **lead})


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"success": False, "data": None, "error": message}


# -- authentication and access --


async def test_missing_key_is_401(client: httpx.AsyncClient) -> None:
    """No x-api-key header: 401 "Missing API key"."""
    assert_error(await client.get(LEADS, params={"campaignId": "cmp_1"}), 401, "Missing API key")


async def test_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    """A key the fake does not know: 401 "Invalid or inactive API key"."""
    response = await client.get(
        LEADS, params={"campaignId": "cmp_1"}, headers={"x-api-key": "sk_nope"}
    )
    assert_error(response, 401, "Invalid or inactive API key")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", LEADS, {"campaignId": "cmp_1", "phoneNumber": PHONE_1}),
        ("POST", BULK, bulk_body([{"phoneNumber": PHONE_1}])),
        ("DELETE", f"{LEADS}?campaignId=cmp_1&externalId=e1", None),
        ("POST", BULK_DELETE, bulk_body([{"externalId": "e1"}])),
    ],
)
async def test_read_key_cannot_write(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    """A read-scope key gets 403 "Forbidden" on every write endpoint."""
    response = await client.request(method, path, headers=READ, json=body)
    assert_error(response, 403, "Forbidden")


async def test_read_key_can_list(client: httpx.AsyncClient) -> None:
    """A read-scope key may list leads."""
    response = await client.get(LEADS, params={"campaignId": "cmp_1"}, headers=READ)
    assert response.status_code == 200
    assert response.json()["success"] is True


async def test_campaign_scoped_key_is_denied_other_campaigns(client: httpx.AsyncClient) -> None:
    """A key limited to cmp_1 gets 404 on cmp_2, and works on cmp_1."""
    one = {"x-api-key": "sk_one"}
    denied = await client.post(
        LEADS, headers=one, json={"campaignId": "cmp_2", "phoneNumber": PHONE_1}
    )
    assert_error(denied, 404, "Campaign not found or access denied")
    allowed = await client.post(
        LEADS, headers=one, json={"campaignId": "cmp_1", "phoneNumber": PHONE_1}
    )
    assert allowed.status_code == 201


async def test_unknown_campaign_is_404(client: httpx.AsyncClient) -> None:
    """A campaign the fake does not hold: 404, same message as access denied."""
    response = await client.get(LEADS, params={"campaignId": "cmp_x"}, headers=WRITE)
    assert_error(response, 404, "Campaign not found or access denied")


async def test_custom_keys_and_campaigns() -> None:
    """The constructor's keys and campaigns replace the defaults."""
    fake = FakeLupitor(keys={"k": ApiKey(scope="write")}, campaigns={"c"})
    async with client_for(fake) as client:
        ok = await client.post(
            LEADS, headers={"x-api-key": "k"}, json={"campaignId": "c", "phoneNumber": PHONE_1}
        )
        old = await client.post(
            LEADS, headers=WRITE, json={"campaignId": "c", "phoneNumber": PHONE_2}
        )
    assert ok.status_code == 201
    assert_error(old, 401, "Invalid or inactive API key")


# -- validation --

CREATE_ERRORS = [
    ("v2", {"phoneNumber": PHONE_1}, "campaignId is required"),
    ("v2", {"campaignId": "cmp_1"}, "At least one of phoneNumber or externalId is required"),
    ("v1", {"campaignId": "cmp_1"}, "phoneNumber is required"),
    (
        "v2",
        {"campaignId": "cmp_1", "phoneNumber": "2025550101"},
        "phoneNumber must be in E.164 format",
    ),
    (
        "v2",
        {"campaignId": "cmp_1", "phoneNumber": "+02025550101"},
        "phoneNumber must be in E.164 format",
    ),
    (
        "v2",
        {"campaignId": "cmp_1", "phoneNumber": PHONE_1 + "\n"},
        "phoneNumber must be in E.164 format",
    ),
    ("v1", {"campaignId": "cmp_1", "phoneNumber": "+1"}, "phoneNumber must be in E.164 format"),
    (
        "v2",
        {"campaignId": "cmp_1", "phoneNumber": PHONE_1, "priority": 101},
        "priority must be between 0 and 100",
    ),
    (
        "v2",
        {"campaignId": "cmp_1", "phoneNumber": PHONE_1, "priority": -1},
        "priority must be between 0 and 100",
    ),
    ("v2", {"campaignId": "cmp_1", "externalId": ""}, "externalId must be a non-empty string"),
    (
        "v2",
        {"campaignId": "cmp_1", "externalId": "e", "metadata": []},
        "metadata must be an object",
    ),
    (
        "v2",
        {"campaignId": "cmp_1", "externalId": "e", "scheduledFor": "soon"},
        "scheduledFor must be an ISO 8601 date",
    ),
]


@pytest.mark.parametrize(("version", "body", "message"), CREATE_ERRORS)
async def test_create_validation_messages(version: str, body: dict[str, Any], message: str) -> None:
    """Each invalid single create gets 400 with the documented message, and stores nothing."""
    fake = FakeLupitor(version=version)
    async with client_for(fake) as client:
        response = await client.post(LEADS, headers=WRITE, json=body)
    assert_error(response, 400, message)
    assert fake.count("cmp_1") == 0


BULK_ERRORS = [
    ("v2", {"leads": [{"phoneNumber": PHONE_1}]}, "campaignId is required"),
    ("v2", {"campaignId": "cmp_1"}, "leads array is required"),
    ("v2", {"campaignId": "cmp_1", "leads": {"phoneNumber": PHONE_1}}, "leads array is required"),
    ("v2", {"campaignId": "cmp_1", "leads": []}, "leads array cannot be empty"),
    (
        "v2",
        bulk_body([{"phoneNumber": p} for p in phones(1001)]),
        "Maximum 1000 leads per bulk request",
    ),
    (
        "v2",
        bulk_body([{"phoneNumber": PHONE_1}, {"metadata": {}}]),
        "leads[1]: At least one of phoneNumber or externalId is required",
    ),
    (
        "v1",
        bulk_body([{"phoneNumber": PHONE_1}, {"externalId": "e2"}]),
        "leads[1]: phoneNumber is required",
    ),
    (
        "v2",
        bulk_body([{"externalId": "e1"}, {"externalId": "e2"}, {"phoneNumber": "555"}]),
        "leads[2]: phoneNumber must be in E.164 format",
    ),
    (
        "v2",
        bulk_body([{"externalId": "e1", "priority": 100.5}]),
        "leads[0]: priority must be between 0 and 100",
    ),
    ("v2", bulk_body([{"externalId": "e1"}, "e2"]), "leads[1]: lead must be an object"),
]


@pytest.mark.parametrize(("version", "body", "message"), BULK_ERRORS)
async def test_bulk_validation_messages(version: str, body: dict[str, Any], message: str) -> None:
    """Each invalid bulk create gets 400 with the documented message, and stores nothing."""
    fake = FakeLupitor(version=version)
    async with client_for(fake) as client:
        response = await client.post(BULK, headers=WRITE, json=body)
    assert_error(response, 400, message)
    assert fake.count("cmp_1") == 0


async def test_invalid_json_body_is_400(client: httpx.AsyncClient) -> None:
    """A body that is not a JSON object gets 400 "Invalid JSON body"."""
    response = await client.post(LEADS, headers=WRITE, content=b"{not json")
    assert_error(response, 400, "Invalid JSON body")
    assert_error(await client.post(BULK, headers=WRITE, json=[1]), 400, "Invalid JSON body")


async def test_bulk_accepts_exactly_1000_leads(
    fake: FakeLupitor, client: httpx.AsyncClient
) -> None:
    """1000 leads is the cap, not over it: all are created."""
    response = await client.post(
        BULK, headers=WRITE, json=bulk_body([{"phoneNumber": p} for p in phones(1000)])
    )
    assert response.status_code == 201
    assert response.json()["data"]["created"] == 1000
    assert fake.count("cmp_1") == 1000


async def test_list_and_delete_validation_messages(client: httpx.AsyncClient) -> None:
    """Query-parameter errors of list and delete use their documented messages."""
    assert_error(
        await client.get(LEADS, headers=WRITE), 400, "campaignId query parameter is required"
    )
    assert_error(
        await client.delete(LEADS, params={"externalId": "e1"}, headers=WRITE),
        400,
        "campaignId query parameter is required",
    )
    assert_error(
        await client.delete(LEADS, params={"campaignId": "cmp_1"}, headers=WRITE),
        400,
        "At least one of phoneNumber or externalId query parameter is required",
    )
    assert_error(
        await client.delete(
            LEADS, params={"campaignId": "cmp_1", "externalId": "nope"}, headers=WRITE
        ),
        404,
        "Lead not found",
    )


async def test_list_rejects_unknown_status_and_bad_limit(client: httpx.AsyncClient) -> None:
    """status outside raw|attempting|exhausted|concluded, or limit outside 1..8000, is 400."""
    bad_status = await client.get(
        LEADS, params={"campaignId": "cmp_1", "status": "done"}, headers=READ
    )
    assert_error(bad_status, 400, "status must be one of raw, attempting, exhausted, concluded")
    for limit in ("0", "8001", "ten"):
        response = await client.get(
            LEADS, params={"campaignId": "cmp_1", "limit": limit}, headers=READ
        )
        assert_error(response, 400, "limit must be an integer between 1 and 8000")
    good = await client.get(LEADS, params={"campaignId": "cmp_1", "limit": "8000"}, headers=READ)
    assert good.status_code == 200


# -- create, dedup, v1 vs v2 --


async def test_v2_create_answers_lead_id(fake: FakeLupitor, client: httpx.AsyncClient) -> None:
    """v2 single create: 201 with {"leadId": id}; the id looks like a Convex id."""
    response = await create(
        client, phoneNumber=PHONE_1, externalId="e1", metadata={"name": "Ann"}, priority=7
    )
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    assert body["error"] is None
    lead_id = body["data"]["leadId"]
    assert re.fullmatch(r"[0-9a-z]{32}", lead_id)
    [stored] = fake.leads("cmp_1")
    assert stored["_id"] == lead_id
    assert stored["metadata"] == {"name": "Ann"}
    assert stored["priority"] == 7


async def test_v1_create_answers_id_and_accepts_external_id_only() -> None:
    """v1 single create: 201 with {"id": id}, and a lead with only an externalId is accepted."""
    fake = FakeLupitor(version="v1")
    async with client_for(fake) as client:
        response = await create(client, externalId="crm-1")
    assert response.status_code == 201
    assert set(response.json()["data"]) == {"id"}
    assert fake.leads("cmp_1")[0]["phoneNumber"] is None


async def test_v2_create_accepts_external_id_only(
    fake: FakeLupitor, client: httpx.AsyncClient
) -> None:
    """v2 Prefetch Mode: a lead with only an externalId is stored without a phone."""
    assert (await create(client, externalId="crm-1")).status_code == 201
    assert fake.leads("cmp_1")[0]["externalId"] == "crm-1"


async def test_single_create_duplicate_is_400(client: httpx.AsyncClient) -> None:
    """Creating the same lead twice: the second gets 400 "Lead already exists"."""
    assert (await create(client, phoneNumber=PHONE_1)).status_code == 201
    assert_error(await create(client, phoneNumber=PHONE_1), 400, "Lead already exists")


async def test_dedup_is_per_campaign(fake: FakeLupitor, client: httpx.AsyncClient) -> None:
    """The same lead in two campaigns is two leads."""
    assert (await create(client, "cmp_1", phoneNumber=PHONE_1)).status_code == 201
    assert (await create(client, "cmp_2", phoneNumber=PHONE_1)).status_code == 201
    assert fake.count("cmp_1") == fake.count("cmp_2") == 1


async def test_v2_dedups_by_external_id_then_phone(
    fake: FakeLupitor, client: httpx.AsyncClient
) -> None:
    """v2: a matching externalId, or else a matching phone, makes a duplicate; skipped identifier is the externalId when present."""
    assert (await create(client, phoneNumber=PHONE_1, externalId="e1")).status_code == 201
    response = await client.post(
        BULK,
        headers=WRITE,
        json=bulk_body(
            [
                {"externalId": "e1", "phoneNumber": PHONE_2},  # same externalId
                {"externalId": "e2", "phoneNumber": PHONE_1},  # same phone
                {"phoneNumber": PHONE_1},  # same phone, no externalId
                {"externalId": "e3", "phoneNumber": PHONE_3},  # new
            ]
        ),
    )
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["created"] == 1
    assert data["skipped"] == 3
    assert data["skippedIdentifiers"] == ["e1", "e2", PHONE_1]
    assert "skippedPhones" not in data
    assert [lead["externalId"] for lead in fake.leads("cmp_1")] == ["e1", "e3"]


async def test_v1_dedups_by_phone_only() -> None:
    """v1: the same externalId with another phone is a new lead; the same phone is skipped (skippedPhones)."""
    fake = FakeLupitor(version="v1")
    async with client_for(fake) as client:
        response = await client.post(
            BULK,
            headers=WRITE,
            json=bulk_body(
                [
                    {"externalId": "e1", "phoneNumber": PHONE_1},
                    {"externalId": "e1", "phoneNumber": PHONE_2},
                    {"externalId": "e9", "phoneNumber": PHONE_1},
                ]
            ),
        )
        again = await create(client, externalId="e1")
    data = response.json()["data"]
    assert data["created"] == 2
    assert data["skippedPhones"] == [PHONE_1]
    assert "skippedIdentifiers" not in data
    assert again.status_code == 201  # no phone: nothing to dedup by in v1
    assert fake.count("cmp_1") == 3


async def test_bulk_skips_duplicates_within_one_request(
    fake: FakeLupitor, client: httpx.AsyncClient
) -> None:
    """Two equal leads in one bulk request: the first is created, the second skipped."""
    response = await client.post(
        BULK, headers=WRITE, json=bulk_body([{"externalId": "e1"}, {"externalId": "e1"}])
    )
    data = response.json()["data"]
    assert (data["created"], data["skipped"], data["skippedIdentifiers"]) == (1, 1, ["e1"])
    assert data["createdIds"] == [fake.leads("cmp_1")[0]["_id"]]


async def test_bulk_of_only_duplicates_is_200_and_idempotent(
    fake: FakeLupitor, client: httpx.AsyncClient
) -> None:
    """Re-sending a bulk request creates nothing more and answers 200."""
    body = bulk_body([{"phoneNumber": p} for p in phones(3)])
    first = await client.post(BULK, headers=WRITE, json=body)
    second = await client.post(BULK, headers=WRITE, json=body)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["data"] == {
        "created": 0,
        "skipped": 3,
        "createdIds": [],
        "skippedIdentifiers": phones(3),
    }
    assert fake.count("cmp_1") == 3


async def test_records_alias_serves_the_same_leads(
    fake: FakeLupitor, client: httpx.AsyncClient
) -> None:
    """/records is /leads: a lead created through one is listed and deleted through the other."""
    assert (
        await client.post(
            "/api/v1/records", headers=WRITE, json={"campaignId": "cmp_1", "externalId": "e1"}
        )
    ).status_code == 201
    listed = await client.get(LEADS, params={"campaignId": "cmp_1"}, headers=READ)
    assert listed.json()["data"]["count"] == 1
    gone = await client.post(
        "/api/v1/records/bulk-delete", headers=WRITE, json=bulk_body([{"externalId": "e1"}])
    )
    assert gone.json()["data"]["deleted"] == 1


# -- list --


async def test_list_returns_documented_fields(client: httpx.AsyncClient) -> None:
    """Each listed lead has the documented fields, status raw and zero attempts."""
    await create(client, phoneNumber=PHONE_1, externalId="e1", scheduledFor="2026-01-02T15:00:00Z")
    before_ms = time.time() * 1000
    response = await client.get(LEADS, params={"campaignId": "cmp_1"}, headers=READ)
    data = response.json()["data"]
    assert data["count"] == 1
    assert data["hasMore"] is False
    assert data["cursor"] is None
    [lead] = data["leads"]
    assert set(lead) == {
        "_id", "campaignId", "phoneNumber", "externalId", "metadata", "status",
        "scheduledFor", "priority", "attempts", "_creationTime",
    }  # fmt: skip
    assert lead["campaignId"] == "cmp_1"
    assert lead["status"] == "raw"
    assert lead["attempts"] == 0
    assert lead["scheduledFor"] == "2026-01-02T15:00:00Z"
    assert lead["priority"] == 0
    assert abs(lead["_creationTime"] - before_ms) < 60_000


async def test_list_status_filter(client: httpx.AsyncClient) -> None:
    """New leads are all raw: status=raw lists them, status=concluded lists none."""
    await create(client, phoneNumber=PHONE_1)
    raw = await client.get(LEADS, params={"campaignId": "cmp_1", "status": "raw"}, headers=READ)
    done = await client.get(
        LEADS, params={"campaignId": "cmp_1", "status": "concluded"}, headers=READ
    )
    assert raw.json()["data"]["count"] == 1
    assert done.json()["data"]["count"] == 0


async def test_cursor_pagination_walks_every_lead_once(
    fake: FakeLupitor, client: httpx.AsyncClient
) -> None:
    """limit=2 over 5 leads: pages of 2, 2, 1 in creation order, then cursor null."""
    await client.post(BULK, headers=WRITE, json=bulk_body([{"phoneNumber": p} for p in phones(5)]))
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params = {"campaignId": "cmp_1", "limit": "2"} | ({"cursor": cursor} if cursor else {})
        data = (await client.get(LEADS, params=params, headers=READ)).json()["data"]
        pages.append([lead["phoneNumber"] for lead in data["leads"]])
        assert data["hasMore"] is (data["cursor"] is not None)
        cursor = data["cursor"]
        if cursor is None:
            break
    assert pages == [phones(2), phones(2, 2), phones(1, 4)]
    first_cursor = json.loads(
        base64.b64decode(
            (
                await client.get(LEADS, params={"campaignId": "cmp_1", "limit": "2"}, headers=READ)
            ).json()["data"]["cursor"]
        )
    )
    assert first_cursor == {"position": 2}  # the docs' example cursor shape


async def test_cursor_survives_deletes_between_pages(client: httpx.AsyncClient) -> None:
    """Deleting leads already listed does not make the next page skip any."""
    await client.post(BULK, headers=WRITE, json=bulk_body([{"phoneNumber": p} for p in phones(4)]))
    first = (
        await client.get(LEADS, params={"campaignId": "cmp_1", "limit": "2"}, headers=READ)
    ).json()["data"]
    await client.post(
        BULK_DELETE, headers=WRITE, json=bulk_body([{"phoneNumber": p} for p in phones(2)])
    )
    second = (
        await client.get(
            LEADS,
            params={"campaignId": "cmp_1", "limit": "2", "cursor": first["cursor"]},
            headers=READ,
        )
    ).json()["data"]
    assert [lead["phoneNumber"] for lead in second["leads"]] == phones(2, 2)


async def test_invalid_cursor_is_400(client: httpx.AsyncClient) -> None:
    """A cursor the fake did not issue gets 400 "Invalid cursor"."""
    response = await client.get(
        LEADS, params={"campaignId": "cmp_1", "cursor": "%%%"}, headers=READ
    )
    assert_error(response, 400, "Invalid cursor")


async def test_v1_list_returns_everything_without_paging() -> None:
    """v1 list has no limit, cursor or hasMore: it returns every lead."""
    fake = FakeLupitor(version="v1")
    async with client_for(fake) as client:
        await client.post(
            BULK, headers=WRITE, json=bulk_body([{"phoneNumber": p} for p in phones(3)])
        )
        response = await client.get(
            LEADS, params={"campaignId": "cmp_1", "limit": "1"}, headers=READ
        )
    data = response.json()["data"]
    assert set(data) == {"leads", "count"}
    assert data["count"] == 3


# -- delete --


async def test_delete_by_external_id_and_by_phone(
    fake: FakeLupitor, client: httpx.AsyncClient
) -> None:
    """DELETE finds a lead by externalId or by (percent-encoded) phoneNumber; answers {"deleted": true}."""
    await create(client, externalId="e1")
    await create(client, phoneNumber=PHONE_1)
    by_id = await client.delete(
        LEADS, params={"campaignId": "cmp_1", "externalId": "e1"}, headers=WRITE
    )
    by_phone = await client.delete(
        LEADS, params={"campaignId": "cmp_1", "phoneNumber": PHONE_1}, headers=WRITE
    )
    assert (
        by_id.json()
        == by_phone.json()
        == {"success": True, "data": {"deleted": True}, "error": None}
    )
    assert fake.count("cmp_1") == 0


async def test_delete_with_unencoded_plus_finds_nothing(client: httpx.AsyncClient) -> None:
    """A raw '+' in the query decodes to a space, as the docs warn: the lead is not found."""
    await create(client, phoneNumber=PHONE_1)
    response = await client.delete(f"{LEADS}?campaignId=cmp_1&phoneNumber={PHONE_1}", headers=WRITE)
    assert_error(response, 404, "Lead not found")


async def test_bulk_delete_reports_deleted_and_not_found(
    fake: FakeLupitor, client: httpx.AsyncClient
) -> None:
    """bulk-delete counts and names what it deleted and what it did not find (other campaigns' leads included)."""
    await create(client, externalId="e1", phoneNumber=PHONE_1)
    await create(client, phoneNumber=PHONE_2)
    await create(client, "cmp_2", externalId="other")
    response = await client.post(
        BULK_DELETE,
        headers=WRITE,
        json=bulk_body(
            [
                {"externalId": "e1"},
                {"phoneNumber": PHONE_2},
                {"externalId": "other"},
                {"externalId": "e1"},
            ]
        ),
    )
    assert response.json()["data"] == {
        "deleted": 2,
        "notFound": 2,
        "deletedIdentifiers": ["e1", PHONE_2],
        "notFoundIdentifiers": ["other", "e1"],
    }
    assert fake.count("cmp_1") == 0
    assert fake.count("cmp_2") == 1


async def test_bulk_delete_validation(client: httpx.AsyncClient) -> None:
    """bulk-delete validates like bulk create: the leads array, and an identifier per entry."""
    assert_error(
        await client.post(BULK_DELETE, headers=WRITE, json={"campaignId": "cmp_1"}),
        400,
        "leads array is required",
    )
    response = await client.post(
        BULK_DELETE, headers=WRITE, json=bulk_body([{"externalId": "e1"}, {}])
    )
    assert_error(response, 400, "leads[1]: At least one of phoneNumber or externalId is required")


# -- rate limits --


def limited(clock: FakeClock, **kwargs: Any) -> FakeLupitor:
    return FakeLupitor(clock=clock, bulk_limit=3, default_limit=5, **kwargs)


async def send_bulk(
    client: httpx.AsyncClient, i: int = 0, key: str = "sk_test_write"
) -> httpx.Response:
    return await client.post(
        BULK, headers={"x-api-key": key}, json=bulk_body([{"externalId": f"e{i}"}])
    )


async def test_rate_limit_429_body_and_retry_after() -> None:
    """Over the bulk limit: 429 with the documented body and an integer Retry-After."""
    clock = FakeClock()
    async with client_for(limited(clock)) as client:
        for i in range(3):
            assert (await send_bulk(client, i)).status_code in (200, 201)
            clock.advance(10)
        response = await send_bulk(client, 9)
    assert response.status_code == 429
    body = response.json()
    assert body["success"] is False
    assert body["data"] is None
    assert body["error"] == "Rate limit exceeded. Please try again later."
    assert (body["limit"], body["remaining"]) == (3, 0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["reset"])
    assert response.headers["Retry-After"] == "30"  # the first request leaves the window at t=60


async def test_rate_limit_headers_count_down(client: httpx.AsyncClient) -> None:
    """Every answer past auth carries X-RateLimit-Limit/Remaining/Reset, errors included."""
    first = await client.get(LEADS, params={"campaignId": "cmp_1"}, headers=READ)
    second = await client.get(LEADS, headers=READ)  # a 400 still counts and still has headers
    assert second.status_code == 400
    assert [r.headers["X-RateLimit-Remaining"] for r in (first, second)] == ["99", "98"]
    assert first.headers["X-RateLimit-Limit"] == "100"
    assert int(first.headers["X-RateLimit-Reset"]) == pytest.approx(time.time() + 60, abs=2)


async def test_window_slides_rather_than_resets() -> None:
    """A slot frees when its own request leaves the window, not all at once."""
    clock = FakeClock()
    async with client_for(limited(clock)) as client:
        await send_bulk(client, 0)  # t=0
        clock.advance(30)
        await send_bulk(client, 1)  # t=30
        await send_bulk(client, 2)  # t=30
        clock.advance(31)  # t=61: only the t=0 request has left
        freed = await send_bulk(client, 3)
        refused = await send_bulk(client, 4)
    assert freed.status_code == 201
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "29"


async def test_never_more_than_limit_in_any_window() -> None:
    """Under steady pressure, accepted requests never exceed the limit in any window."""
    clock = FakeClock()
    accepted: list[float] = []
    async with client_for(limited(clock)) as client:
        for i in range(60):
            if (await send_bulk(client, i)).status_code != 429:
                accepted.append(clock.now)
            clock.advance(7.3)
    assert len(accepted) > 3
    for t in accepted:
        assert sum(1 for u in accepted if t - 60 < u <= t) <= 3


async def test_rejected_requests_do_not_count() -> None:
    """Hammering while limited does not push the freed slot further away."""
    clock = FakeClock()
    async with client_for(limited(clock)) as client:
        for i in range(3):
            await send_bulk(client, i)
        for i in range(20):
            assert (await send_bulk(client, 10 + i)).status_code == 429
        clock.advance(60)
        assert (await send_bulk(client, 99)).status_code == 201


async def test_limits_are_per_key_and_per_class() -> None:
    """Bulk and other endpoints have separate limits, and each key its own."""
    clock = FakeClock()
    async with client_for(limited(clock)) as client:
        for i in range(3):
            await send_bulk(client, i)
        assert (await send_bulk(client, 5)).status_code == 429
        assert (await send_bulk(client, 6, key="sk_one")).status_code == 201
        listed = await client.get(LEADS, params={"campaignId": "cmp_1"}, headers=WRITE)
    assert listed.status_code == 200
    assert listed.headers["X-RateLimit-Limit"] == "5"


async def test_scaled_window_gives_fractional_retry_after() -> None:
    """With a 0.6 s window, Retry-After and X-RateLimit-Reset carry milliseconds, and waiting Retry-After suffices."""
    fake = FakeLupitor(window=0.6, bulk_limit=2)
    async with client_for(fake) as client:
        ok = await send_bulk(client, 0)
        await send_bulk(client, 1)
        refused = await send_bulk(client, 2)
        assert refused.status_code == 429
        retry_after = refused.headers["Retry-After"]
        assert re.fullmatch(r"0\.\d{3}", retry_after)
        assert re.fullmatch(r"\d+\.\d{3}", ok.headers["X-RateLimit-Reset"])
        await asyncio.sleep(float(retry_after))
        assert (await send_bulk(client, 3)).status_code == 201


# -- faults --


async def test_error_rate_one_fails_every_request_before_anything() -> None:
    """error_rate=1: every request is a 500 and nothing is stored."""
    fake = FakeLupitor(faults=Faults(error_rate=1.0))
    async with client_for(fake) as client:
        response = await create(client, phoneNumber=PHONE_1)
    assert_error(response, 500, "Internal server error")
    assert fake.count("cmp_1") == 0


async def test_error_rate_is_reproducible_with_a_seed() -> None:
    """The same seed fails the same requests; the fraction is about error_rate."""

    async def outcomes(seed: int) -> list[int]:
        fake = FakeLupitor(default_limit=1000, faults=Faults(error_rate=0.3, seed=seed))
        async with client_for(fake) as client:
            return [
                (await client.get(LEADS, params={"campaignId": "cmp_1"}, headers=READ)).status_code
                for _ in range(100)
            ]

    first, again, other = await outcomes(7), await outcomes(7), await outcomes(8)
    assert first == again != other
    assert 15 <= first.count(500) <= 45


async def test_faults_come_after_auth() -> None:
    """A missing key is still a 401 when every request would fail."""
    fake = FakeLupitor(faults=Faults(error_rate=1.0, forced_429=5))
    async with client_for(fake) as client:
        response = await client.get(LEADS, params={"campaignId": "cmp_1"})
    assert_error(response, 401, "Missing API key")
    assert fake.faults.forced_429 == 5


async def test_latency_delays_answers() -> None:
    """latency adds that many seconds to each answer."""
    fake = FakeLupitor(faults=Faults(latency=0.1))
    async with client_for(fake) as client:
        started = time.monotonic()
        await client.get(LEADS, params={"campaignId": "cmp_1"}, headers=READ)
    assert time.monotonic() - started >= 0.1


async def test_lost_after_commit_stores_the_lead_but_answers_502() -> None:
    """lost_after_commit_rate=1: the write commits, the client sees 502 "Bad gateway", a retry sees the duplicate."""
    fake = FakeLupitor(faults=Faults(lost_after_commit_rate=1.0))
    async with client_for(fake) as client:
        lost = await create(client, externalId="e1")
        listed = await client.get(LEADS, params={"campaignId": "cmp_1"}, headers=READ)
        fake.faults = Faults()
        retry = await create(client, externalId="e1")
    assert_error(lost, 502, "Bad gateway")
    assert listed.status_code == 200  # reads are never lost
    assert fake.count("cmp_1") == 1
    assert_error(retry, 400, "Lead already exists")


async def test_lost_after_commit_rate_is_reproducible() -> None:
    """Half the bulk writes lost, the same ones for the same seed, all committed."""

    async def statuses() -> tuple[list[int], int]:
        fake = FakeLupitor(bulk_limit=100, faults=Faults(lost_after_commit_rate=0.5, seed=3))
        async with client_for(fake) as client:
            codes = [(await send_bulk(client, i)).status_code for i in range(40)]
        return codes, fake.count("cmp_1")

    (first, stored), (again, _) = await statuses(), await statuses()
    assert first == again
    assert stored == 40
    assert 10 <= first.count(502) <= 30
    assert set(first) == {201, 502}


async def test_forced_429_answers_the_next_n_requests() -> None:
    """forced_429=2: the next two requests get 429 with Retry-After, then all is normal."""
    fake = FakeLupitor()
    async with client_for(fake) as client:
        fake.faults = Faults(forced_429=2)
        codes = [(await create(client, externalId=f"e{i}")).status_code for i in range(3)]
        forced = await create(client, externalId="x")
        fake.faults.forced_429 = 1
        again = await create(client, externalId="y")
    assert codes == [429, 429, 201]
    assert forced.status_code == 201
    assert again.status_code == 429
    assert again.headers["Retry-After"] == "1"  # one default-limit interval: 60/100 s, rounded up
    assert again.json()["error"] == "Rate limit exceeded. Please try again later."
    assert fake.count("cmp_1") == 2


# -- inspection and routing --


async def test_requests_are_recorded(fake: FakeLupitor, client: httpx.AsyncClient) -> None:
    """fake.requests lists method, path, status, key and the number of leads sent."""
    await client.post(
        BULK, headers=WRITE, json=bulk_body([{"externalId": "a"}, {"externalId": "b"}])
    )
    await client.get(LEADS, params={"campaignId": "cmp_1"})
    assert fake.requests == [
        RequestRecord(method="POST", path=BULK, status=201, key="sk_test_write", leads=2),
        RequestRecord(method="GET", path=LEADS, status=401, key=None, leads=0),
    ]


async def test_unknown_path_and_method_use_the_envelope(client: httpx.AsyncClient) -> None:
    """An unknown path is a 404 and a wrong method a 405, both in the envelope."""
    assert_error(await client.get("/api/v1/calls", headers=WRITE), 404, "Not found")
    assert_error(await client.put(LEADS, headers=WRITE), 405, "Method not allowed")


def test_inspecting_an_unknown_campaign_raises(fake: FakeLupitor) -> None:
    """leads() and count() of a campaign the fake does not hold raise KeyError (likely a typo)."""
    with pytest.raises(KeyError):
        fake.leads("cmp_9")
    with pytest.raises(KeyError):
        fake.count("cmp_9")


def test_constructor_rejects_nonsense() -> None:
    """An unknown version, a zero limit or window is refused at construction."""
    with pytest.raises(ValueError, match="version"):
        FakeLupitor(version="v3")
    with pytest.raises(ValueError, match="at least 1"):
        FakeLupitor(bulk_limit=0)
    with pytest.raises(ValueError, match="window"):
        FakeLupitor(window=0)


# -- through a real uvicorn server --


def test_serve_runs_uvicorn_on_loopback() -> None:
    """serve() yields an http://127.0.0.1 URL where the fake answers over real HTTP."""
    fake = FakeLupitor()
    with serve(fake) as base_url, httpx.Client(base_url=base_url) as client:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        created = client.post(
            LEADS, headers=WRITE, json={"campaignId": "cmp_1", "phoneNumber": PHONE_1}
        )
        listed = client.get(LEADS, params={"campaignId": "cmp_1"}, headers=READ)
    assert created.status_code == 201
    assert listed.json()["data"]["leads"][0]["phoneNumber"] == PHONE_1
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + LEADS)  # the server is gone after the block


async def test_serve_under_concurrency_keeps_the_limit_and_commits_atomically() -> None:
    """Concurrent requests over real HTTP: the window admits exactly its limit, and one lead sent 20 times at once is stored once."""
    fake = FakeLupitor(bulk_limit=5)
    with serve(fake) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            bulk = await asyncio.gather(*(send_bulk(client, i) for i in range(20)))
            single = await asyncio.gather(*(create(client, externalId="same") for _ in range(20)))
    assert sorted(r.status_code for r in bulk) == [201] * 5 + [429] * 15
    assert sorted(r.status_code for r in single) == [201] + [400] * 19
    assert fake.count("cmp_1") == 6


def test_serve_refuses_other_hosts() -> None:
    """serve() binds 127.0.0.1 only."""
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"), serve(FakeLupitor(), host="0.0.0.0"):
        pass


def test_serve_accepts_any_asgi_app() -> None:
    """serve() serves any ASGI callable, not only the fake."""

    async def hello(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})

    with serve(hello) as base_url:
        assert httpx.get(base_url).text == "hi"
