"""The wire contract of `predial serve`: what a dialer sends and what it gets back.

A request is a lead exactly as the Lupitor Leads API spells it; fields the dialer's
own API adds (`_id`, `status`, `attempts`, `_creationTime`, …) are accepted and
ignored. The answer is always a `Decision` in the body — `ok`, `skip` or
`retry_later` — because platforms treat HTTP status codes differently; status codes
are for the transport and admission only.
"""

from __future__ import annotations

import itertools
import os
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .._models import Lead, Resolution, parse_lead
from .._redaction import redact
from ..errors import InvalidLead, Unresolvable

__all__ = [
    "LEAD_FIELDS",
    "BadLeadBody",
    "BatchItemError",
    "BatchRequest",
    "BatchResponse",
    "Decision",
    "ErrorBody",
    "ErrorDetail",
    "decision_for",
    "lead_from_json",
    "new_decision_id",
]

Status = Literal["ok", "skip", "retry_later"]

# The Lupitor lead fields a decision depends on; every other field is ignored.
LEAD_FIELDS = ("campaignId", "externalId", "phoneNumber", "metadata", "scheduledFor", "priority")


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Decision(_Camel):
    """The predial function's answer for one lead.

    `ok`: dial `phoneNumber` (E.164), which came from `source`; `reason` says why it
    is not the CRM's own number when it is not. `skip`: do not dial this lead.
    `retry_later`: try again, no sooner than `retryAfter` seconds when set.
    """

    status: Status
    phone_number: str | None = Field(default=None, description="E.164; set when status is ok")
    source: Literal["crm", "cache", "stale", "stored"] | None = None
    reason: str | None = None
    retry_after: float | None = None
    campaign_id: str
    external_id: str | None = None
    decision_id: str = Field(description="Unique per answer; also in the service's log line")
    detail: str | None = Field(default=None, description="More on a refusal, for humans")
    next_allowed_at: str | None = Field(
        default=None,
        description=(
            "outside_calling_window: when the callee's next calling window opens "
            "(ISO 8601, UTC); retryAfter is the seconds until then"
        ),
    )
    list_name: str | None = Field(
        default=None,
        description="do_not_call_list: the do-not-call list or source holding the number",
    )


class ErrorDetail(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """A request the service did not resolve: malformed, unauthorised or not admitted."""

    model_config = ConfigDict(frozen=True)

    error: ErrorDetail


class BatchItemError(BaseModel):
    """One item of a batch that could not be resolved; the others are unaffected."""

    model_config = ConfigDict(frozen=True)

    index: int
    error: ErrorDetail


class BatchRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    leads: list[dict[str, Any]] = Field(description="Leads as Lupitor spells them")


class BatchResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    results: list[Decision | BatchItemError] = Field(description="In input order")


class BadLeadBody(ValueError):
    """A request body that is not a lead; `field` names the offending field."""

    def __init__(self, message: str, field: str | None, code: str = "invalid_lead") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code

    def detail(self) -> ErrorDetail:
        return ErrorDetail(code=self.code, message=self.message, field=self.field)


# Decision ids: a random prefix per process and a counter, scrambled (an odd
# multiplier and a random mask, a bijection on 64 bits: never a repeat) so an id
# does not tell a caller how many answers the process gave. Unique across workers
# and restarts like a uuid4 (96 random bits of prefix), at a fraction of its cost
# on the hot path; not secret, as they are written to logs anyway.
_MULTIPLIER = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_PROCESS_PREFIX = ""
_SCRAMBLE = 0
_COUNTER = itertools.count()


def new_decision_id() -> str:
    """`dec_` + 24 hex digits of this process's prefix + 16 of a scrambled counter."""
    return f"dec_{_PROCESS_PREFIX}{((next(_COUNTER) * _MULTIPLIER) & _MASK64) ^ _SCRAMBLE:016x}"


def reset_decision_prefix() -> None:
    """A fresh prefix and scramble (at import, and in a forked process: workers must
    not share them)."""
    global _PROCESS_PREFIX, _SCRAMBLE, _COUNTER
    _PROCESS_PREFIX = secrets.token_hex(12)
    _SCRAMBLE = secrets.randbits(64)
    _COUNTER = itertools.count(secrets.randbits(32))


reset_decision_prefix()


def lead_from_json(body: object) -> Lead:
    """The `Lead` in a decoded JSON body, or `BadLeadBody` naming the field."""
    if isinstance(body, BadLeadBody):  # a shim already knows this item is not a lead
        raise body
    if not isinstance(body, dict):
        raise BadLeadBody("the body must be a JSON object: a lead as Lupitor spells it", None)
    picked = {name: body[name] for name in LEAD_FIELDS if name in body}
    try:
        return parse_lead(picked)
    except InvalidLead as error:
        field, message = error.problems[0]
        top = field.split(".")[0] if field else None
        raise BadLeadBody(f"{field}: {message}" if field else message, top) from None


def decision_for(
    outcome: Resolution | Unresolvable, lead: Lead, decision_id: str
) -> dict[str, Any]:
    """The JSON of the `Decision` for a resolution or a refusal (camelCase keys)."""
    if isinstance(outcome, Resolution):
        return {
            "status": "ok",
            "phoneNumber": outcome.phone_number,
            "source": outcome.source,
            "reason": outcome.fallback_reason,
            "retryAfter": None,
            "campaignId": lead.campaign_id,
            "externalId": lead.external_id,
            "decisionId": decision_id,
            "detail": None,
            "nextAllowedAt": None,
            "listName": None,
        }
    return {
        "status": "retry_later" if outcome.retryable else "skip",
        "phoneNumber": None,
        "source": None,
        "reason": outcome.reason,
        "retryAfter": outcome.retry_after if outcome.retryable else None,
        "campaignId": lead.campaign_id,
        "externalId": lead.external_id,
        "decisionId": decision_id,
        "detail": redact(outcome.detail, limit=300) if outcome.detail else None,
        "nextAllowedAt": _utc_text(outcome.next_allowed_at),
        "listName": outcome.list_name,
    }


def _utc_text(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # Rounded up to the second: retrying at the time given is never too early.
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_json(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


# -- the platform shims' shapes (documentation and schema; the shims read leniently) --


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class VapiFunction(_Open):
    name: str | None = None
    arguments: dict[str, Any] | str = Field(description="A lead; a JSON string is read too")


class VapiToolCall(_Open):
    id: str
    type: str | None = None
    function: VapiFunction


class VapiMessage(_Open):
    type: str | None = None
    tool_call_list: list[VapiToolCall] = Field(alias="toolCallList")


class VapiToolRequest(_Open):
    message: VapiMessage


class VapiToolResult(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    tool_call_id: str
    result: str | None = Field(default=None, description="The Decision as one line of JSON")
    error: str | None = Field(default=None, description="Why there is no decision (JSON)")


class VapiToolResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    results: list[VapiToolResult]


class ConnectProfile(_Open):
    ProfileId: str
    CustomerData: str | dict[str, Any] | None = Field(
        default=None, description="JSON of campaignId, externalId, phoneNumber"
    )
    IdempotencyToken: str | None = None


class ConnectItems(_Open):
    CustomerProfiles: list[ConnectProfile]


class ConnectRequest(_Open):
    InvocationMetadata: dict[str, Any] | None = None
    Items: ConnectItems


class ConnectResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    Id: str
    ResultData: Decision | None = None
    IsFailure: bool
    ErrorCode: str | None = None
    ErrorMessage: str | None = None


class ConnectResultItems(BaseModel):
    model_config = ConfigDict(frozen=True)

    CustomerProfiles: list[ConnectResult]


class ConnectResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    Items: ConnectResultItems


os.register_at_fork(after_in_child=reset_decision_prefix)
