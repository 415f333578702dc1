"""Acme adapter tests: the predial contract, plus what is particular to Acme."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from predial_acme import AcmeAdapter
from predial_acme.fake import FakeAcme

from predial import CrmPhone, RecordNotFound
from predial.testing import AdapterContract, RateLimitContract, RecordingTransport, served_check

BASE = "http://127.0.0.1:7201"  # tests only ever talk to 127.0.0.1
KEY = "acme-test-key"


@pytest.fixture
def fake() -> FakeAcme:
    fake = FakeAcme(tokens=[KEY])
    fake.add("c-1", ("(202) 456-1111", "work", False), ("+12025550123", "mobile", True))
    fake.add("c-dnc", ("+12025550123", "mobile", True), do_not_call=True)
    return fake


class TestAcmeContract(AdapterContract, RateLimitContract):
    """Shape, known and unknown ids, error mapping, injection, entry point; the rate
    budget and Acme's 429s. (An adapter that takes OAuth settings adds
    `OAuthAdapterContract`: see docs/writing-adapters.md.)"""

    def make_adapter(self, fake: FakeAcme, **settings: Any) -> AcmeAdapter:
        return AcmeAdapter(
            **{"base_url": BASE, "token": KEY, "transport": fake.transport(), **settings}
        )

    @pytest.fixture
    def known_id(self) -> str:
        return "c-1"


@pytest.fixture
def crm(fake: FakeAcme) -> RecordingTransport:
    """The fake as Acme, every request and answer recorded."""
    return RecordingTransport(fake.handler)


async def test_reads_phones_and_flags(crm: RecordingTransport) -> None:
    adapter = AcmeAdapter(base_url=BASE, token=KEY, transport=crm)
    contact = await adapter.fetch_phone("c-1")
    assert contact.phones[1] == CrmPhone("+12025550123", "mobile", True)
    assert crm.calls.last.request.headers["x-api-key"] == KEY
    assert (await adapter.fetch_phone("c-dnc")).do_not_call
    with pytest.raises(RecordNotFound):
        await adapter.fetch_phone("nobody")
    await adapter.aclose()


def test_predial_check_against_the_served_fake(fake: FakeAcme, tmp_path: Path) -> None:
    """`predial check`, as an operator would run it, against the fake on 127.0.0.1."""
    settings = {"token": "${ACME_API_KEY}"}
    # The campaign names the adapter as predial.toml would: by its `name`, written
    # once, in the adapter.
    with served_check(
        fake, AcmeAdapter.name, settings, env={"ACME_API_KEY": KEY}, directory=tmp_path
    ) as check:
        found = check("c-1")
        assert (found.exit_code, found.trace["source"]) == (0, "crm"), found.output
        assert (check("c-dnc").trace["reason"], check("nobody").trace["reason"]) == (
            "do_not_call",
            "not_found",
        )
