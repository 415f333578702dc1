"""The service answers the compliance gate's refusals: `retry_later` with `retryAfter`
and `nextAllowedAt` outside the calling window, `skip` with `listName` on a list; the
audit record of each answer carries the service's `decisionId`. Real uvicorn."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_helpers import Crm, DirectoryPlugin, answer_for

from predial import Campaign, Resolver, RetrySettings
from predial.compliance import AuditLog, Compliance, DncList
from predial.service import ServiceConfig, create_app
from predial.testing._serving import serve

#: Wednesday 2 December 2026, 02:00 UTC: 21:00 EST / 18:00 PST on Tuesday — past 9 p.m.
#: in the East, so a DC number is outside the federal window (8 a.m.–9 p.m.).
LATE = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
#: Wednesday 08:00 EST, the next opening for a DC number.
DC_OPENS = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)


def dc_id() -> str:
    """An external id the test CRM answers with a DC (202) number."""
    for index in range(1000):
        external_id = f"ok-{index}"
        answer = answer_for(external_id)
        if isinstance(answer, str) and answer.startswith("+1202"):
            return external_id
    raise AssertionError("the test CRM has no DC number")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, list[dict[str, Any]]]]:
    records: list[dict[str, Any]] = []
    written = threading.Lock()

    def sink(record: dict[str, Any]) -> None:
        with written:
            records.append(record)

    DncList(tmp_path, "internal").add([], by="test")
    audit = AuditLog(sink, key="k" * 32)
    resolver = Resolver(
        [
            Campaign(
                "cmp_a",
                "directory",
                {"crm": Crm()},
                default_region="US",
                compliance=Compliance(dnc_lists=("internal",)),
            )
        ],
        plugins=[DirectoryPlugin()],
        load_entrypoints=False,
        retry=RetrySettings(attempts=1),
        dnc_dir=tmp_path,
        wall_clock=lambda: LATE,
        audit=audit,
    )
    try:
        app = create_app(resolver, settings=ServiceConfig(allow_unauthenticated=True))
        with serve(app, lifespan="on") as url, httpx.Client(base_url=url, timeout=30) as http:
            yield http, records
    finally:
        resolver.close_sync()
        audit.close()


def test_outside_the_window_the_service_answers_retry_later_with_retry_after(
    served: tuple[httpx.Client, list[dict[str, Any]]],
) -> None:
    http, records = served
    response = http.post("/v1/resolve", json={"campaignId": "cmp_a", "externalId": dc_id()})
    assert response.status_code == 200
    decision = response.json()
    assert decision["status"] == "retry_later"
    assert decision["reason"] == "outside_calling_window"
    assert decision["retryAfter"] == (DC_OPENS - LATE).total_seconds() == 11 * 3600
    assert decision["nextAllowedAt"] == "2026-12-02T13:00:00Z"
    assert decision["phoneNumber"] is None
    record = _record_of(records, decision["decisionId"])
    assert (record["origin"], record["status"]) == ("service", "retry_later")
    assert any(rule.endswith(":us.federal.hours") for rule in record["rules"])
    assert [zone["zone"] for zone in record["zones"]] == ["America/New_York"]
    assert record["next_allowed_at"] == "2026-12-02T13:00:00.000Z"


def _record_of(records: list[dict[str, Any]], decision_id: str) -> dict[str, Any]:
    for _ in range(100):  # written by the audit log's own thread
        for record in list(records):
            if record["id"] == decision_id:
                return record
        threading.Event().wait(0.05)
    raise AssertionError(f"no audit record {decision_id}")


def test_a_listed_number_is_skipped_naming_the_list_and_audited_with_the_decision_id(
    served: tuple[httpx.Client, list[dict[str, Any]]], tmp_path: Path
) -> None:
    http, records = served
    external_id = dc_id()
    number = answer_for(external_id)
    DncList(tmp_path, "internal").add([number], by="test")
    # The list is re-read within a second of a change.
    deadline = 50
    decision: dict[str, Any] = {}
    for _ in range(deadline):
        decision = http.post(
            "/v1/resolve", json={"campaignId": "cmp_a", "externalId": external_id}
        ).json()
        if decision["status"] == "skip":
            break
        threading.Event().wait(0.1)
    assert decision["status"] == "skip"
    assert decision["reason"] == "do_not_call_list"
    assert decision["listName"] == "internal"
    assert decision["retryAfter"] is None
    record = _record_of(records, decision["decisionId"])
    assert record["origin"] == "service"
    assert record["status"] == "skip"
    assert record["reason"] == "do_not_call_list"
    assert record["dnc_list"] == "internal"
    assert number not in str(record)
    assert external_id not in str(record)
