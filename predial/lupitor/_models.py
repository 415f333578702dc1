"""What the Leads API answers, in both documented versions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from .._phone import mask_phone

__all__ = ["BulkCreateResult", "BulkDeleteResult", "CreatedLead", "StoredLead"]


@dataclass(frozen=True, slots=True)
class CreatedLead:
    """A single create: the new lead's id, or `already_present` when the campaign
    had it (a retried create whose first answer was lost, or `exist_ok=True`)."""

    lead_id: str | None
    already_present: bool = False
    #: The "already exists" came after an attempt whose answer was lost: the lead
    #: is most likely the one that attempt created.
    retried: bool = False


@dataclass(frozen=True, slots=True)
class BulkCreateResult:
    """`created`/`skipped` counts and ids; `skipped_identifiers` are the externalIds
    (or phone numbers) the campaign already had. The older API calls them
    `skippedPhones`; both are read into this field."""

    created: int
    skipped: int
    created_ids: tuple[str, ...]
    skipped_identifiers: tuple[str, ...]
    #: An earlier attempt may have been committed with its answer lost: some
    #: "skipped" leads may have been created by that attempt.
    retried: bool = False

    @classmethod
    def from_api(cls, data: dict[str, Any], retried: bool = False) -> BulkCreateResult:
        created_ids = tuple(str(i) for i in data.get("createdIds") or ())
        skipped = data.get("skippedIdentifiers")
        if skipped is None:
            skipped = data.get("skippedPhones") or ()
        skipped_identifiers = tuple(str(i) for i in skipped)
        # The docs' own example says created: 3 for a two-lead request: trust the lists.
        return cls(
            created=len(created_ids) if created_ids else int(data.get("created") or 0),
            skipped=len(skipped_identifiers)
            if skipped_identifiers
            else int(data.get("skipped") or 0),
            created_ids=created_ids,
            skipped_identifiers=skipped_identifiers,
            retried=retried,
        )


@dataclass(frozen=True, slots=True)
class BulkDeleteResult:
    deleted: int
    not_found: int
    deleted_identifiers: tuple[str, ...]
    not_found_identifiers: tuple[str, ...]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> BulkDeleteResult:
        return cls(
            deleted=int(data.get("deleted") or 0),
            not_found=int(data.get("notFound") or 0),
            deleted_identifiers=tuple(str(i) for i in data.get("deletedIdentifiers") or ()),
            not_found_identifiers=tuple(str(i) for i in data.get("notFoundIdentifiers") or ()),
        )


class StoredLead(BaseModel):
    """A lead as `GET /leads` lists it. Lenient: the server's data is what it is."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: str = Field(validation_alias=AliasChoices("_id", "id", "leadId"))
    campaign_id: str | None = Field(default=None, alias="campaignId")
    phone_number: str | None = Field(default=None, alias="phoneNumber")
    external_id: str | None = Field(default=None, alias="externalId")
    metadata: dict[str, Any] | None = None
    status: str | None = None
    scheduled_for: datetime | None = Field(default=None, alias="scheduledFor")
    priority: int | None = None
    attempts: int | None = None
    creation_time: float | None = Field(default=None, alias="_creationTime")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_phone(value) if name == "phone_number" and value else value
