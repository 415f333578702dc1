"""`predial import` through click's runner, against the fake API on 127.0.0.1."""

from __future__ import annotations

import csv
import json
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from predial.cli._app import cli
from predial.lupitor import RetryPolicy
from predial.lupitor import _client as client_module
from predial.testing import FakeLupitor, Faults, serve

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


# -- issue 13: the plain report says what the operator needs ----------------------------


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's six attempts without its seconds of backoff."""
    monkeypatch.setattr(
        client_module, "RetryPolicy", lambda: RetryPolicy(initial=0.001, maximum=0.002)
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_send_failures_show_their_cause_grouped(fast_retries: None, leads: Path) -> None:
    """`failed to send 2` comes with why (grouped, counted), in the report as in the
    rejects file, and says what to do; exit 1."""
    rejects = leads.parent / "rejects.csv"
    url = f"http://127.0.0.1:{closed_port()}"
    result = run_import(
        url, str(leads), "--campaign", "cmp_1", "--region", "US", "--rejects", str(rejects)
    )
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    cause = "ConnectError after 6 attempts (POST /api/v1/leads/bulk)"
    assert "  failed to send                   2" in lines
    assert f"           2  {cause}" in lines
    assert "  rerun the same command to send the rows not settled" in lines
    with rejects.open() as file:
        failed = [row for row in csv.DictReader(file) if row["status"] == "failed"]
    assert [row["reason"] for row in failed] == [cause, cause]
    # The rerun fails the same way: the JSON report carries the causes too.
    report = json.loads(
        run_import(url, str(leads), "--campaign", "cmp_1", "--region", "US", "--json").stdout
    )
    assert report["failed_causes"] == [[cause, 2]]


def test_a_server_error_cause_names_the_answer(fast_retries: None, leads: Path) -> None:
    fake = FakeLupitor(window=0.05, faults=Faults(error_rate=1.0))
    with serve(fake) as url:
        result = run_import(url, str(leads), "--campaign", "cmp_1", "--region", "US")
    assert result.exit_code == 1
    assert "           2  500 Internal server error after 6 attempts" in result.stdout.splitlines()


def test_rejections_are_grouped_by_column_and_reason(
    api: tuple[FakeLupitor, str], leads: Path
) -> None:
    """The report says why, without the masked value, so like rows group together."""
    _, url = api
    result = run_import(url, str(leads), "--campaign", "cmp_1", "--region", "US")
    lines = result.stdout.splitlines()
    at = lines.index("  rejected                         1")
    assert lines[at + 1] == (
        "           1  Phone Number: the number is not an assigned number in its "
        "country's numbering plan"
    )


def test_a_national_number_without_a_region_says_to_pass_region(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("phoneNumber\n2025550123\n2125550123\n")
    result = CliRunner().invoke(
        cli, ["import", str(leads), "--campaign", "c", "--dry-run"], catch_exceptions=False
    )
    assert (
        "           2  phoneNumber: a national number needs a default region to be read "
        "(give the number with its + country code, or a --region)"
    ) in result.stdout.splitlines()


def test_dry_run_says_how_many_would_be_sent(api: tuple[FakeLupitor, str], leads: Path) -> None:
    """Not `created 0`: `would send N`; nothing about sending or the campaign."""
    fake, url = api
    result = run_import(url, str(leads), "--campaign", "cmp_1", "--region", "US", "--dry-run")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "  would send                       2" in lines
    assert not [line for line in lines if "created" in line or "failed to send" in line]
    assert not [line for line in lines if "already in the campaign" in line]
    report = json.loads(
        run_import(
            url, str(leads), "--campaign", "cmp_1", "--region", "US", "--dry-run", "--json"
        ).stdout
    )
    assert (report["dry_run"], report["sendable"], report["created"]) == (True, 2, 0)
    assert fake.requests == []


def test_blank_rows_are_counted(api: tuple[FakeLupitor, str], tmp_path: Path) -> None:
    """Blank rows are skipped and said so, not silently dropped from the counts."""
    _, url = api
    source = tmp_path / "leads.csv"
    source.write_text("externalId,name\nA-1,x\n\n,\nA-2,y\n  ,  \n")
    result = run_import(url, str(source), "--campaign", "cmp_1")
    assert result.exit_code == 0
    assert result.stdout.startswith("import: 2 rows in ")
    assert "  skipped: blank rows              3" in result.stdout.splitlines()
    report = json.loads(run_import(url, str(source), "--campaign", "cmp_1", "--json").stdout)
    assert (report["rows"], report["blank_rows"]) == (2, 3)


def test_verify_prints_and_writes_the_leads_that_would_not_resolve(
    api: tuple[FakeLupitor, str], tmp_path: Path
) -> None:
    """--verify: the leads that would not resolve, grouped by reason with their lines,
    and in the rejects file with the reason (they are still imported)."""
    fake, url = api
    (tmp_path / "crm.csv").write_text("id,mobile,do_not_call\nA-1,(202) 456-1111,no\n")
    config = tmp_path / "predial.toml"
    config.write_text(
        '[[campaigns]]\nid = "cmp_1"\nadapter = "file"\ndefault_region = "US"\n'
        '[campaigns.settings]\npath = "crm.csv"\n'
    )
    source = tmp_path / "leads.csv"
    source.write_text("externalId,name\nA-1,found\nA-2,missing\nA-3,missing too\n")
    rejects = tmp_path / "rejects.csv"
    result = run_import(
        url,
        str(source),
        "--campaign",
        "cmp_1",
        "--verify",
        "--config",
        str(config),
        "--rejects",
        str(rejects),
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  would not resolve (--verify)     2" in lines
    assert "           2  not_found (lines 3, 4)" in lines
    assert fake.count("cmp_1") == 3
    with rejects.open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["line"], r["status"], r["column"], r["name"]) for r in rows] == [
        ("3", "would_not_resolve", "externalId", "missing"),
        ("4", "would_not_resolve", "externalId", "missing too"),
    ]
    assert all(r["reason"].startswith("would not resolve: not_found (skip)") for r in rows)


@pytest.mark.parametrize("key", ["", "   "])
def test_missing_key_says_what_the_command_accepts(
    api: tuple[FakeLupitor, str], leads: Path, key: str
) -> None:
    """The CLI's words, not the library's: there is no api_key option, the key is an
    environment variable only (never a flag); nothing is written."""
    _, url = api
    result = CliRunner().invoke(
        cli,
        ["import", str(leads), "--campaign", "cmp_1", "--api-url", url],
        env={"LUPITOR_API_KEY": key},
    )
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: no Lupitor API key: set LUPITOR_API_KEY in the environment")
    assert "api_key" not in line
    assert "predial fake-lupitor" in line
    assert not (leads.parent / "leads.csv.journal.sqlite").exists()


@pytest.mark.parametrize(
    ("encoding", "marked"),
    [("utf-8-sig", True), ("utf-8", False), ("utf-16", True)],
)
def test_the_rejects_file_keeps_the_inputs_byte_order_mark(
    api: tuple[FakeLupitor, str], tmp_path: Path, encoding: str, marked: bool
) -> None:
    """A spreadsheet needs the mark to read UTF-8: kept when the input had one."""
    _, url = api
    source = tmp_path / "leads.csv"
    source.write_bytes("CRM ID,Phone,Name\nA-1,555-1234,Müller\nA-2,,José\n".encode(encoding))
    rejects = tmp_path / "rejects.csv"
    result = run_import(
        url, str(source), "--campaign", "cmp_1", "--region", "US", "--rejects", str(rejects)
    )
    assert result.exit_code == 0, result.output
    raw = rejects.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") is marked
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert [(row["line"], row["Name"]) for row in rows] == [("2", "Müller")]


def test_blank_lines_of_json_lines_are_counted(
    api: tuple[FakeLupitor, str], tmp_path: Path
) -> None:
    _, url = api
    source = tmp_path / "leads.jsonl"
    source.write_text('{"externalId": "J-1"}\n\n   \n{"externalId": "J-2"}\n')
    report = json.loads(run_import(url, str(source), "--campaign", "cmp_1", "--json").stdout)
    assert (report["rows"], report["blank_rows"], report["created"]) == (2, 2, 2)


@pytest.mark.parametrize("dry_run", [False, True])
def test_ctrl_c_says_how_to_resume(
    api: tuple[FakeLupitor, str],
    leads: Path,
    monkeypatch: pytest.MonkeyPatch,
    dry_run: bool,
) -> None:
    """Not click's bare "Aborted!": rerun the same command, the journal keeps the rest."""
    _, url = api

    async def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    # By name: predial.cli._app must be imported before the command modules.
    monkeypatch.setattr("predial.cli._import_cmd.import_leads_async", interrupted)
    result = run_import(url, str(leads), "--campaign", "cmp_1", *(["--dry-run"] * dry_run))
    assert result.exit_code == 1
    assert "Aborted" not in result.output
    if dry_run:
        assert result.stderr.splitlines() == ["interrupted (a dry run: nothing was sent)"]
    else:
        # No journal yet: it is made before the first row is sent.
        assert result.stderr.splitlines() == [
            "interrupted before anything was sent: run the same command again to start"
        ]
