"""Every lead mode × every adapter outcome gives the documented result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from conftest import VALID_GB_MOBILE, VALID_US, VALID_US_2, Script, make_resolver

import predial
from predial import (
    AdapterAuthError,
    AdapterUnavailable,
    CrmContact,
    CrmPhone,
    Lead,
    RecordNotFound,
    Unresolvable,
)

STORED = VALID_US_2


class Boom(Exception):
    """Something no adapter should raise."""


@dataclass
class Case:
    answer: Any
    # expected for prefetch (no stored number) and for both (a valid stored number):
    prefetch: tuple[str, Any]  # ("number", e164) or ("refused", (reason, retryable))
    both: tuple[str, Any]
    delay: float = 0.0


SEVERAL = CrmContact(
    phones=[
        CrmPhone("not a number", "mobile"),
        CrmPhone("020 7946 0958", "home"),
        CrmPhone("+44 7911 123456", "mobile"),
    ]
)

CASES = {
    "number": Case(VALID_US, ("number", VALID_US), ("number", VALID_US)),
    "none": Case(None, ("refused", ("no_number", False)), ("stored", "no_number")),
    "not_found": Case(
        RecordNotFound("gone"), ("refused", ("not_found", False)), ("stored", "not_found")
    ),
    "unavailable": Case(
        AdapterUnavailable("503"), ("refused", ("unavailable", True)), ("stored", "unavailable")
    ),
    "timeout": Case("slow", ("refused", ("timeout", True)), ("stored", "timeout"), delay=5),
    "auth_error": Case(
        AdapterAuthError("401"), ("refused", ("auth_error", True)), ("stored", "auth_error")
    ),
    "invalid_number": Case(
        "+15555551234", ("refused", ("invalid_number", False)), ("stored", "invalid_number")
    ),
    "several_phones": Case(SEVERAL, ("number", VALID_GB_MOBILE), ("number", VALID_GB_MOBILE)),
    "do_not_call": Case(
        CrmContact(phones=[CrmPhone(VALID_US)], do_not_call=True),
        ("refused", ("do_not_call", False)),
        ("refused", ("do_not_call", False)),
    ),
    "unexpected_exception": Case(
        Boom("bug"), ("refused", ("adapter_error", True)), ("stored", "adapter_error")
    ),
}


def _resolver(case: Case) -> predial.Resolver:
    script = Script(answer=case.answer, delay=case.delay)
    return make_resolver(script, deadline=0.3)


@pytest.mark.parametrize("outcome", CASES)
async def test_prefetch_lead(outcome: str) -> None:
    """A prefetch lead gets the CRM's number or a refusal; there is nothing to fall back to."""
    case = CASES[outcome]
    lead = Lead(campaign_id="cmp", external_id="ext-1")
    async with _resolver(case) as resolver:
        kind, expected = case.prefetch
        if kind == "number":
            resolution = await resolver.resolve(lead)
            assert (resolution.phone_number, resolution.source) == (expected, "crm")
            assert resolution.fallback_reason is None
        else:
            with pytest.raises(Unresolvable) as caught:
                await resolver.resolve(lead)
            assert (caught.value.reason, caught.value.retryable) == expected


@pytest.mark.parametrize("outcome", CASES)
async def test_both_mode_lead(outcome: str) -> None:
    """A both-mode lead falls back to its stored number, except on do-not-call."""
    case = CASES[outcome]
    lead = Lead(campaign_id="cmp", external_id="ext-1", phone_number=STORED)
    async with _resolver(case) as resolver:
        kind, expected = case.both
        if kind == "number":
            resolution = await resolver.resolve(lead)
            assert (resolution.phone_number, resolution.source) == (expected, "crm")
        elif kind == "stored":
            resolution = await resolver.resolve(lead)
            assert (resolution.phone_number, resolution.source) == (STORED, "stored")
            assert resolution.fallback_reason == expected
        else:
            with pytest.raises(Unresolvable) as caught:
                await resolver.resolve(lead)
            assert (caught.value.reason, caught.value.retryable) == expected


@pytest.mark.parametrize("outcome", CASES)
async def test_standard_lead_never_calls_the_crm(outcome: str) -> None:
    """Whatever the CRM would say, a standard lead gets its stored number without a call."""
    case = CASES[outcome]
    script = Script(answer=case.answer, delay=case.delay)
    lead = Lead(campaign_id="cmp", phone_number=STORED)
    async with make_resolver(script, deadline=0.3) as resolver:
        resolution = await resolver.resolve(lead)
    assert (resolution.phone_number, resolution.source) == (STORED, "stored")
    assert resolution.fallback_reason is None
    assert script.calls == []


async def test_standard_lead_with_a_refused_number_is_skipped() -> None:
    """A stored number the policy refuses (premium rate) is never handed out."""
    async with make_resolver() as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(Lead(campaign_id="cmp", phone_number="+19005550199"))
    assert (caught.value.reason, caught.value.retryable) == ("invalid_stored_number", False)


async def test_invalid_stored_number_is_not_a_fallback() -> None:
    """When the CRM has nothing and the stored number is invalid, the lead is refused."""
    script = Script(answer=RecordNotFound())
    lead = Lead(campaign_id="cmp", external_id="x", phone_number="+15555551234")
    async with make_resolver(script) as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(lead)
    assert caught.value.reason == "not_found"


@pytest.mark.parametrize(
    ("phones", "expected"),
    [
        ([CrmPhone(VALID_US, "home"), CrmPhone(VALID_GB_MOBILE, "mobile")], VALID_GB_MOBILE),
        ([CrmPhone(VALID_US, "home"), CrmPhone(VALID_US_2, "work", primary=True)], VALID_US_2),
        ([CrmPhone("+15555551234", "mobile", True), CrmPhone(VALID_US, "fax")], VALID_US),
        ([CrmPhone(VALID_US, "Other"), CrmPhone(VALID_US_2, "Main")], VALID_US_2),
    ],
    ids=["mobile-first", "primary-first", "skip-invalid-primary", "label-case-insensitive"],
)
async def test_picks_primary_then_label_preference(phones: list[CrmPhone], expected: str) -> None:
    """Primary first, then labels in preference order (mobile first), skipping invalid ones."""
    script = Script(answer=CrmContact(phones=phones))
    async with make_resolver(script) as resolver:
        resolution = await resolver.resolve(Lead(campaign_id="cmp", external_id="x"))
    assert resolution.phone_number == expected


async def test_campaign_label_preference_overrides_the_default() -> None:
    """A campaign that prefers work numbers gets them."""
    script = Script(
        answer=CrmContact(phones=[CrmPhone(VALID_GB_MOBILE, "mobile"), CrmPhone(VALID_US, "work")])
    )
    campaign = predial.Campaign(
        "cmp", "scripted", {"script": script}, label_preference=("work", "mobile")
    )
    from conftest import ScriptPlugin

    async with predial.Resolver(
        [campaign], plugins=[ScriptPlugin()], load_entrypoints=False
    ) as resolver:
        resolution = await resolver.resolve(Lead(campaign_id="cmp", external_id="x"))
    assert resolution.phone_number == VALID_US


@pytest.mark.parametrize("state", ["deleted", "archived"])
async def test_deleted_and_archived_records_are_not_dialled(state: str) -> None:
    """A record the CRM deleted or archived is a permanent 'no'."""
    script = Script(answer=CrmContact(phones=[CrmPhone(VALID_US)], state=state))
    async with make_resolver(script) as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(Lead(campaign_id="cmp", external_id="x"))
    assert (caught.value.reason, caught.value.retryable) == (f"record_{state}", False)


async def test_merged_record_with_phones_is_dialled() -> None:
    """An adapter that followed a merge returns the survivor's phones."""
    script = Script(answer=CrmContact(phones=[CrmPhone(VALID_US)], state="merged"))
    async with make_resolver(script) as resolver:
        resolution = await resolver.resolve(Lead(campaign_id="cmp", external_id="x"))
    assert resolution.phone_number == VALID_US


@pytest.mark.parametrize("answer", [42, ["+12024561111"], CrmContact(phones=["+12024561111"])])
async def test_unusable_return_values_are_adapter_errors(answer: object) -> None:
    """An adapter returning the wrong shape is a bug: logged, treated as unavailable."""
    async with make_resolver(Script(answer=answer)) as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(Lead(campaign_id="cmp", external_id="x"))
    assert (caught.value.reason, caught.value.retryable) == ("adapter_error", True)


async def test_unexpected_exception_is_logged_with_the_plugin_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The operator sees which adapter and plugin broke."""
    async with make_resolver(Script(answer=Boom("kaput"))) as resolver:
        with pytest.raises(Unresolvable):
            await resolver.resolve(Lead(campaign_id="cmp", external_id="x"))
    assert "adapter 'scripted'" in caplog.text
    assert "ScriptPlugin" in caplog.text
    assert "Boom" in caplog.text


async def test_unknown_campaign_is_a_permanent_verdict() -> None:
    """A lead of a campaign the resolver does not know: a configuration mistake that
    no retry fixes, named as such, with the campaigns it does know."""
    async with make_resolver() as resolver:
        with pytest.raises(predial.UnknownCampaign) as caught:
            await resolver.resolve(Lead(campaign_id="cmq", external_id="x"))
        stats = resolver.stats()
    refusal = caught.value
    assert isinstance(refusal, Unresolvable)
    assert (refusal.reason, refusal.retryable, refusal.retry_after) == (
        "unknown_campaign",
        False,
        None,
    )
    assert refusal.configured == ["cmp"]
    assert "no campaign 'cmq' is configured; did you mean 'cmp'?" in str(refusal)
    assert stats.refusals["unknown_campaign"] == 1


async def test_accepts_api_json_dicts() -> None:
    """A dialer holding the API's JSON need not build Lead objects."""
    async with make_resolver() as resolver:
        resolution = await resolver.resolve({"campaignId": "cmp", "externalId": "x"})
    assert resolution.phone_number == VALID_US


async def test_sync_adapters_are_supported() -> None:
    """A plain `def fetch_phone` runs in a worker thread."""
    script = Script(answer="(202) 456-1111")
    async with make_resolver(script, adapter="scripted-sync") as resolver:
        resolution = await resolver.resolve(Lead(campaign_id="cmp", external_id="x"))
    assert resolution.phone_number == VALID_US
    assert script.calls == ["x"]


async def test_close_closes_adapters() -> None:
    """`async with` closes adapters through aclose() or close()."""
    script_async, script_sync = Script(), Script()
    async with make_resolver(script_async):
        pass
    async with make_resolver(script_sync, adapter="scripted-sync"):
        pass
    assert script_async.closed
    assert script_sync.closed
