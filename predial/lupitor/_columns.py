"""From an operator's spreadsheet row to a Lupitor lead, or a rejection saying why.

Columns are matched to lead fields by their common names, ignoring case, spaces,
dashes and underscores (`Phone Number`, `phone_number` and `PhoneNumber` are one
name), or explicitly with `--map field=column`. Every other non-empty column goes
into the lead's `metadata`. Phone numbers are normalised to E.164 with the phone
policy (and `--region` for national formats).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from .._models import Lead
from .._phone import PhonePolicy, mask_phone
from ..errors import InvalidPhoneNumber

__all__ = ["FIELD_ALIASES", "ColumnMap", "Rejection", "RowLead", "normalise_name"]

#: Lead fields and the column names recognised for each (normalised spelling).
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": (
        "externalid",
        "id",
        "crmid",
        "recordid",
        "contactid",
        "leadid",
        "customerid",
        "externalref",
    ),
    "phone_number": (
        "phonenumber",
        "phone",
        "mobile",
        "mobilephone",
        "mobilenumber",
        "cell",
        "cellphone",
        "telephone",
        "tel",
        "number",
    ),
    "priority": ("priority",),
    "scheduled_for": ("scheduledfor", "scheduled", "scheduledat", "calltime", "callat"),
    "metadata": ("metadata",),
    "campaign_id": ("campaignid", "campaign"),
}
_FIELD_NAMES = {
    "externalId": "external_id",
    "external_id": "external_id",
    "phoneNumber": "phone_number",
    "phone_number": "phone_number",
    "phone": "phone_number",
    "priority": "priority",
    "scheduledFor": "scheduled_for",
    "scheduled_for": "scheduled_for",
    "metadata": "metadata",
    "campaignId": "campaign_id",
    "campaign_id": "campaign_id",
}


_DIGITS = re.compile(r"\d{5}")
_NOT_TEXT = "must be text or a number, not a JSON object or array"


def _text(value: Any) -> str | None:
    """A JSON Lines cell that is not a string, as text: a number, true, false; None
    for an object or array, which is no identifier (and whose str() of one nested
    900 deep exceeds the recursion limit)."""
    return None if isinstance(value, dict | list) else str(value)


def _our_words(field: str, kind: str, message: str) -> str:
    """A validation error as the operator needs it, not pydantic's wording
    ("Input should be a valid integer, unable to parse string as an integer")."""
    if kind == "recursion_depth_exceeded":
        return "nested too deeply"
    if field == "priority" and (
        kind.startswith(("int_", "greater_than", "less_than")) or kind == "int_type"
    ):
        return "must be a whole number from 0 to 100"
    if field == "scheduled_for" and kind.startswith(("datetime_", "date_")):
        detail = message.partition(", ")[2]
        return "must be a date and time (ISO 8601, e.g. 2025-03-01T09:30:00Z)" + (
            f": {detail}" if detail else ""
        )
    return message.removeprefix("Value error, ")


def normalise_name(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name).lower()


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a row is not imported: the column at fault (if one) and the reason."""

    column: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class RowLead:
    lead: Lead

    @property
    def identifier(self) -> str:
        """How the server names the lead in `skippedIdentifiers`: externalId, else phone."""
        return self.lead.external_id or self.lead.phone_number or ""


class ColumnMap:
    """Which column holds which lead field, decided once from the header."""

    def __init__(self, header: Sequence[str], explicit: Mapping[str, str] | None = None):
        self.header = list(header)
        self.columns: dict[str, str] = {}
        for field, column in (explicit or {}).items():
            target = _FIELD_NAMES.get(field)
            if target is None:
                known = ", ".join(sorted(k for k in _FIELD_NAMES if "_" not in k))
                raise ValueError(f"--map {field}=...: unknown field; fields are {known}")
            if column not in self.header:
                raise ValueError(
                    f"--map {field}={column}: no column {column!r} (columns: {', '.join(header)})"
                )
            self.columns[target] = column
        by_name = {normalise_name(column): column for column in self.header}
        for field, aliases in FIELD_ALIASES.items():
            if field in self.columns:
                continue
            for alias in aliases:
                if alias in by_name and by_name[alias] not in self.columns.values():
                    self.columns[field] = by_name[alias]
                    break
        if "external_id" not in self.columns and "phone_number" not in self.columns:
            # A file without a header makes its first row the header: mask numbers.
            shown = ", ".join(mask_phone(c) if _DIGITS.search(c) else c for c in self.header)
            raise ValueError(
                "no column for the external id or the phone number "
                f"(columns: {shown or 'none'}); "
                "name one with --map externalId=COLUMN or --map phoneNumber=COLUMN"
            )
        mapped = set(self.columns.values())
        self.metadata_columns = [c for c in self.header if c not in mapped and c]

    def describe(self) -> str:
        parts = [f"{field} <- {column!r}" for field, column in self.columns.items()]
        if self.metadata_columns:
            parts.append(f"metadata <- {', '.join(map(repr, self.metadata_columns))}")
        return "; ".join(parts)

    def lead(
        self, fields: Mapping[str, Any], campaign_id: str, policy: PhonePolicy
    ) -> RowLead | Rejection:
        """The row as a lead, or why it cannot be one."""
        if "__error__" in fields:
            return Rejection(None, str(fields["__error__"]))
        if "__extra__" in fields:
            return Rejection(None, "more values than the header has columns (a stray delimiter?)")
        values: dict[str, Any] = {"campaign_id": campaign_id}
        columns = self.columns

        def cell(field: str) -> Any:
            column = columns.get(field)
            value = fields.get(column) if column is not None else None
            if isinstance(value, str):
                value = value.strip()
                return value or None
            return value

        row_campaign = cell("campaign_id")
        if row_campaign is not None and row_campaign != campaign_id:
            text = _text(row_campaign)
            if text is None:
                return Rejection(columns["campaign_id"], _NOT_TEXT)
            if text != campaign_id:
                return Rejection(
                    columns["campaign_id"],
                    f"belongs to campaign {row_campaign!r}, not {campaign_id!r}",
                )
        phone = cell("phone_number")
        if phone is not None:
            phone = _text(phone)  # a number in a JSON Lines row, as its text
            if phone is None:
                return Rejection(columns["phone_number"], _NOT_TEXT)
            try:
                values["phone_number"] = policy.normalize(phone)
            except InvalidPhoneNumber as refusal:
                reason = str(refusal)
                if refusal.reason == "missing_region":
                    # The importer's own knob (`--region`, `region=`), not the
                    # resolver's campaign setting.
                    reason += " (give the number with its + country code, or a --region)"
                return Rejection(columns["phone_number"], reason)
        external_id = cell("external_id")
        if external_id is not None:
            external_id = _text(external_id)  # a number in a JSON Lines row, as its text
            if external_id is None:
                return Rejection(columns["external_id"], _NOT_TEXT)
            values["external_id"] = external_id
        for field in ("priority", "scheduled_for"):
            value = cell(field)
            if value is not None:
                values[field] = value
        metadata: dict[str, Any] = {}
        raw_metadata = cell("metadata")
        if raw_metadata is not None:
            if isinstance(raw_metadata, str):
                try:
                    raw_metadata = json.loads(raw_metadata)
                except json.JSONDecodeError as error:
                    return Rejection(columns["metadata"], f"not a JSON object: {error.msg}")
                except ValueError as error:  # a number past the 4300-digit limit
                    reason = str(error).split(";")[0]
                    return Rejection(columns["metadata"], f"not a JSON object: {reason}")
                except RecursionError:
                    return Rejection(columns["metadata"], "not a JSON object: nested too deeply")
            if not isinstance(raw_metadata, dict):
                return Rejection(columns["metadata"], "must be a JSON object")
            metadata.update(raw_metadata)
        for column in self.metadata_columns:
            value = fields.get(column)
            if value is not None and value != "":
                metadata[column] = value
        if metadata:
            values["metadata"] = metadata
        try:
            lead = Lead.model_validate(values)
            # What the request will carry must serialise: NaN in metadata or a date
            # out of range would otherwise fail the whole batch at send time. Only the
            # fields that can fail are checked (a full dump costs ~15 µs a row).
            if lead.metadata:
                json.dumps(lead.metadata, allow_nan=False)
            if lead.scheduled_for is not None:
                lead.to_api()
            return RowLead(lead)
        except ValidationError as error:
            first = error.errors(include_url=False, include_input=False)[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            message = _our_words(field, first["type"], first["msg"])
            return Rejection(columns.get(field), message)
        except RecursionError:
            return Rejection(None, "cannot be sent as JSON: nested too deeply")
        except (ValueError, OverflowError, PydanticSerializationError) as error:
            return Rejection(None, f"cannot be sent as JSON: {type(error).__name__}")
