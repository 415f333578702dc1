"""Importer rows: column mapping, validation with row and column, the journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from predial import ConfigurationError, PhonePolicy
from predial.lupitor._columns import ColumnMap, Rejection, RowLead
from predial.lupitor._journal import Journal

POLICY = PhonePolicy(default_region="US")


@pytest.mark.parametrize(
    ("header", "field", "column"),
    [
        (["Phone Number", "name"], "phone_number", "Phone Number"),
        (["phone", "CRM ID"], "external_id", "CRM ID"),
        (
            ["phoneNumber", "externalId", "priority", "scheduledFor"],
            "scheduled_for",
            "scheduledFor",
        ),
        (["MOBILE", "Customer_ID"], "external_id", "Customer_ID"),
    ],
)
def test_common_column_names_are_recognised(header: list[str], field: str, column: str) -> None:
    """Case, spaces and underscores do not matter."""
    assert ColumnMap(header).columns[field] == column


def test_explicit_map_wins_and_other_columns_go_to_metadata() -> None:
    """--map picks the column; everything unmapped lands in metadata."""
    columns = ColumnMap(["ref", "tel", "name", "city"], {"externalId": "ref"})
    outcome = columns.lead(
        {"ref": "R1", "tel": "(202) 456-1111", "name": "Ada", "city": ""}, "c", POLICY
    )
    assert isinstance(outcome, RowLead)
    assert outcome.lead.external_id == "R1"
    assert outcome.lead.phone_number == "+12024561111"
    assert outcome.lead.metadata == {"name": "Ada"}


@pytest.mark.parametrize(
    ("explicit", "message"),
    [({"externalid": "ref"}, "unknown field"), ({"externalId": "nope"}, "no column 'nope'")],
)
def test_bad_maps_are_named(explicit: dict[str, str], message: str) -> None:
    """A map to an unknown field or column says which."""
    with pytest.raises(ValueError, match=message):
        ColumnMap(["ref", "phone"], explicit)


def test_a_header_with_no_identifier_is_refused() -> None:
    """Without an id or phone column nothing can be imported: one clear error."""
    with pytest.raises(ValueError, match="--map externalId=COLUMN"):
        ColumnMap(["name", "city"])


@pytest.mark.parametrize(
    ("fields", "column", "reason"),
    [
        ({"id": "", "phone": ""}, None, "At least one of phoneNumber or externalId is required"),
        ({"id": "A", "phone": "+15555551234"}, "phone", "not an assigned number"),
        ({"id": "A", "phone": "", "priority": "500"}, "priority", "whole number from 0 to 100"),
        ({"id": "A", "phone": "", "priority": "soon"}, "priority", "whole number from 0 to 100"),
        ({"id": "A", "phone": "", "priority": "2.5"}, "priority", "whole number from 0 to 100"),
        ({"id": "A", "phone": "", "metadata": "{oops"}, "metadata", "not a JSON object"),
        (
            {"id": "A", "phone": "", "scheduledFor": "tomorrow"},
            "scheduledFor",
            "must be a date and time (ISO 8601, e.g. 2025-03-01T09:30:00Z): input is too short",
        ),
    ],
)
def test_rejections_name_column_and_reason(
    fields: dict[str, str], column: str | None, reason: str
) -> None:
    """A bad row is rejected with the column at fault and why."""
    header = ["id", "phone", "priority", "metadata", "scheduledFor"]
    outcome = ColumnMap(header).lead({**dict.fromkeys(header, ""), **fields}, "c", POLICY)
    assert isinstance(outcome, Rejection)
    assert outcome.column == column
    assert reason in outcome.reason
    assert "Input should" not in outcome.reason  # our words, not pydantic's


def test_rejected_numbers_are_masked() -> None:
    """The reason never holds the full number."""
    outcome = ColumnMap(["id", "phone"]).lead({"id": "A", "phone": "+15555551234"}, "c", POLICY)
    assert isinstance(outcome, Rejection)
    assert "5555551234" not in outcome.reason


def test_other_campaign_rows_are_rejected() -> None:
    """A campaignId column that names another campaign is a rejection, not a silent move."""
    outcome = ColumnMap(["campaignId", "id"]).lead({"campaignId": "other", "id": "A"}, "c", POLICY)
    assert isinstance(outcome, Rejection)
    assert "other" in outcome.reason


def test_journal_refuses_another_import(tmp_path: Path) -> None:
    """A journal is bound to its file and campaign."""
    source = tmp_path / "leads.csv"
    source.write_text("id\nA\n")
    journal = Journal(tmp_path / "j.sqlite", source=source, campaign_id="c")
    journal.record(2, "created", identifier="A")
    journal.close()
    with pytest.raises(ConfigurationError, match="campaign 'c'"):
        Journal(tmp_path / "j.sqlite", source=source, campaign_id="d")
    source.write_text("id\nA\nB\n")
    with pytest.raises(ConfigurationError, match="another version of leads.csv"):
        Journal(tmp_path / "j.sqlite", source=source, campaign_id="c")


def test_journal_statuses_survive_reopening(tmp_path: Path) -> None:
    """What was recorded is read back after a restart."""
    source = tmp_path / "leads.csv"
    source.write_text("id\nA\nB\n")
    journal = Journal(tmp_path / "j.sqlite", source=source, campaign_id="c")
    journal.record(2, "created", identifier="A")
    journal.record(3, "sending", identifier="B")
    journal.flush()
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite", source=source, campaign_id="c")
    codes = reopened.statuses()
    assert reopened.resumed
    assert Journal.is_final(codes[2])
    assert not Journal.is_final(codes[3])
    reopened.close()


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "A", "phone": "", "metadata": {"score": float("nan")}},
        {"id": "A", "phone": "", "scheduledFor": "0001-01-01T00:00:00+01:00"},
    ],
)
def test_rows_that_cannot_be_sent_are_rejected(fields: dict[str, object]) -> None:
    """NaN in metadata or a date that overflows: a row rejection, not a failed batch."""
    header = ["id", "phone", "metadata", "scheduledFor"]
    outcome = ColumnMap(header).lead({**dict.fromkeys(header, ""), **fields}, "c", POLICY)
    assert isinstance(outcome, Rejection)
    assert "cannot be sent" in outcome.reason


def test_headerless_file_error_masks_numbers() -> None:
    """A first row taken as the header is echoed with numbers masked."""
    with pytest.raises(ValueError, match=r"\+1202\*\*\*0143") as caught:
        ColumnMap(["CRM-1", "+12025550143", "Acme"])
    assert "2025550143" not in str(caught.value)


def test_journal_notices_an_edit_of_the_same_size(tmp_path: Path) -> None:
    """A row fixed in place (same size) is a different file for the journal."""
    source = tmp_path / "leads.csv"
    source.write_text("id,phone\nA,+15555551234\n" + "B,\n" * 5000)
    Journal(tmp_path / "j.sqlite", source=source, campaign_id="c").close()
    source.write_text("id,phone\nA,+12024561111\n" + "B,\n" * 5000)
    with pytest.raises(ConfigurationError, match="another version of leads.csv"):
        Journal(tmp_path / "j.sqlite", source=source, campaign_id="c")
