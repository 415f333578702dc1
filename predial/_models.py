"""The data predial passes around: leads in, CRM contacts from adapters, resolutions out."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from ._faults import is_adapter_fault, safe_repr, type_name
from ._phone import mask_phone
from ._redaction import redact
from ._wording import value_problem
from .errors import InvalidLead

__all__ = [
    "ContactState",
    "CrmContact",
    "CrmPhone",
    "Lead",
    "LeadMode",
    "Resolution",
    "Source",
    "parse_lead",
]

LeadMode = Literal["standard", "prefetch", "both"]
Source = Literal["crm", "cache", "stale", "stored"]
ContactState = Literal["active", "archived", "deleted", "merged"]

# The Lupitor API's own shape check for phoneNumber: E.164, "+" and up to 15 digits.
_E164 = re.compile(r"\+[1-9]\d{1,14}")


class Lead(BaseModel):
    """A Lupitor campaign lead, as the Leads API spells it.

    Attributes are snake_case; the API's camelCase names are accepted as aliases and
    `lead.model_dump(by_alias=True, exclude_none=True)` is the API's JSON.

    - standard mode: `phone_number` only; prefetch mode: `external_id` only (the
      number is fetched from the CRM before each call); both: either may serve.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        str_strip_whitespace=True,
        # Validation errors would otherwise quote the phone number they refused.
        hide_input_in_errors=True,
    )

    campaign_id: str = Field(min_length=1, max_length=256)
    phone_number: str | None = None
    external_id: str | None = Field(default=None, max_length=1024)
    metadata: dict[str, JsonValue] | None = None
    scheduled_for: datetime | None = None
    priority: int = Field(default=0, ge=0, le=100)
    # Read-only fields the Leads API adds to the leads it lists (GET /api/v1/leads):
    # accepted so a listed lead resolves as it is, kept for the caller, never used
    # to resolve and never sent back (excluded from `to_api()`).
    id: str | None = Field(default=None, alias="_id", exclude=True)
    status: str | None = Field(default=None, exclude=True)
    attempts: int | None = Field(default=None, ge=0, exclude=True)
    creation_time: float | None = Field(default=None, alias="_creationTime", exclude=True)

    @field_validator("phone_number", "external_id", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: object) -> object:
        # CSV exports and forms send "" for "no value"; the API treats it as absent.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("phone_number")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is not None and not _E164.fullmatch(value):
            # Neutral advice: this reaches library, CLI and HTTP callers alike
            # (library users have predial.normalize; the CLI has --region).
            raise ValueError(
                "phoneNumber must be in E.164 format: + and the country code (e.g. +14155550123)"
            )
        return value

    @field_validator("scheduled_for")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # A naive time is read as UTC: the API's examples are all UTC ("...Z").
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_serializer("scheduled_for")
    def _iso(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        text = value.astimezone(UTC).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")

    @model_validator(mode="after")
    def _identified(self) -> Lead:
        if self.phone_number is None and self.external_id is None:
            raise ValueError("At least one of phoneNumber or externalId is required")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Leads end up in logs through their repr: never with the full number, in
        # phone_number or anywhere in the metadata.
        for name, value in super().__repr_args__():
            if name == "phone_number" and value:
                yield name, mask_phone(value)
            elif name == "metadata" and value:
                yield name, _Shown(redact(repr(value), limit=1000))
            else:
                yield name, value

    @property
    def mode(self) -> LeadMode:
        """`"standard"` (number only), `"prefetch"` (external id only) or `"both"`."""
        if self.external_id is None:
            return "standard"
        if self.phone_number is None:
            return "prefetch"
        return "both"

    def to_api(self) -> dict[str, Any]:
        """The lead as the Leads API's JSON body."""
        return self.model_dump(by_alias=True, exclude_none=True)


def parse_lead(value: object, *, index: int | None = None) -> Lead:
    """`value` as a `Lead`, or `InvalidLead` naming every offending field.

    Takes a `Lead`, the Lupitor lead JSON (a mapping, with or without the API's
    read-only fields), or another pydantic model of a lead (such as a listed
    `StoredLead`). `index` is the lead's position in a batch, for the message.
    Whatever `value` is or does, the answer is a `Lead` or an `InvalidLead`; the
    message shows field names (masked, bounded), never a value.
    """
    if isinstance(value, Lead):
        return value
    try:
        return _parse(value, index)
    except InvalidLead:
        raise
    except Exception as error:  # a mapping or model whose methods raise
        raise InvalidLead(
            [(None, f"could not be read ({type_name(error)})")], index=index
        ) from None


def _parse(value: object, index: int | None) -> Lead:
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, exclude_none=True)
    if not isinstance(value, Mapping):
        raise InvalidLead(
            [
                (
                    None,
                    f"expected the Lupitor lead JSON (an object) or a predial.Lead, "
                    f"not {type_name(value)}",
                )
            ],
            index=index,
        )
    unknown = [key for key in value if key not in _KNOWN_KEYS]
    if len(unknown) > _MOST_UNKNOWN:
        # Not a lead at all: said at once, without a suggestion per key.
        shown = ", ".join(_shown_field(key) for key in unknown[:3])
        raise InvalidLead([(None, f"{len(unknown)} unknown fields ({shown}, ...)")], index=index)
    try:
        return Lead.model_validate(value)
    except ValidationError as error:
        problems = [_problem(item) for item in error.errors(include_url=False)]
        if len(problems) > _MOST_PROBLEMS:
            more = len(problems) - _MOST_PROBLEMS
            problems = [*problems[:_MOST_PROBLEMS], (None, f"and {more} more problems")]
        campaign_id = value.get("campaignId", value.get("campaign_id"))
        external_id = value.get("externalId", value.get("external_id"))
        raise InvalidLead(
            problems,
            index=index,
            campaign_id=campaign_id if isinstance(campaign_id, str) else None,
            external_id=external_id if isinstance(external_id, str) else None,
        ) from None


# A lead has a dozen fields: past these, a message would only grow.
_MOST_UNKNOWN = 20
_MOST_PROBLEMS = 10


def _lead_fields() -> list[str]:
    return [info.alias or name for name, info in Lead.model_fields.items()]


_KNOWN_KEYS = frozenset(_lead_fields()) | frozenset(Lead.model_fields)


def _shown_field(part: object) -> str:
    """A field name from the input, as a message may show it: numbers masked,
    control characters escaped, at most 64 characters (a key may be anything)."""
    return redact(str(part), limit=64)


def _problem(item: ErrorDetails) -> tuple[str | None, str]:
    """One pydantic error as (the field as the API spells it, our message)."""
    location = [_shown_field(part) for part in item["loc"]]
    kind = item["type"]
    if not location:  # the one model-level rule: neither identifier was given
        return "externalId", item["msg"].removeprefix("Value error, ")
    field = ".".join(location)
    if kind == "extra_forbidden" and len(location) == 1:
        close = difflib.get_close_matches(location[0], _lead_fields(), n=1, cutoff=0.6)
        if close:
            return field, f"unknown field; did you mean {close[0]!r}?"
        return field, "unknown field (a lead has " + ", ".join(_lead_fields()) + ")"
    if kind == "missing":
        return field, "required"
    return field, value_problem(item, "json")


@dataclass(frozen=True, slots=True, repr=False)
class CrmPhone:
    """One phone field of a CRM record, raw as the CRM stores it."""

    value: object
    label: str | None = None
    primary: bool = False

    def __repr__(self) -> str:
        # Contacts end up in logs and tracebacks through their repr: masked.
        return (
            f"CrmPhone(value={mask_phone(self.value)!r}, label={_shown(self.label)}, "
            f"primary={_shown(self.primary)})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class CrmContact:
    """What an adapter may return when a record has several phones or flags.

    `state` is `"active"`, `"archived"`, `"deleted"` or `"merged"` (an adapter that
    followed a merge to the surviving record returns its phones with `"merged"`);
    archived and deleted records are not dialled.
    """

    phones: Sequence[CrmPhone] = ()
    do_not_call: bool = False
    state: ContactState = "active"

    def __repr__(self) -> str:
        try:
            phones = ", ".join(_shown(phone) for phone in self.phones)
        except BaseException as error:
            if not is_adapter_fault(error):
                raise
            phones = f"<{type_name(self.phones)}>"
        return (
            f"CrmContact(phones=[{phones}], do_not_call={_shown(self.do_not_call)}, "
            f"state={_shown(self.state)})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class Resolution:
    """The number to dial, and where it came from.

    `source`: `"crm"` fresh from the adapter, `"cache"` a fresh cached CRM answer,
    `"stale"` an expired CRM answer served because the CRM is unavailable,
    `"stored"` the number the lead was imported with. `fallback_reason` says why
    the CRM's number was not used (None when it was, and for standard-mode leads).
    """

    phone_number: str
    source: Source
    campaign_id: str
    external_id: str | None = None
    adapter: str | None = None
    fallback_reason: str | None = None
    elapsed: float = field(default=0.0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        return (
            f"Resolution(phone_number={mask_phone(self.phone_number)!r}, "
            f"source={self.source!r}, campaign_id={self.campaign_id!r}, "
            f"external_id={self.external_id!r}, adapter={self.adapter!r}, "
            f"fallback_reason={self.fallback_reason!r}, elapsed={self.elapsed!r})"
        )


class _Shown:
    """Text shown as it is in a repr (already redacted)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _shown(value: object) -> str:
    """`repr(value)` with numbers masked (adapters fill these in: a phone may be
    anything), or the type's name when that raises."""
    return redact(safe_repr(value), limit=200)
