"""`predial import` through click's runner, against the fake API on 127.0.0.1."""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from predial.cli.app import cli
from predial.testing import FakeLupitor, serve

KEY = "sk_test_write"


@pytest.fixture(autouse=True)
def _private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Import locks go to the test's own temporary folder (the child processes' too),
    not the machine's, where one empty lock file per input file would pile up."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


@pytest.fixture
def api() -> Iterator[tuple[FakeLupitor, str]]:
    fake = FakeLupitor(window=0.05)
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def leads(tmp_path: Path) -> Path:
    path = tmp_path / "leads.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["CRM ID", "Phone Number", "Company"])
        writer.writerow(["A-1", "", "Acme"])
        writer.writerow(["", "(202) 456-1111", "Globex"])
        writer.writerow(["A-1", "", "Acme again"])
        writer.writerow(["A-4", "+15555551234", "Initech"])
    return path


def run_import(url: str, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["import", *args, "--api-url", url, "--rate-window", "0.05"],
        env={"LUPITOR_API_KEY": KEY},
        catch_exceptions=False,
    )


def test_import_reports_and_writes_rejects(api: tuple[FakeLupitor, str], leads: Path) -> None:
    """The report counts every row; --rejects holds the bad one with its reason."""
    fake, url = api
    rejects = leads.parent / "rejects.csv"
    result = run_import(
        url, str(leads), "--campaign", "cmp_1", "--region", "US", "--rejects", str(rejects)
    )
    assert result.exit_code == 0, result.output
    assert "created                          2" in result.stdout
    assert "duplicate in the file   1" in result.stdout
    assert "rejected                         1" in result.stdout
    assert fake.count("cmp_1") == 2
    with rejects.open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["line"], r["column"], r["Company"]) for r in rows] == [
        ("5", "Phone Number", "Initech")
    ]
    # The row's own values are kept so it can be fixed and re-imported; the reason is masked.
    assert "5555551234" not in result.output
    assert "5555551234" not in rows[0]["reason"]
    assert KEY not in result.output


def test_import_json_and_rerun(api: tuple[FakeLupitor, str], leads: Path) -> None:
    """--json prints the report; a rerun finds everything settled and sends nothing."""
    fake, url = api
    first = json.loads(
        run_import(url, str(leads), "--campaign", "cmp_1", "--region", "US", "--json").stdout
    )
    sent = len(fake.requests)
    second = json.loads(
        run_import(url, str(leads), "--campaign", "cmp_1", "--region", "US", "--json").stdout
    )
    assert (first["created"], second["created"], second["resumed"]) == (2, 2, True)
    assert len(fake.requests) == sent


def test_dry_run_and_map(api: tuple[FakeLupitor, str], leads: Path) -> None:
    """--dry-run sends nothing; --map names a column the guesser would not."""
    fake, url = api
    result = run_import(
        url,
        str(leads),
        "--campaign",
        "cmp_1",
        "--region",
        "US",
        "--dry-run",
        "--map",
        "externalId=Company",
    )
    assert result.exit_code == 0
    assert "dry run" in result.stdout
    assert "external_id <- 'Company'" in result.stderr
    assert fake.requests == []


def test_missing_key_is_one_clear_error(api: tuple[FakeLupitor, str], leads: Path) -> None:
    """No LUPITOR_API_KEY: exit 2 with the variable named."""
    _, url = api
    result = CliRunner().invoke(
        cli,
        ["import", str(leads), "--campaign", "cmp_1", "--api-url", url],
        env={"LUPITOR_API_KEY": ""},
    )
    assert result.exit_code == 2
    assert "LUPITOR_API_KEY" in result.stderr


def test_unknown_campaign_is_fatal_and_loud(api: tuple[FakeLupitor, str], leads: Path) -> None:
    """The API's 404 message reaches the operator, exit 2."""
    _, url = api
    result = run_import(url, str(leads), "--campaign", "nope", "--region", "US")
    assert result.exit_code == 2
    assert "Campaign not found or access denied" in result.stderr


def test_bad_map_is_a_usage_error(api: tuple[FakeLupitor, str], leads: Path) -> None:
    """--map without '=' is refused before anything is read."""
    _, url = api
    result = run_import(url, str(leads), "--campaign", "cmp_1", "--map", "externalId")
    assert result.exit_code == 2
    assert "FIELD=COLUMN" in result.stderr


def test_verify_reports_leads_that_would_not_resolve(
    api: tuple[FakeLupitor, str], tmp_path: Path
) -> None:
    """--verify resolves prefetch leads through the campaign's adapter and counts the misses."""
    _, url = api
    (tmp_path / "crm.csv").write_text("id,mobile\nA-1,(202) 456-1111\n")
    config = tmp_path / "predial.toml"
    config.write_text(
        '[[campaigns]]\nid = "cmp_1"\nadapter = "file"\ndefault_region = "US"\n'
        '[campaigns.settings]\npath = "crm.csv"\n'
    )
    source = tmp_path / "leads.csv"
    source.write_text("externalId\nA-1\nA-2\n")
    result = run_import(
        url, str(source), "--campaign", "cmp_1", "--verify", "--config", str(config), "--json"
    )
    report = json.loads(result.stdout)
    assert report["would_not_resolve"] == 1
    assert report["not_resolving"] == [[3, "not_found"]]
    assert report["created"] == 2
