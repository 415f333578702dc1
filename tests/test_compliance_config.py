"""`predial.toml`'s compliance settings: `[resolver.compliance]` and a campaign's
`compliance = "us"` or `[campaigns.compliance]` table, each mistake one line naming
the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from predial import ConfigurationError, Resolver
from predial._config import load_config
from predial.compliance import AuditLog, Compliance, DncList, LocationKeys

KEY = "0123456789abcdef0123456789abcdef"
BASE = """
[resolver.compliance]
dnc_dir = "dnc"
audit = "audit/decisions.jsonl"
audit_key = "${AUDIT_KEY}"

[[campaigns]]
id = "short"
adapter = "file"
default_region = "US"
compliance = "us"
[campaigns.settings]
path = "crm.csv"

[[campaigns]]
id = "full"
adapter = "file"
default_region = "US"
[campaigns.settings]
path = "crm.csv"
[campaigns.compliance]
rules = "us"
dnc_lists = ["internal"]
closing_margin = 120
caps = false
location_keys = { postal_code = ["zip5"], state = ["st"] }
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "crm.csv").write_text("id,phone\nA-1,+12024561111\n")
    path = tmp_path / "predial.toml"
    path.write_text(text)
    return path


def test_both_spellings_become_a_campaigns_compliance(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), environ={"AUDIT_KEY": KEY})
    short, full = (item.campaign() for item in config.campaigns)
    assert short.compliance == Compliance(rules="us")
    assert full.compliance == Compliance(
        rules="us",
        dnc_lists=("internal",),
        closing_margin=120.0,
        caps=False,
        keys=LocationKeys(postal_code=("zip5",), state=("st",)),
    )
    compliance = config.resolver.compliance
    assert compliance is not None
    # Paths are read from the file's folder, like a campaign's settings.
    assert compliance.dnc_dir == str(tmp_path / "dnc")
    assert compliance.audit == str(tmp_path / "audit" / "decisions.jsonl")


def test_the_resolver_gets_the_lists_and_the_audit_log(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    DncList(tmp_path / "dnc", "internal").add(["+12024561111"], by="test")
    resolver = Resolver.from_config(path, environ={"AUDIT_KEY": KEY}, load_entrypoints=False)
    try:
        assert isinstance(resolver.audit, AuditLog)
        with pytest.raises(predial_unresolvable()) as caught:
            resolver.resolve_sync({"campaignId": "full", "externalId": "A-1"})
        assert caught.value.reason == "do_not_call_list"
    finally:
        resolver.close_sync()
        assert resolver.audit is not None
        resolver.audit.close()
    assert (tmp_path / "audit" / "decisions.jsonl").read_text().count("\n") == 1


def predial_unresolvable() -> type[Exception]:
    from predial import Unresolvable

    return Unresolvable


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('compliance = "us"', 'compliance = "mars"'),
            "campaigns[0].compliance.rules: no ruleset 'mars': predial ships us",
        ),
        (('compliance = "us"', "compliance = 3"), "campaigns[0].compliance"),
        (("caps = false", 'caps = "sometimes"'), "campaigns[1].compliance.caps"),
        (
            ("closing_margin = 120", "closing_margin = 7200"),
            "campaigns[1].compliance.closing_margin",
        ),
        (('state = ["st"]', 'stat = ["st"]'), "campaigns[1].compliance.location_keys.stat"),
        (('dnc_dir = "dnc"', 'dnc_dir = ""'), "resolver.compliance.dnc_dir"),
        (('audit_key = "${AUDIT_KEY}"', ""), "resolver.compliance: audit_key is required"),
        (
            ('audit_key = "${AUDIT_KEY}"', 'audit_key = "${SHORT_KEY}"'),
            "resolver.compliance.audit_key: must be at least 16 characters",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    text = BASE.replace(*change)
    assert text != BASE
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), environ={"AUDIT_KEY": KEY, "SHORT_KEY": "short"})
    assert expected in str(caught.value)
    assert "problems" not in str(caught.value)  # one line, not one per spelling
    assert KEY not in str(caught.value)


def test_an_audit_key_written_in_the_file_is_refused(tmp_path: Path) -> None:
    text = BASE.replace('audit_key = "${AUDIT_KEY}"', f'audit_key = "{KEY}"')
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert "resolver.compliance.audit_key" in str(caught.value)
    assert KEY not in str(caught.value)
