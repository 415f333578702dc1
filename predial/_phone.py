"""E.164 normalisation and the number policy.

CRMs and spreadsheets store numbers the way people type them: national formats,
spaces, dots, dashes, parentheses, `00` or `+` prefixes, `tel:` URIs, extensions.
`PhonePolicy.normalize` turns any of those into E.164 or raises
`InvalidPhoneNumber` with a machine-readable `reason`.

The default strictness is `"valid"` (`phonenumbers.is_valid_number`: the number is
assigned in its country's numbering plan), so a fictional number such as
`+15555551234` is refused; `"possible"` only checks the length. Premium-rate and
shared-cost numbers are refused by default.

A full parse costs ~26-70 µs and a dialer sees the same numbers again and again,
so each policy memoises its verdicts (a dict hit is ~0.02 µs). The first number of
a region loads that region's metadata (1-3 ms); `warm_regions` pays that at start-up.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

from ._faults import safe_text
from .errors import InvalidPhoneNumber

__all__ = [
    "DEFAULT_REFUSED_TYPES",
    "EXAMPLE_NUMBER",
    "MAX_INPUT_LENGTH",
    "NUMBER_TYPES",
    "REASONS",
    "PhonePolicy",
    "Strictness",
    "mask_phone",
    "normalize",
    "warm_regions",
]

Strictness = Literal["valid", "possible"]

#: Number types by the names used in configuration.
NUMBER_TYPES: Final[dict[str, int]] = {
    "fixed_line": PhoneNumberType.FIXED_LINE,
    "mobile": PhoneNumberType.MOBILE,
    "fixed_line_or_mobile": PhoneNumberType.FIXED_LINE_OR_MOBILE,
    "toll_free": PhoneNumberType.TOLL_FREE,
    "premium_rate": PhoneNumberType.PREMIUM_RATE,
    "shared_cost": PhoneNumberType.SHARED_COST,
    "voip": PhoneNumberType.VOIP,
    "personal_number": PhoneNumberType.PERSONAL_NUMBER,
    "pager": PhoneNumberType.PAGER,
    "uan": PhoneNumberType.UAN,
    "voicemail": PhoneNumberType.VOICEMAIL,
    "unknown": PhoneNumberType.UNKNOWN,
}
_TYPE_NAMES: Final[dict[int, str]] = {value: name for name, value in NUMBER_TYPES.items()}

DEFAULT_REFUSED_TYPES: Final[frozenset[str]] = frozenset({"premium_rate", "shared_cost"})

#: Every `InvalidPhoneNumber.reason` this module raises, with what it means.
REASONS: Final[dict[str, str]] = {
    "not_a_string": "the value is not text",
    "empty": "the value is empty",
    "too_long_input": "the value is longer than any phone number could be",
    "not_a_number": "the value does not look like a phone number",
    "missing_region": "a national number needs a default region to be read",
    "invalid_country_code": "the country calling code does not exist",
    "too_short": "too few digits for its country",
    "too_long": "too many digits for its country",
    "invalid_length": "the length is impossible for its country",
    "not_assigned": "the number is not an assigned number in its country's numbering plan",
    "region_not_allowed": "the number's region is not in the policy's allowed regions",
    "type_not_allowed": "the number's type (premium-rate, shared-cost...) is refused by the policy",
}

_POSSIBILITY_REASONS: Final[dict[int, str]] = {
    ValidationResult.INVALID_COUNTRY_CODE: "invalid_country_code",
    ValidationResult.TOO_SHORT: "too_short",
    ValidationResult.TOO_LONG: "too_long",
    ValidationResult.INVALID_LENGTH: "invalid_length",
}

#: The number predial's messages give as an example (`e.g. +14155550123`). It is in
#: the North American 555-0100 to 555-0199 range, reserved for fiction: nobody can be
#: reached at it, so masking has nothing to protect and leaves it whole (`mask_phone`,
#: `predial._redaction.redact`), and an example in a masked message stays readable.
#: Only this number: other fictional numbers stand for real ones in tests and demos.
EXAMPLE_NUMBER: Final = "+14155550123"
_EXAMPLE_DIGITS: Final = EXAMPLE_NUMBER[1:]

#: The longest input the policy reads (whitespace and an extension included):
#: anything longer is not a phone number, and is refused before parsing.
MAX_INPUT_LENGTH: Final = 250
_DIGIT = re.compile(r"\d")


def mask_phone(value: object) -> str:
    """Mask a phone number for logs: `+12025550123` -> `+1202***0123`.

    Shows at most half the digits: the first four (country and area) and the last
    four of numbers of 11 digits or more, the first three and last two of 9-10
    digits, the last two of anything shorter. `EXAMPLE_NUMBER`, nobody's number, is
    shown whole. Never raises.
    """
    if type(value) is str and value[:1] == "+" and value[1:].isdigit() and value.isascii():
        # E.164, as every number predial hands out is: no scan needed (the hot path
        # of the service's access line).
        text, digits = value, value[1:]
    else:
        text = safe_text(value)  # an object whose text raises shows no digits: "***"
        digits = "".join(_DIGIT.findall(text))
    if not digits:
        return "***" if text else ""
    if digits == _EXAMPLE_DIGITS:
        return text
    plus = "+" if text.lstrip().startswith("+") else ""
    if len(digits) >= 11:
        return f"{plus}{digits[:4]}***{digits[-4:]}"
    if len(digits) >= 9:
        return f"{plus}{digits[:3]}***{digits[-2:]}"
    return f"{plus}***{digits[-2:]}"


def _refuse(reason: str, value: object, policy_hint: str = "") -> InvalidPhoneNumber:
    shown = mask_phone(value) if isinstance(value, str) else type(value).__name__
    message = f"{shown!s}: {REASONS[reason]}"
    if policy_hint:
        message = f"{message} ({policy_hint})"
    return InvalidPhoneNumber(reason, value, message)


@dataclass(frozen=True, slots=True)
class PhonePolicy:
    """What counts as a dialable number, and how national formats are read.

    - `default_region`: ISO 3166 code (`"US"`, `"GB"`) for numbers without a
      country code. Without it only international formats are accepted.
    - `strictness`: `"valid"` (assigned in the numbering plan) or `"possible"`
      (plausible length only).
    - `allowed_regions`: if set, only numbers of these regions pass.
    - `allowed_types`: if set, only these number types pass (`"mobile"`,
      `"fixed_line"`, ...; `"fixed_line_or_mobile"` counts as both).
    - `refused_types`: types that never pass; premium-rate and shared-cost by default.
    """

    default_region: str | None = None
    strictness: Strictness = "valid"
    allowed_regions: frozenset[str] | None = None
    allowed_types: frozenset[str] | None = None
    refused_types: frozenset[str] = DEFAULT_REFUSED_TYPES
    memo_size: int = 65_536
    # init=False: `dataclasses.replace` must give the new policy an empty memo, not
    # share verdicts made under another region. A refusal is memoised as its
    # (reason, message) and raised anew each time: re-raising one exception object
    # would grow its traceback on every raise.
    _memo: OrderedDict[str, str | tuple[str, str]] = field(
        init=False, compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_memo", OrderedDict())
        if self.strictness not in ("valid", "possible"):
            raise ValueError(f"strictness must be 'valid' or 'possible', not {self.strictness!r}")
        if self.default_region is not None:
            region = self.default_region.upper()
            if region not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"default_region {self.default_region!r} is not a known region")
            object.__setattr__(self, "default_region", region)
        if self.allowed_regions is not None:
            regions = frozenset(r.upper() for r in self.allowed_regions)
            unknown = sorted(regions - phonenumbers.SUPPORTED_REGIONS)
            if unknown:
                raise ValueError(f"allowed_regions has unknown regions: {', '.join(unknown)}")
            object.__setattr__(self, "allowed_regions", regions)
        for name in ("allowed_types", "refused_types"):
            types = getattr(self, name)
            if types is None:
                continue
            types = frozenset(types)
            unknown = sorted(types - NUMBER_TYPES.keys())
            if unknown:
                raise ValueError(
                    f"{name} has unknown number types: {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(NUMBER_TYPES))}"
                )
            object.__setattr__(self, name, types)

    def normalize(self, value: object) -> str:
        """Return `value` as E.164 (`+14155550123`) or raise `InvalidPhoneNumber`."""
        if type(value) is not str:
            if not isinstance(value, str):
                raise _refuse("not_a_string", value)
            # An exact copy of a str subclass's data: its own __hash__, __eq__ or
            # strip() could otherwise make the memo hand one number's verdict to
            # another, or raise from inside the policy.
            value = str.__str__(value)
        if len(value) > MAX_INPUT_LENGTH:
            # Refused before parsing and never memoised: the memo would keep a
            # megabyte-long "number" alive as a key.
            raise _refuse("too_long_input", value)
        try:
            verdict = self._memo[value]
        except KeyError:
            verdict = self._memo_miss(value)
        if isinstance(verdict, str):
            return verdict
        raise InvalidPhoneNumber(verdict[0], value, verdict[1])

    def accepts(self, value: object) -> bool:
        """True when `normalize(value)` would succeed."""
        try:
            self.normalize(value)
        except InvalidPhoneNumber:
            return False
        return True

    def _memo_miss(self, value: str) -> str | tuple[str, str]:
        try:
            verdict: str | tuple[str, str] = self._check(value)
        except InvalidPhoneNumber as refusal:
            verdict = (refusal.reason, str(refusal))
        memo = self._memo
        memo[value] = verdict
        if len(memo) > self.memo_size:
            memo.popitem(last=False)
        return verdict

    def _check(self, value: str) -> str:
        text = value.strip()
        if not text:
            raise _refuse("empty", value)
        number = self._parse(text, value)
        possibility = phonenumbers.is_possible_number_with_reason(number)
        if possibility != ValidationResult.IS_POSSIBLE:
            # IS_POSSIBLE_LOCAL_ONLY is dialable only inside its own area: never a
            # complete number for a campaign to dial.
            raise _refuse(_POSSIBILITY_REASONS.get(possibility, "too_short"), value)
        # One number_type() serves both the validity and the type checks:
        # is_valid_number(n) is exactly number_type(n) != UNKNOWN, and each of the
        # two calls costs a region look-up (the bulk of a parse for +1 numbers).
        kind = phonenumbers.number_type(number)
        if self.strictness == "valid" and kind == PhoneNumberType.UNKNOWN:
            raise _refuse("not_assigned", value)
        if self.allowed_regions is not None:
            region = phonenumbers.region_code_for_number(number)
            if region not in self.allowed_regions:
                allowed = ", ".join(sorted(self.allowed_regions))
                raise _refuse("region_not_allowed", value, f"region {region}; allowed: {allowed}")
        self._check_type(kind, value)
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    def _parse(self, text: str, value: str) -> phonenumbers.PhoneNumber:
        number: phonenumbers.PhoneNumber | None = None
        error_type: int | None = None
        try:
            number = phonenumbers.parse(text, self.default_region)
        except NumberParseException as error:
            error_type = error.error_type
        # "00" is the international prefix in most of the world but not in every
        # default region's plan (the US dials 011): failing that, read it as "+".
        if text.startswith("00") and (number is None or not phonenumbers.is_valid_number(number)):
            try:
                international = phonenumbers.parse("+" + text[2:], None)
            except NumberParseException:
                pass  # the first reading (or its error) stands
            else:
                if number is None or phonenumbers.is_valid_number(international):
                    return international
        if number is not None:
            return number
        if error_type == NumberParseException.INVALID_COUNTRY_CODE:
            if self.default_region is None and not text.removeprefix("tel:").startswith("+"):
                raise _refuse("missing_region", value)
            raise _refuse("invalid_country_code", value)
        if error_type == NumberParseException.TOO_SHORT_NSN:
            raise _refuse("too_short", value)
        if error_type == NumberParseException.TOO_LONG:
            raise _refuse("too_long", value)
        raise _refuse("not_a_number", value)

    def _check_type(self, number_type: int, value: str) -> None:
        if not self.refused_types and self.allowed_types is None:
            return
        kind = _TYPE_NAMES.get(number_type, "unknown")
        kinds = {kind}
        if kind == "fixed_line_or_mobile":
            kinds |= {"fixed_line", "mobile"}
        if kinds & self.refused_types:
            raise _refuse("type_not_allowed", value, f"{kind} numbers are refused")
        if self.allowed_types is not None and not kinds & self.allowed_types:
            allowed = ", ".join(sorted(self.allowed_types))
            raise _refuse("type_not_allowed", value, f"{kind}; allowed: {allowed}")


_DEFAULT_POLICY = PhonePolicy()


def normalize(value: object, default_region: str | None = None) -> str:
    """Normalise `value` to E.164 with the default policy (and `default_region`)."""
    policy = _DEFAULT_POLICY if default_region is None else _policy_for_region(default_region)
    return policy.normalize(value)


_REGION_POLICIES: dict[str, PhonePolicy] = {}


def _policy_for_region(region: str) -> PhonePolicy:
    try:
        return _REGION_POLICIES[region]
    except KeyError:
        policy = _REGION_POLICIES[region] = PhonePolicy(default_region=region)
        return policy


def warm_regions(regions: Iterable[str]) -> None:
    """Load the numbering-plan metadata of `regions` now rather than on the first call.

    The first number of a region costs 1-3 ms to parse while its metadata loads; a
    dialer process calls this at start-up with the regions it dials.
    """
    for region in regions:
        code = region.upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {region!r}")
        example = phonenumbers.example_number(code)
        if example is not None:
            phonenumbers.is_valid_number(example)
            phonenumbers.number_type(example)
