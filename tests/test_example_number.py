"""predial's example number survives masking; every other number is masked as before."""

from __future__ import annotations

import pytest

from predial import InvalidPhoneNumber
from predial._phone import EXAMPLE_NUMBER, PhonePolicy, mask_phone
from predial._redaction import redact


def test_the_example_is_fictional() -> None:
    """NANP 555-0100..0199 is reserved for fiction: nobody's number, so nothing to mask."""
    assert EXAMPLE_NUMBER.startswith("+1")
    assert EXAMPLE_NUMBER[5:8] == "555"
    assert 100 <= int(EXAMPLE_NUMBER[8:]) <= 199


@pytest.mark.parametrize("written", [EXAMPLE_NUMBER, "+1 415 555 0123", "+1 (415) 555-0123"])
def test_the_example_is_kept_whole(written: str) -> None:
    assert mask_phone(written) == written
    message = f"phoneNumber must be in E.164 format (e.g. {written}); call +12024561111"
    assert redact(message) == (
        f"phoneNumber must be in E.164 format (e.g. {written}); call +1202***1111"
    )


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+14155550199", "+1415***0199"),  # fictional too, but not predial's example
        ("+12025550123", "+1202***0123"),
        ("4155550123", "415***23"),  # the example's digits without its country code
        ("+141555501234", "+1415***1234"),
    ],
)
def test_other_numbers_are_still_masked(number: str, masked: str) -> None:
    assert mask_phone(number) == masked
    assert redact(f"number {number} here") == f"number {masked} here"


def test_policy_messages_name_no_library_function() -> None:
    """An operator reads these (import rejects, check): no `phonenumbers.is_valid_number`."""
    with pytest.raises(InvalidPhoneNumber) as refused:
        PhonePolicy().normalize("+15555551234")
    assert str(refused.value) == (
        "+1555***1234: the number is not an assigned number in its country's numbering plan"
    )
