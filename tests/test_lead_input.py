"""Leads as dialers hold them: the Lupitor API's listed shape, malformed leads in a
batch, and leads of campaigns the resolver does not have."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import VALID_US, Script, make_resolver
from hypothesis import given, settings
from hypothesis import strategies as st

import predial
from predial import InvalidLead, Lead, Resolution, Unresolvable
from predial.lupitor._models import StoredLead

# A lead exactly as GET /api/v1/leads lists it (the reference's documented fields).
LISTED = {
    "_id": "jh7abc123xyz",
    "campaignId": "cmp",
    "phoneNumber": "+12025550123",
    "externalId": "C-1",
    "metadata": {"firstName": "Ada"},
    "status": "attempting",
    "scheduledFor": "2026-12-01T10:00:00.000Z",
    "priority": 5,
    "attempts": 2,
    "_creationTime": 1703520000000,
}


async def test_a_lead_as_the_api_lists_it_resolves() -> None:
    async with make_resolver() as resolver:
        resolution = await resolver.resolve(LISTED)
    assert (resolution.phone_number, resolution.source) == (VALID_US, "crm")


def test_the_api_s_read_only_fields_are_kept_and_never_sent_back() -> None:
    lead = predial.parse_lead(LISTED)
    assert (lead.id, lead.status, lead.attempts, lead.creation_time) == (
        "jh7abc123xyz",
        "attempting",
        2,
        1703520000000.0,
    )
    assert set(lead.to_api()) == {
        "campaignId",
        "phoneNumber",
        "externalId",
        "metadata",
        "scheduledFor",
        "priority",
    }


async def test_a_listed_stored_lead_resolves_as_it_is() -> None:
    stored = StoredLead.model_validate(LISTED)
    async with make_resolver() as resolver:
        resolution = await resolver.resolve(stored)  # type: ignore[arg-type]
    assert resolution.phone_number == VALID_US


async def test_a_typo_in_a_field_predial_uses_is_still_refused_with_a_suggestion() -> None:
    async with make_resolver() as resolver:
        with pytest.raises(InvalidLead) as caught:
            await resolver.resolve({"campaignId": "cmp", "externalID": "C-1"})
    invalid = caught.value
    assert isinstance(invalid, Unresolvable)
    assert isinstance(invalid, ValueError)
    assert (invalid.reason, invalid.retryable, invalid.index) == ("invalid_lead", False, None)
    assert "lead.externalID: unknown field; did you mean 'externalId'?" in str(invalid)
    assert invalid.field == "externalID"


async def test_a_malformed_lead_names_its_field_and_never_quotes_the_number() -> None:
    async with make_resolver() as resolver:
        with pytest.raises(InvalidLead) as caught:
            await resolver.resolve({"campaignId": "cmp", "phoneNumber": "202 555 0123 x9"})
    assert caught.value.field == "phoneNumber"
    assert "E.164" in str(caught.value)
    assert "555 0123" not in str(caught.value)


async def test_something_that_is_not_a_lead_is_an_invalid_lead() -> None:
    async with make_resolver() as resolver:
        with pytest.raises(InvalidLead, match="not list"):
            await resolver.resolve(["cmp", "C-1"])  # type: ignore[arg-type]


async def test_resolve_many_answers_a_malformed_lead_in_its_place() -> None:
    """One malformed lead never fails the batch: it is an InvalidLead refusal at its
    index, naming its field, and the others are resolved."""
    script = Script()
    seen: list[int] = []
    leads: list[Any] = [
        {"campaignId": "cmp", "externalId": "A"},
        {"campaignId": 5, "externalId": "B"},
        Lead(campaign_id="cmp", external_id="C"),
        {"campaignId": "cmp"},
        "not a lead",
    ]
    async with make_resolver(script) as resolver:
        results = await resolver.resolve_many(leads, on_result=lambda i, _: seen.append(i))
        stats = resolver.stats()
    assert [type(result).__name__ for result in results] == [
        "Resolution",
        "InvalidLead",
        "Resolution",
        "InvalidLead",
        "InvalidLead",
    ]
    bad = results[1]
    assert isinstance(bad, InvalidLead)
    assert (bad.index, bad.field, bad.external_id) == (1, "campaignId", "B")
    assert "leads[1].campaignId" in str(bad)
    third = results[3]
    assert isinstance(third, InvalidLead)
    assert third.field == "externalId"
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert sorted(script.calls) == ["A", "C"]
    assert stats.refusals["invalid_lead"] == 3


async def test_warm_counts_malformed_leads_and_warms_the_rest() -> None:
    async with make_resolver() as resolver:
        report = await resolver.warm([{"campaignId": "cmp", "externalId": "A"}, {"x": 1}])
    assert (report.warmed, report.invalid) == (1, 1)


_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.lists(st.integers())
)
_keys = st.sampled_from(
    ["campaignId", "externalId", "phoneNumber", "priority", "metadata", "_id", "status", "x"]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(_keys, _values, max_size=5), max_size=6))
async def test_resolve_many_answers_every_input_whatever_it_holds(
    leads: list[dict[str, Any]],
) -> None:
    async with make_resolver() as resolver:
        results = await resolver.resolve_many(leads)
    assert len(results) == len(leads)
    for index, result in enumerate(results):
        assert isinstance(result, Resolution | Unresolvable)
        if isinstance(result, InvalidLead):
            assert result.index == index
            assert not result.retryable


def test_field_names_from_the_input_are_masked_escaped_and_bounded() -> None:
    """A key is input like any value: a number in it is masked, a control character
    escaped (no forged log line), and a lead of many unknown keys is one short line."""
    with pytest.raises(InvalidLead) as caught:
        predial.parse_lead({"campaignId": "c", "externalId": "x", "+12025551234": 1})
    assert "+12025551234" not in str(caught.value)
    assert "lead.+1202***1234: unknown field" in str(caught.value)
    with pytest.raises(InvalidLead) as caught:
        predial.parse_lead({"campaignId": "c", "externalId": "x", "\x1b[2J\nINFO forged": 1})
    assert "\n" not in str(caught.value)
    assert "\x1b" not in str(caught.value)
    with pytest.raises(InvalidLead, match=r"lead: 5000 unknown fields \(0, 1, 2, \.\.\.\)$"):
        predial.parse_lead({str(n): n for n in range(5000)})
    with pytest.raises(InvalidLead) as caught:
        predial.parse_lead({"campaignId": 1, **{f"k{n}": n for n in range(15)}})
    assert len(caught.value.problems) == 11
    assert caught.value.problems[-1] == (None, "and 6 more problems")


class _Hostile(dict[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("+12025551234")

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("+12025551234")


class _RaisingModel(StoredLead):
    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("dump failed for +12025551234")


async def test_inputs_whose_methods_raise_are_invalid_leads_in_their_place() -> None:
    model = _RaisingModel.model_validate(LISTED)
    async with make_resolver() as resolver:
        results = await resolver.resolve_many(
            [_Hostile(campaignId="cmp"), model, {"campaignId": "cmp", "externalId": "A"}]
        )
    first, second, third = results
    assert isinstance(first, InvalidLead)
    assert isinstance(second, InvalidLead)
    assert str(second) == "invalid_lead (skip): leads[1]: could not be read (RuntimeError)"
    assert isinstance(third, Resolution)


def test_refusals_pickle_and_copy_with_their_attributes() -> None:
    import copy
    import pickle

    with pytest.raises(InvalidLead) as caught:
        predial.parse_lead({"campaignId": 1}, index=4)
    for refusal in (
        caught.value,
        predial.UnknownCampaign("cmq", ["cmp"]),
        Unresolvable("timeout", retryable=True, retry_after=3.0),
    ):
        for again in (pickle.loads(pickle.dumps(refusal)), copy.copy(refusal)):
            assert type(again) is type(refusal)
            assert str(again) == str(refusal)
            assert again.__dict__ == refusal.__dict__


def test_an_unknown_campaign_s_id_is_shown_masked() -> None:
    refusal = predial.UnknownCampaign("+12025551234", ["cmp"])
    assert "+12025551234" not in str(refusal)
    assert "'+1202***1234'" in str(refusal)
