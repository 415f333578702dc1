"""The Lead model speaks the Lupitor Leads API's JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from predial import CrmContact, CrmPhone, Lead, Resolution


def test_accepts_camel_case_and_dumps_the_api_json() -> None:
    """camelCase input round-trips to exactly the API's JSON."""
    body = {
        "campaignId": "k978z8ndfnqjnbxmphvf0wd59h6yrd0a",
        "phoneNumber": "+12024561111",
        "externalId": "CRM_001",
        "metadata": {"name": "Ada", "tags": ["vip"], "score": 3.5},
        "scheduledFor": "2025-10-29T16:30:00.000Z",
        "priority": 80,
    }
    lead = Lead.model_validate(body)
    assert lead.model_dump(by_alias=True, exclude_none=True) == body


def test_accepts_snake_case_names() -> None:
    """Python callers may use the attribute names."""
    lead = Lead(campaign_id="c", external_id="x", priority=5)
    assert (lead.campaign_id, lead.external_id, lead.priority) == ("c", "x", 5)


def test_requires_a_phone_or_an_external_id_with_the_api_message() -> None:
    """The error text is the API's own."""
    with pytest.raises(
        ValidationError, match="At least one of phoneNumber or externalId is required"
    ):
        Lead(campaign_id="c")


def test_blank_strings_count_as_missing() -> None:
    """CSV exports send "" for no value; that is not an identifier."""
    with pytest.raises(ValidationError, match="At least one of"):
        Lead(campaign_id="c", phone_number="", external_id="  ")


@pytest.mark.parametrize(
    ("phone", "external_id", "mode"),
    [("+12024561111", None, "standard"), (None, "x", "prefetch"), ("+12024561111", "x", "both")],
)
def test_mode_follows_the_identifiers(
    phone: str | None, external_id: str | None, mode: str
) -> None:
    """standard: number only; prefetch: external id only; both: both."""
    assert Lead(campaign_id="c", phone_number=phone, external_id=external_id).mode == mode


def test_phone_number_must_be_e164() -> None:
    """The API stores E.164 only; a national format is refused with a hint."""
    with pytest.raises(ValidationError, match=r"E\.164"):
        Lead(campaign_id="c", phone_number="(202) 456-1111")


@pytest.mark.parametrize("priority", [-1, 101])
def test_priority_is_between_0_and_100(priority: int) -> None:
    """The API's documented range."""
    with pytest.raises(ValidationError, match="priority"):
        Lead(campaign_id="c", external_id="x", priority=priority)


def test_priority_defaults_to_zero() -> None:
    """As the API documents."""
    assert Lead(campaign_id="c", external_id="x").priority == 0


def test_naive_schedule_is_read_as_utc() -> None:
    """scheduledFor is stored timezone-aware."""
    lead = Lead(campaign_id="c", external_id="x", scheduled_for=datetime(2025, 1, 2, 3, 4, 5))
    assert lead.scheduled_for == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_offset_schedule_is_sent_as_utc() -> None:
    """Any offset is kept as the same instant and sent as UTC ISO 8601."""
    tz = timezone(timedelta(hours=-5))
    lead = Lead(
        campaign_id="c", external_id="x", scheduled_for=datetime(2025, 1, 2, 3, 0, tzinfo=tz)
    )
    assert lead.to_api()["scheduledFor"] == "2025-01-02T08:00:00.000Z"


def test_unknown_fields_are_refused() -> None:
    """A misspelt field fails loudly instead of vanishing."""
    with pytest.raises(ValidationError, match="phone"):
        Lead.model_validate({"campaignId": "c", "externalId": "x", "phone": "+12024561111"})


def test_leads_are_immutable() -> None:
    """A lead can be shared between coroutines safely."""
    lead = Lead(campaign_id="c", external_id="x")
    with pytest.raises(ValidationError):
        lead.priority = 3


def test_crm_phone_takes_value_label_primary_positionally() -> None:
    """CrmPhone(value, label, primary) as adapters write it."""
    phone = CrmPhone("+12024561111", "mobile", True)
    contact = CrmContact(phones=[phone], do_not_call=False, state="active")
    assert contact.phones[0].primary
    assert contact.phones[0].label == "mobile"


def test_resolution_to_dict() -> None:
    """A resolution serialises for logs and the HTTP service."""
    resolution = Resolution("+12024561111", "crm", "c", "x", "hubspot", None, 0.01)
    assert resolution.to_dict()["source"] == "crm"


def test_lead_repr_masks_the_phone_number() -> None:
    """Leads reach logs through their repr: the number is masked."""
    text = repr(Lead(campaign_id="c", phone_number="+12024561111"))
    assert "+1202***1111" in text
    assert "2024561111" not in text


def test_validation_errors_do_not_quote_the_number() -> None:
    """A refused lead's error names the field, not the number."""
    with pytest.raises(ValidationError) as caught:
        Lead(campaign_id="c", phone_number="12024561111")
    assert "12024561111" not in str(caught.value)
