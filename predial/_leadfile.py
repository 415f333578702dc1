"""Leads from a CSV or JSON Lines file, as the Lupitor API spells them.

Columns are the lead's fields, camelCase (`campaignId`, `phoneNumber`, `externalId`,
`scheduledFor`, `priority`, `metadata`) or snake_case. In CSV, `metadata` is a JSON
object and empty cells are absent values. A row that is not a valid lead, or that
cannot be read (a byte invalid in the file's encoding, a NUL byte, a 10 MB field; see
`predial._tabular`), comes back as a `LeadRowError` naming its line and field, and
never stops the others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ._models import Lead
from ._tabular import Row, detect_encoding, read_header, read_rows, table_format
from .errors import InputFileError

__all__ = ["KNOWN_COLUMNS", "LEAD_FIELDS", "LeadRow", "LeadRowError", "read_leads"]

#: Each lead field with the column names accepted for it.
LEAD_FIELDS: dict[str, tuple[str, ...]] = {
    "campaign_id": ("campaignId", "campaign_id"),
    "phone_number": ("phoneNumber", "phone_number"),
    "external_id": ("externalId", "external_id"),
    "metadata": ("metadata",),
    "scheduled_for": ("scheduledFor", "scheduled_for"),
    "priority": ("priority",),
}


@dataclass(frozen=True, slots=True)
class LeadRow:
    line: int
    lead: Lead


@dataclass(frozen=True, slots=True)
class LeadRowError:
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", {self.field}" if self.field else "")
        return f"{where}: {self.message}"


#: Every column name that maps to a lead field; other columns are ignored.
KNOWN_COLUMNS = frozenset(alias for aliases in LEAD_FIELDS.values() for alias in aliases)


def _columns(path: Path, names: list[str], campaign_id: str | None) -> dict[str, str]:
    found = _row_columns(dict.fromkeys(names))
    if "campaign_id" not in found and campaign_id is None:
        raise InputFileError(
            f"{path}: missing column campaignId (columns: {', '.join(names) or 'none'}); "
            "add it or pass a campaign"
        )
    if "phone_number" not in found and "external_id" not in found:
        raise InputFileError(
            f"{path}: needs a phoneNumber or an externalId column "
            f"(columns: {', '.join(names) or 'none'})"
        )
    return found


def _row_columns(fields: dict[str, Any]) -> dict[str, str]:
    columns: dict[str, str] = {}
    for field, aliases in LEAD_FIELDS.items():
        for alias in aliases:
            if alias in fields:
                columns[field] = alias
                break
    return columns


def _lead(row: Row, columns: dict[str, str], campaign_id: str | None) -> LeadRow | LeadRowError:
    if "__error__" in row.fields:
        return LeadRowError(row.line, None, str(row.fields["__error__"]))
    values: dict[str, Any] = {}
    for field, column in columns.items():
        value = row.fields.get(column)
        if isinstance(value, str) and not value.strip():
            continue
        if field == "metadata" and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                return LeadRowError(row.line, column, f"not a JSON object: {error.msg}")
            except ValueError as error:  # a number past the 4300-digit conversion limit
                return LeadRowError(row.line, column, f"not a JSON object: {error}".split(";")[0])
            except RecursionError:
                return LeadRowError(row.line, column, "not a JSON object: nested too deeply")
        if value is not None:
            values[field] = value
    if "campaign_id" not in values and campaign_id is not None:
        values["campaign_id"] = campaign_id
    try:
        return LeadRow(row.line, Lead.model_validate(values))
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        bad_field = str(first["loc"][0]) if first["loc"] else ""
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "recursion_depth_exceeded":
            message = "nested too deeply"
        return LeadRowError(row.line, columns.get(bad_field, bad_field) or None, message)


def read_leads(
    path: str | os.PathLike[str],
    campaign_id: str | None = None,
    *,
    encoding: str | None = None,
) -> Iterator[LeadRow | LeadRowError]:
    """Yield each row of `path` as a `LeadRow` or a `LeadRowError`.

    `campaign_id` fills in rows without one; `encoding` overrides the detection of
    `predial._tabular.detect_encoding`. A file that cannot be read, or that lacks the
    columns to make any lead, raises `InputFileError` before the first row.
    """
    file = Path(path)
    codec = detect_encoding(file, encoding)  # once: the reads below are told
    if table_format(file) == "jsonl":  # each object names its own fields
        for row in read_rows(file, codec):
            yield _lead(row, _row_columns(row.fields), campaign_id)
        return
    names = read_header(file, codec)
    if not names:
        raise InputFileError(f"{file}: is empty")
    columns = _columns(file, names, campaign_id)
    for row in read_rows(file, codec):
        yield _lead(row, columns, campaign_id)
