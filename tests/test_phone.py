"""The phone policy: what people and CRMs store in, E.164 out, or a typed refusal."""

from __future__ import annotations

import pytest

from predial import InvalidPhoneNumber, PhonePolicy, mask_phone, normalize
from predial._phone import REASONS, warm_regions


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(202) 456-1111", "US", "+12024561111"),
        ("202.456.1111", "US", "+12024561111"),
        ("202-456-1111", "US", "+12024561111"),
        ("+1 202 456 1111", None, "+12024561111"),
        ("001 202 456 1111", None, "+12024561111"),
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("07911 123456", "GB", "+447911123456"),
        ("tel:+1-202-456-1111", None, "+12024561111"),
        ("tel:+1-202-456-1111;ext=22", None, "+12024561111"),
        ("+1 (202) 456-1111 ext. 45", None, "+12024561111"),
        ("  +33 6 12 34 56 78  ", None, "+33612345678"),
        ("+49 1512 3456789", None, "+4915123456789"),
    ],
)
def test_normalises_what_crms_store(raw: str, region: str | None, expected: str) -> None:
    """National formats, separators, 00/+ prefixes, tel: URIs and extensions."""
    assert PhonePolicy(default_region=region).normalize(raw) == expected


def test_fictional_number_is_refused_as_not_assigned() -> None:
    """The docs' +15555551234 is not an assigned number, and the message says so."""
    with pytest.raises(InvalidPhoneNumber, match="not an assigned number") as caught:
        PhonePolicy().normalize("+15555551234")
    assert caught.value.reason == "not_assigned"
    assert caught.value.input == "+15555551234"


def test_possible_strictness_accepts_unassigned_numbers_of_the_right_length() -> None:
    """'possible' only checks the length."""
    assert PhonePolicy(strictness="possible").normalize("+15555551234") == "+15555551234"


def test_refusal_is_a_value_error() -> None:
    """Callers that catch ValueError still catch it."""
    with pytest.raises(ValueError, match="does not look like"):
        normalize("call me maybe")


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", None, "empty"),
        ("   ", None, "empty"),
        ("hello", None, "not_a_number"),
        ("(202) 456-1111", None, "missing_region"),
        ("+999 1234 5678", None, "invalid_country_code"),
        ("+1 202", None, "too_short"),
        ("+1 202 456 1111 222 333", None, "too_long"),
        ("1" * 300, None, "too_long_input"),
    ],
)
def test_refusals_carry_a_machine_readable_reason(
    raw: str, region: str | None, reason: str
) -> None:
    """Every refusal says why in `reason`."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        PhonePolicy(default_region=region).normalize(raw)
    assert caught.value.reason == reason
    assert reason in REASONS


@pytest.mark.parametrize("value", [None, 12024561111, ["+12024561111"], {"a": 1}])
def test_non_text_is_refused_not_crashed_on(value: object) -> None:
    """Adapters return odd things; the policy refuses them cleanly."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        PhonePolicy().normalize(value)
    assert caught.value.reason == "not_a_string"


def test_premium_rate_is_refused_by_default() -> None:
    """Premium-rate numbers cost the caller money: refused unless allowed."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        PhonePolicy().normalize("+1 900 555 0199")
    assert caught.value.reason == "type_not_allowed"
    assert PhonePolicy(refused_types=frozenset()).normalize("+1 900 555 0199") == "+19005550199"


def test_allowed_types_restrict_to_mobiles() -> None:
    """A mobile-only campaign refuses a fixed line; FIXED_LINE_OR_MOBILE counts as mobile."""
    mobile_only = PhonePolicy(allowed_types=frozenset({"mobile"}))
    assert mobile_only.normalize("+447911123456") == "+447911123456"
    assert mobile_only.normalize("+12024561111") == "+12024561111"  # US: fixed line or mobile
    with pytest.raises(InvalidPhoneNumber, match="fixed_line") as caught:
        mobile_only.normalize("+442079460958")
    assert caught.value.reason == "type_not_allowed"


def test_allowed_regions() -> None:
    """Numbers outside the allowed regions are refused with the region named."""
    policy = PhonePolicy(allowed_regions=frozenset({"us", "CA"}))
    assert policy.normalize("+12024561111") == "+12024561111"
    with pytest.raises(InvalidPhoneNumber, match="region GB") as caught:
        policy.normalize("+442079460958")
    assert caught.value.reason == "region_not_allowed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default_region": "XX"}, "default_region"),
        ({"strictness": "loose"}, "strictness"),
        ({"allowed_regions": frozenset({"ZZ"})}, "allowed_regions"),
        ({"allowed_types": frozenset({"mobil"})}, "allowed_types"),
    ],
)
def test_bad_policy_settings_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    """A typo in a policy is a clear error naming the setting, not a silent refusal."""
    with pytest.raises(ValueError, match=message):
        PhonePolicy(**kwargs)


def test_refusal_message_masks_the_number() -> None:
    """The message is safe to log."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        PhonePolicy().normalize("+15555551234")
    assert "5555551234" not in str(caught.value)
    assert "+1555***1234" in str(caught.value)


def test_verdicts_are_memoised() -> None:
    """The same input is parsed once; refusals are remembered too."""
    policy = PhonePolicy()
    policy.normalize("+12024561111")
    with pytest.raises(InvalidPhoneNumber):
        policy.normalize("+15555551234")
    assert len(policy._memo) == 2
    first = policy._memo["+15555551234"]
    with pytest.raises(InvalidPhoneNumber) as again:
        policy.normalize("+15555551234")
    assert policy._memo["+15555551234"] is first
    assert again.value.reason == "not_assigned"


def test_memoised_refusals_are_raised_fresh() -> None:
    """Each refusal is a new exception: its traceback does not grow with every raise."""
    policy = PhonePolicy()
    caught = []
    for _ in range(3):
        try:
            policy.normalize("+15555551234")
        except InvalidPhoneNumber as refusal:
            caught.append(refusal)
    assert len({id(refusal) for refusal in caught}) == 3


def test_replaced_policy_does_not_share_verdicts() -> None:
    """A policy copied for another region reads national numbers in that region."""
    from dataclasses import replace

    us = PhonePolicy(default_region="US")
    assert us.normalize("2079460018") == "+12079460018"
    gb = replace(us, default_region="GB")
    assert gb.normalize("2079460018") == "+442079460018"


def test_memo_is_bounded() -> None:
    """Old verdicts are evicted beyond memo_size."""
    policy = PhonePolicy(memo_size=3)
    for suffix in range(10):
        policy.normalize(f"+1202456111{suffix}")
    assert len(policy._memo) == 3


def test_warm_regions_rejects_unknown_codes() -> None:
    """Warming loads metadata, and a typo is caught."""
    warm_regions(["US", "gb"])
    with pytest.raises(ValueError, match="XX"):
        warm_regions(["XX"])


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+12025550123", "+1202***0123"),
        ("+442079460958", "+4420***0958"),
        ("(202) 555-0123", "202***23"),
        ("+3541234567", "+354***67"),
        ("12345", "***45"),
        ("", ""),
        ("abc", "***"),
    ],
)
def test_mask_phone(value: str, masked: str) -> None:
    """Country and area stay readable, the subscriber part does not."""
    assert mask_phone(value) == masked
