"""From what an adapter returned to one number, or to the reason there is none.

The CRM's answer is raw: `None`, a string, or a `CrmContact` with several phones
and flags. The number picked is the first, in this order, that the campaign's
policy accepts: the primary phone, then phones by label preference (mobile
first by default), then the rest as the CRM listed them.

Only the first `MAX_PHONES` phones of a contact (in the CRM's order) are
considered: a record with thousands of phone fields is a broken record, and
checking each would hold the event loop past the dial's deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Final

from ._models import CrmContact, CrmPhone
from ._phone import PhonePolicy, mask_phone
from ._trace import PhoneVerdict
from .errors import InvalidPhoneNumber

__all__ = [
    "COMPLIANCE_REASONS",
    "DEFAULT_LABEL_PREFERENCE",
    "MAX_PHONES",
    "PERMANENT_REASONS",
    "TRANSIENT_REASONS",
    "Outcome",
    "interpret",
    "order_phones",
]

DEFAULT_LABEL_PREFERENCE: Final[tuple[str, ...]] = ("mobile", "cell", "main", "work", "home")

#: The most phones of one contact the policy looks at (the first, in the CRM's order).
MAX_PHONES: Final = 50
#: How many of the policy's refusals an `invalid_number` detail quotes.
_QUOTED_REFUSALS: Final = 3

#: The CRM answered, and there is nothing to dial: cached briefly, never retried.
PERMANENT_REASONS: Final[dict[str, str]] = {
    "not_found": "the CRM has no record for this external id",
    "no_number": "the CRM record has no phone number",
    "invalid_number": "no phone number on the CRM record passes the phone policy",
    "do_not_call": "the CRM record is flagged do-not-call",
    "record_deleted": "the CRM record is deleted",
    "record_archived": "the CRM record is archived",
    "invalid_stored_number": "the lead's stored number does not pass the phone policy",
    # The lead or the configuration is wrong, not the CRM: no retry fixes these.
    "unknown_campaign": "no campaign with this id is configured",
    "invalid_lead": "the lead itself fails validation (a field is missing or malformed)",
}

#: The CRM could not answer: try again later (stale cache or stored number first).
TRANSIENT_REASONS: Final[dict[str, str]] = {
    "unavailable": "the CRM is unavailable (outage, 5xx or rate limit)",
    "timeout": "the CRM did not answer within the deadline",
    "circuit_open": "recent CRM calls failed; calls are paused briefly",
    "auth_error": "the CRM rejected the adapter's credentials",
    "adapter_error": "the adapter raised an unexpected error (a bug in the adapter)",
    "campaign_misconfigured": "the campaign's adapter could not be set up",
}

#: The compliance gate's refusals of a number about to be dialled (a campaign with
#: `compliance` set), each with whether the dialer may try again. They refuse the lead
#: itself: unlike the CRM's reasons above, none falls back to the stored number.
COMPLIANCE_REASONS: Final[dict[str, tuple[str, bool]]] = {
    "do_not_call_list": ("the number is on a do-not-call list the campaign checks", False),
    "number_outside_ruleset": (
        "the ruleset cannot place the number (outside the countries it covers)",
        False,
    ),
    "outside_calling_window": (
        "the callee's local time is outside the calling window; retry at next_allowed_at",
        True,
    ),
    "call_cap_reached": (
        "the number had its allowed calls in the rolling window; retry when the oldest leaves",
        True,
    ),
    "call_cap_unavailable": (
        "the shared call count (Redis) is unavailable and the caps fail closed",
        True,
    ),
    "dnc_list_unreadable": (
        "a local do-not-call list cannot be read (damaged or unreadable); fails closed",
        True,
    ),
    "dnc_source_unavailable": (
        "an external do-not-call source did not answer and fails closed",
        True,
    ),
}


@dataclass(frozen=True, slots=True, repr=False)
class Outcome:
    """What one CRM lookup came to."""

    phone_number: str | None = None
    reason: str | None = None
    transient: bool = False
    retry_after: float | None = None
    detail: str | None = None
    #: Read from the shared tier's cache (a fresh entry another process fetched),
    #: not fetched from the CRM by this lookup.
    cached: bool = False

    def __repr__(self) -> str:
        number = mask_phone(self.phone_number) if self.phone_number is not None else None
        return (
            f"Outcome(phone_number={number!r}, reason={self.reason!r}, "
            f"transient={self.transient!r}, retry_after={self.retry_after!r}, "
            f"detail={self.detail!r})"
        )

    @classmethod
    def number(cls, phone_number: str) -> Outcome:
        return cls(phone_number=phone_number)

    @classmethod
    def permanent(cls, reason: str, detail: str | None = None) -> Outcome:
        return cls(reason=reason, detail=detail)

    @classmethod
    def failed(
        cls, reason: str, retry_after: float | None = None, detail: str | None = None
    ) -> Outcome:
        return cls(reason=reason, transient=True, retry_after=retry_after, detail=detail)


def _label_rank(label: object, preference: Sequence[str]) -> int:
    if isinstance(label, str):
        try:
            # str's own strip: a subclass's override is the adapter's code, not data.
            return preference.index(str.strip(label).lower())
        except ValueError:
            pass
    return len(preference)


def order_phones(phones: Sequence[CrmPhone], preference: Sequence[str]) -> list[CrmPhone]:
    """Primary first, then by label preference, then in the CRM's own order."""
    for phone in phones:
        if not isinstance(phone, CrmPhone):
            raise TypeError(f"CrmContact.phones must hold CrmPhone, not {type(phone).__name__}")
    ranked = sorted(
        enumerate(phones),
        key=lambda item: (not item[1].primary, _label_rank(item[1].label, preference), item[0]),
    )
    return [phone for _, phone in ranked]


def interpret(
    raw: object,
    policy: PhonePolicy,
    preference: Sequence[str],
    verdicts: list[PhoneVerdict] | None = None,
) -> Outcome:
    """Turn an adapter's return value into an outcome; `TypeError` if it is not one
    of the documented shapes (a bug in the adapter). With `verdicts`, the policy's
    verdict on each phone tried is appended to it."""
    if raw is None:
        return Outcome.permanent("no_number")
    if isinstance(raw, str) and verdicts is None:  # the hot path: one number
        try:
            return Outcome.number(policy.normalize(raw))
        except InvalidPhoneNumber as refusal:
            return Outcome.permanent("invalid_number", str(refusal))
    if isinstance(raw, str):
        raw = CrmContact(phones=(CrmPhone(raw),))
    if not isinstance(raw, CrmContact):
        raise TypeError(
            f"fetch_phone must return None, a str or a CrmContact, not {type(raw).__name__}"
        )
    if raw.do_not_call:
        return Outcome.permanent("do_not_call")
    if raw.state in ("deleted", "archived"):
        return Outcome.permanent(f"record_{raw.state}")
    phones = list(islice(raw.phones, MAX_PHONES))
    if not phones:
        return Outcome.permanent("no_number")
    refusals: list[str] = []
    for phone in order_phones(phones, preference):
        try:
            number = policy.normalize(phone.value)
        except InvalidPhoneNumber as refusal:
            refusals.append(str(refusal))
            if verdicts is not None:
                verdicts.append(
                    PhoneVerdict(
                        phone.value, phone.label, phone.primary, None, refusal.reason, str(refusal)
                    )
                )
            continue
        if verdicts is not None:
            verdicts.append(PhoneVerdict(phone.value, phone.label, phone.primary, number))
        return Outcome.number(number)
    quoted = "; ".join(refusals[:_QUOTED_REFUSALS])
    if len(refusals) > _QUOTED_REFUSALS:
        quoted += f"; and {len(refusals) - _QUOTED_REFUSALS} more"
    return Outcome.permanent("invalid_number", quoted)
