"""issue 13, "the first hour": what a new import operator tripped over, each through
the CLI (`predial import` against the fake API on 127.0.0.1), on the README's own
example files where the trial used them."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from predial import Lead, Resolution, Resolver
from predial.cli.app import cli
from predial.testing import FakeLupitor, serve

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
KEY = "sk_test_write"

#: `cmp_1` over the example CRM export, as the trial's configuration had it.
CONFIG = f"""
[[campaigns]]
id = "cmp_1"
adapter = "file"
default_region = "US"

[campaigns.settings]
path = "{(EXAMPLES / "crm.csv").as_posix()}"
id_column = "id"
dnc_column = "do_not_call"

[campaigns.settings.phone_columns]
mobile = "mobile_phone"
home = "home_phone"
work = "work_phone"
"""


@pytest.fixture(autouse=True)
def _private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Import locks in the test's own folder, not the machine's temporary folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


@pytest.fixture
def api() -> Iterator[tuple[FakeLupitor, str]]:
    fake = FakeLupitor(window=0.05)
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The README's messy example file, in a folder of the test's own."""
    path = tmp_path / "import-leads.csv"
    shutil.copy(EXAMPLES / "import-leads.csv", path)
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(CONFIG)
    return path


def run_import(url: str, *args: str, key: str = KEY) -> Result:
    return CliRunner().invoke(
        cli,
        ["import", *args, "--api-url", url, "--rate-window", "0.05"],
        env={"LUPITOR_API_KEY": key},
        catch_exceptions=False,
    )


# -- 1. --verify gives the resolver's own verdict for the lead as it will be imported --


def test_verify_counts_a_lead_resolved_from_its_stored_number_as_resolving(
    api: tuple[FakeLupitor, str], example: Path, config: Path
) -> None:
    """C-1007, C-1012 and C-1015 have a number in the file: the CRM has no usable one
    for them, and the resolver falls back to the stored number. --verify says what
    the resolver says, so they are not "would not resolve"."""
    _, url = api
    result = run_import(
        url,
        str(example),
        "--campaign",
        "cmp_1",
        "--region",
        "US",
        "--dry-run",
        "--verify",
        "--config",
        str(config),
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    reported = dict(report["not_resolving"])
    assert reported == {
        12: "do_not_call",  # C-1006: the CRM's do-not-call list
        16: "invalid_number",  # C-1009: the CRM's number is fictional, none in the file
        21: "not_found",  # C-1014: not in the CRM, none in the file
        23: "not_found",  # C-1016
    }
    assert report["would_not_resolve"] == 4

    # The resolver's verdict for the same leads, as imported (stored numbers in E.164).
    stored = {14: ("C-1007", "+33123456789"), 19: ("C-1012", "+61412345678")}
    stored[22] = ("C-1015", "+13127445000")
    missing = {12: ("C-1006", None), 16: ("C-1009", None), 21: ("C-1014", None)}
    leads = [
        Lead(campaign_id="cmp_1", external_id=external, phone_number=phone)
        for external, phone in [*stored.values(), *missing.values()]
    ]

    async def verdicts() -> list[object]:
        async with Resolver.from_config(config) as resolver:
            return list(await resolver.resolve_many(leads))

    results = asyncio.run(verdicts())
    for verdict, lead in zip(results[:3], leads[:3], strict=True):
        assert isinstance(verdict, Resolution), lead
        assert verdict.source == "stored"
    assert not any(isinstance(verdict, Resolution) for verdict in results[3:])


# -- 2. --verify with a campaign the configuration cannot verify stops at once -----------


@pytest.mark.parametrize("dry_run", [False, True])
def test_verify_with_an_unconfigured_campaign_is_one_line_and_exit_2(
    api: tuple[FakeLupitor, str], example: Path, dry_run: bool
) -> None:
    """Not `14 unknown_campaign` row by row and exit 0: one line naming the campaign,
    the configuration and what it has; nothing sent, no journal."""
    fake, url = api
    result = run_import(
        url,
        str(example),
        "--campaign",
        "cmp_2",
        "--region",
        "US",
        "--verify",
        "--config",
        str(EXAMPLES / "predial.toml"),
        *(["--dry-run"] * dry_run),
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"error: campaign 'cmp_2' is not in {EXAMPLES / 'predial.toml'} (configured: "
        "cmp_crm_export, cmp_legacy); --verify needs the campaign's adapter"
    ]
    assert result.stdout == ""
    assert fake.requests == []
    assert not (example.parent / "import-leads.csv.journal.sqlite").exists()


def test_verify_with_a_campaign_whose_adapter_cannot_be_built_is_exit_2(
    api: tuple[FakeLupitor, str], example: Path, tmp_path: Path
) -> None:
    fake, url = api
    config = tmp_path / "broken.toml"
    config.write_text(
        '[[campaigns]]\nid = "cmp_1"\nadapter = "file"\n[campaigns.settings]\n'
        'path = "no-such-export.csv"\n'
    )
    result = run_import(
        url, str(example), "--campaign", "cmp_1", "--verify", "--config", str(config)
    )
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: campaign 'cmp_1' is misconfigured: {config}: ")
    assert "no-such-export.csv" in line
    assert line.endswith(
        "--verify needs the campaign's adapter: fix the configuration (predial config validate)"
    )
    assert fake.requests == []
    assert not (example.parent / "import-leads.csv.journal.sqlite").exists()


def test_a_close_campaign_id_is_suggested(api: tuple[FakeLupitor, str], example: Path) -> None:
    _, url = api
    result = run_import(
        url,
        str(example),
        "--campaign",
        "cmp_legacyy",
        "--verify",
        "--config",
        str(EXAMPLES / "predial.toml"),
        "--dry-run",
    )
    assert result.exit_code == 2
    assert "did you mean 'cmp_legacy'?; --verify needs" in result.stderr
