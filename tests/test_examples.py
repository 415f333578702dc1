"""Every example runs, and does what its comments say."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import respx
from click.testing import CliRunner

import predial
from predial.cli._app import cli

EXAMPLES = Path(__file__).parent.parent / "examples"

# What each row of examples/leads.csv is there to show.
EXPECTED = {
    2: ("crm", None),
    3: ("crm", None),
    4: ("crm", None),
    5: ("crm", None),
    6: ("crm", None),
    7: ("crm", None),
    8: ("crm", None),
    9: ("crm", None),
    10: ("refused", "do_not_call"),
    11: ("refused", "do_not_call"),
    12: ("stored", "invalid_number"),
    13: ("refused", "invalid_number"),
    14: ("refused", "no_number"),
    15: ("stored", "invalid_number"),
    16: ("stored", "not_found"),
    17: ("refused", "not_found"),
    18: ("stored", None),
    19: ("refused", "invalid_stored_number"),
    20: ("refused", "unavailable"),
    21: ("stored", "unavailable"),
}


def resolve_example(*options: str) -> list[dict[str, object]]:
    """`predial resolve examples/leads.csv --json`, one dict per lead."""
    leads, config = str(EXAMPLES / "leads.csv"), str(EXAMPLES / "predial.toml")
    result = CliRunner().invoke(cli, ["resolve", leads, "--config", config, "--json", *options])
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_bundled_leads_show_each_outcome() -> None:
    """Each row of leads.csv gives the outcome it was written for."""
    rows = {item["row"]: item for item in resolve_example()}
    seen = {
        row: (item["source"], item["fallbackReason"])
        if item["resolved"]
        else ("refused", item["reason"])
        for row, item in rows.items()
    }
    assert seen == EXPECTED


def test_crm_export_numbers_are_what_the_notes_say() -> None:
    """The messy formats of crm.csv normalise to the numbers intended."""
    numbers = {
        item["externalId"]: item.get("phoneNumber")
        for item in resolve_example("--show-numbers")
        if item["resolved"] and item["source"] == "crm"
    }
    assert numbers == {
        "C-1001": "+12024561111",
        "C-1002": "+447400123456",  # the mobile of two
        "C-1005": "+33612345678",  # 00 prefix, the mobile of two
        "C-1004": "+4915123456789",  # tel: URI
        "C-1008": "+61412345678",  # extension dropped
        "C-1010": "+5511961234567",
        "C-1013": "+34612345678",  # filed as work
    }


def test_dialer_loop_runs() -> None:
    """examples/dialer.py drains the bundled leads and prints its stats."""
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "dialer.py"), "--workers", "4"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "dialled 13, refused 7" in completed.stdout
    assert "stats:" in completed.stdout


def _legacy_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("legacy_crm_example", EXAMPLES / "legacy_crm.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def legacy() -> ModuleType:
    return _legacy_module()


@respx.mock
def test_legacy_adapter_maps_answers(legacy: ModuleType) -> None:
    """The custom-adapter example maps the CRM's answers to predial's types."""
    base = "http://127.0.0.1:8000"
    respx.get(f"{base}/contacts/ok").respond(
        json={
            "phones": [{"number": "+12024561111", "type": "mobile", "primary": True}],
            "dnc": False,
        }
    )
    respx.get(f"{base}/contacts/gone").respond(404)
    respx.get(f"{base}/contacts/denied").respond(401)
    respx.get(f"{base}/contacts/busy").respond(429, headers={"Retry-After": "7"})
    respx.get(f"{base}/contacts/a%2Fb%3Fc").respond(json={"phones": [], "dnc": True})
    adapter = legacy.LegacyCrmAdapter(base)

    async def scenario() -> None:
        contact = await adapter.fetch_phone("ok")
        assert contact.phones[0].primary
        with pytest.raises(predial.RecordNotFound):
            await adapter.fetch_phone("gone")
        with pytest.raises(predial.AdapterAuthError):
            await adapter.fetch_phone("denied")
        with pytest.raises(predial.AdapterUnavailable) as busy:
            await adapter.fetch_phone("busy")
        assert busy.value.retry_after == 7
        assert (await adapter.fetch_phone("a/b?c")).do_not_call  # one encoded path segment
        await adapter.aclose()

    asyncio.run(scenario())


def test_legacy_adapter_unreachable(legacy: ModuleType) -> None:
    """Nothing listening on 127.0.0.1:9: AdapterUnavailable, not a crash."""
    adapter = legacy.LegacyCrmAdapter("http://127.0.0.1:9", timeout=1)

    async def scenario() -> None:
        with pytest.raises(predial.AdapterUnavailable):
            await adapter.fetch_phone("x")
        await adapter.aclose()

    asyncio.run(scenario())


def test_readme_commands_name_the_bundled_example() -> None:
    """The README's first set-up command resolves examples/leads.csv with its config."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "predial resolve examples/leads.csv --config examples/predial.toml" in readme
