"""The README's dialer quickstart names the `Lead` attribute that keeps each
read-only field of a lead as the Leads API lists it, and those are the ones."""

from __future__ import annotations

import re
from pathlib import Path

import predial

README = Path(__file__).parent.parent / "README.md"

# A lead exactly as GET /api/v1/leads lists it.
LISTED = {
    "_id": "jh7abc123xyz",
    "campaignId": "cmp",
    "externalId": "C-1",
    "status": "attempting",
    "priority": 5,
    "attempts": 2,
    "_creationTime": 1703520000000,
}


def test_the_readme_names_the_attribute_of_each_read_only_field() -> None:
    text = README.read_text(encoding="utf-8")
    bullet = re.search(
        r"^- A lead is the Lupitor lead JSON exactly as the Leads API lists it.*?(?=^- |\Z)",
        text,
        re.M | re.S,
    )
    assert bullet is not None
    named = dict(re.findall(r"`(\w+)` as `lead\.(\w+)`", " ".join(bullet.group().split())))
    assert named == {
        "_id": "id",
        "status": "status",
        "attempts": "attempts",
        "_creationTime": "creation_time",
    }
    lead = predial.parse_lead(LISTED)
    for field, attribute in named.items():
        assert getattr(lead, attribute) == LISTED[field], (field, attribute)
