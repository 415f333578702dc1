"""Logs never carry a full phone number."""

from __future__ import annotations

import logging
import re

import pytest
from conftest import Script, make_resolver

from predial import AdapterUnavailable, CrmContact, CrmPhone, Lead, RecordNotFound, Unresolvable

FULL_NUMBER = re.compile(r"\+?\d{9,}")


async def test_resolver_logs_mask_numbers(caplog: pytest.LogCaptureFixture) -> None:
    """Every fallback, refusal and adapter error is logged with masked numbers only."""
    caplog.set_level(logging.DEBUG, logger="predial")
    answers = {
        "ok": "+12024561111",
        "invalid": CrmContact(phones=[CrmPhone("+15555551234"), CrmPhone("+19005550199")]),
        "gone": RecordNotFound("+12024561111 not found"),
        "down": AdapterUnavailable("down"),
    }
    script = Script(answer=lambda external_id: answers[external_id])
    async with make_resolver(script) as resolver:
        for external_id in answers:
            lead = Lead(campaign_id="cmp", external_id=external_id, phone_number="+12024561414")
            await resolver.resolve(lead)
        with pytest.raises(Unresolvable):
            await resolver.resolve(Lead(campaign_id="cmp", phone_number="+19005550199"))
    assert "+1202***1414" in caplog.text
    assert not FULL_NUMBER.search(caplog.text), caplog.text


async def test_refusal_detail_masks_numbers() -> None:
    """An invalid CRM number in a refusal's detail is masked too."""
    script = Script(answer="+15555551234")
    async with make_resolver(script) as resolver:
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(Lead(campaign_id="cmp", external_id="x"))
    assert "+1555***1234" in str(caught.value)
    assert not FULL_NUMBER.search(str(caught.value))
