"""issue 13, "the first hour": what a new import operator tripped over, each through
the CLI (`predial import` against the fake API on 127.0.0.1), on the README's own
example files where the trial used them."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from predial import Lead, Resolution, Resolver
from predial.cli._app import cli
from predial.cli._import_cmd import _progress_view, _wrapped
from predial.lupitor import AsyncLupitorClient, ImportProgress, RetryPolicy, Waiting
from predial.lupitor import _client as client_module
from predial.lupitor._columns import ColumnMap
from predial.testing import FakeLupitor, Faults, serve

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
KEY = "sk_test_write"
#: A seed of the fake's fault draws (error_rate=0.5): two 500s, then a success.
SEED = 7

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


def errors(result: Result) -> list[str]:
    """The error lines on stderr (the columns line and progress are not errors)."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


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


# -- 3. a dry run counts what a real run would send now, and writes nothing ------------


def journal_files(folder: Path) -> dict[str, bytes]:
    """Every journal file of the folder (the database, its -wal and -shm), by name."""
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if ".journal.sqlite" in path.name and not path.name.endswith((".lock", ".owner"))
    }


def test_a_dry_run_after_an_import_would_send_nothing(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    """After a completed import a real rerun sends 0: the dry run says so, and why;
    the journal is read, never written (not a byte, no -wal or -shm left)."""
    fake, url = api
    common = [str(example), "--campaign", "cmp_1", "--region", "US"]
    assert run_import(url, *common).exit_code == 0
    before = journal_files(example.parent)
    assert list(before) == ["import-leads.csv.journal.sqlite"]
    sent = len(fake.requests)

    result = run_import(url, *common, "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dry run (nothing sent), against its journal: 20 rows in ")
    assert "  would send                       0 (16 already settled in the journal)" in lines
    assert f"  journal: {example}.journal.sqlite (read, not written)" in lines
    assert journal_files(example.parent) == before
    report = json.loads(run_import(url, *common, "--dry-run", "--json").stdout)
    assert (report["sendable"], report["created"], report["resumed"]) == (0, 16, True)
    assert journal_files(example.parent) == before
    assert len(fake.requests) == sent  # nothing sent, not even a look at the campaign


def test_a_dry_run_after_a_kill_counts_the_rows_not_confirmed(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    """Rows a killed run left in flight are sent again by a rerun: the dry run
    counts them as to be sent, and the confirmed ones as settled."""
    _, url = api
    common = [str(example), "--campaign", "cmp_1", "--region", "US"]
    assert run_import(url, *common).exit_code == 0
    journal = example.parent / "import-leads.csv.journal.sqlite"
    with sqlite3.connect(journal) as db:  # what a kill leaves: three rows in flight
        db.execute("UPDATE rows SET status = 'sending' WHERE line IN (2, 3, 4)")
    db.close()
    before = journal_files(example.parent)
    result = run_import(url, *common, "--dry-run")
    assert "  would send                       3 (13 already settled in the journal)" in (
        result.stdout.splitlines()
    )
    assert journal_files(example.parent) == before


@pytest.mark.parametrize("given", [False, True])
def test_a_dry_run_creates_no_journal(
    api: tuple[FakeLupitor, str], example: Path, given: bool
) -> None:
    _, url = api
    journal = example.parent / "mine.sqlite"
    extra = ["--journal", str(journal)] if given else []
    result = run_import(
        url, str(example), "--campaign", "cmp_1", "--region", "US", "--dry-run", *extra
    )
    assert result.exit_code == 0, result.output
    assert "  would send                       16" in result.stdout.splitlines()
    assert "journal:" not in result.stdout
    assert journal_files(example.parent) == {}
    assert not journal.exists()


# -- 5. the same file into a second campaign -------------------------------------------


def test_a_second_campaign_gets_a_journal_of_its_own(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    """Importing the file into cmp_2 after cmp_1 works (its journal is named for the
    campaign); each campaign's rerun resumes from its own journal."""
    fake, url = api
    folder = example.parent
    for campaign in ("cmp_1", "cmp_2"):
        result = run_import(url, str(example), "--campaign", campaign, "--region", "US")
        assert result.exit_code == 0, result.output
        assert "  created                          16" in result.stdout.splitlines()
    assert f"  journal: {folder / 'import-leads.csv.cmp_2.journal.sqlite'}" in (
        result.stdout.splitlines()
    )
    assert (fake.count("cmp_1"), fake.count("cmp_2")) == (16, 16)
    sent = len(fake.requests)
    for campaign in ("cmp_1", "cmp_2"):
        again = run_import(url, str(example), "--campaign", campaign, "--region", "US")
        assert again.exit_code == 0, again.output
        assert again.stdout.startswith("import, resumed from its journal: ")
    assert len(fake.requests) == sent
    assert set(journal_files(folder)) == {
        "import-leads.csv.journal.sqlite",
        "import-leads.csv.cmp_2.journal.sqlite",
    }


def test_another_campaigns_journal_given_names_the_one_to_pass(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    fake, url = api
    assert run_import(url, str(example), "--campaign", "cmp_1", "--region", "US").exit_code == 0
    default = example.parent / "import-leads.csv.journal.sqlite"
    result = run_import(
        url, str(example), "--campaign", "cmp_2", "--region", "US", "--journal", str(default)
    )
    assert result.exit_code == 2
    assert errors(result) == [
        f"error: {default}: this journal records the import of import-leads.csv into "
        f"campaign 'cmp_1', not 'cmp_2'; pass --journal {example}.cmp_2.journal.sqlite "
        "(that campaign's own), or leave --journal out to use it"
    ]
    assert fake.count("cmp_2") == 0


def test_an_edited_file_names_a_journal_for_its_new_version(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    """The file changed since its journal: the message names the --journal to pass
    (never "delete" a good journal); passed, the import adds nothing twice."""
    fake, url = api
    common = [str(example), "--campaign", "cmp_1", "--region", "US"]
    assert run_import(url, *common).exit_code == 0
    with example.open("a", encoding="utf-8", newline="") as file:
        file.write("C-1017,,Ida,Rhodes,NBS,\r\n")
    refused = run_import(url, *common)
    assert refused.exit_code == 2
    [line] = errors(refused)
    assert "this journal records an import of another version of import-leads.csv" in line
    assert "delete" not in line
    match = re.search(r"pass --journal (\S+) \(a new journal", line)
    assert match is not None, line
    fresh = Path(match.group(1))
    assert fresh.parent == example.parent
    result = run_import(url, *common, "--journal", str(fresh))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  created                          1" in lines
    assert "  skipped: already in the campaign 16" in lines
    assert fake.count("cmp_1") == 17


# -- 6. a refused key says what to do --------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "sk_test_read",
            "error: the key in LUPITOR_API_KEY has no write scope (403 Forbidden): create a "
            "key with Write scope and set LUPITOR_API_KEY to it",
        ),
        (
            "sk_live_wrong_0123456789",
            "error: the key in LUPITOR_API_KEY was refused (401 Invalid or inactive API "
            "key): set a valid key",
        ),
    ],
)
def test_a_refused_key_says_what_to_do(
    api: tuple[FakeLupitor, str], example: Path, key: str, expected: str
) -> None:
    fake, url = api
    result = run_import(url, str(example), "--campaign", "cmp_1", "--region", "US", key=key)
    assert result.exit_code == 2
    assert errors(result) == [expected]
    assert key not in result.output
    assert fake.count("cmp_1") == 0
    # With a good key, the same command then imports every lead.
    again = run_import(url, str(example), "--campaign", "cmp_1", "--region", "US")
    assert again.exit_code == 0, again.output
    assert fake.count("cmp_1") == 16


def test_an_unknown_campaign_says_what_to_check(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    _, url = api
    result = run_import(url, str(example), "--campaign", "cmp_9", "--region", "US")
    assert result.exit_code == 2
    assert errors(result) == [
        "error: campaign 'cmp_9' was not found, or the key in LUPITOR_API_KEY cannot reach "
        "it (404 Campaign not found or access denied): check --campaign, and that the key "
        "is of the campaign's account"
    ]


# -- 7. the hint for --rejects; Ctrl-C says how many rows are confirmed -------------------


def test_rejected_rows_without_rejects_say_how_to_get_them(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    _, url = api
    hint = "  rerun with --rejects rejects.csv to get each row with its reason"
    common = [str(example), "--campaign", "cmp_1", "--region", "US"]
    result = run_import(url, *common)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == hint
    # As told: the rerun sends nothing and writes both rejected rows with their reasons.
    rejects = example.parent / "rejects.csv"
    again = run_import(url, *common, "--rejects", str(rejects))
    assert hint not in again.stdout.splitlines()
    assert [row.split(",")[:3] for row in rejects.read_text("utf-8-sig").splitlines()[1:]] == [
        ["15", "rejected", "Phone"],
        ["18", "rejected", "Priority"],
    ]


def test_no_hint_when_nothing_was_rejected(api: tuple[FakeLupitor, str], tmp_path: Path) -> None:
    _, url = api
    source = tmp_path / "clean.csv"
    source.write_text("externalId\nA-1\nA-2\n")
    result = run_import(url, str(source), "--campaign", "cmp_1")
    assert result.exit_code == 0
    assert "--rejects" not in result.stdout


def test_ctrl_c_says_how_many_rows_are_confirmed(
    api: tuple[FakeLupitor, str], example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after two batches of two: four rows confirmed, said with the
    journal that holds them; the rerun sends the rest."""
    fake, url = api
    real = AsyncLupitorClient.create_leads_bulk
    calls = 0

    async def interrupted_third(self: AsyncLupitorClient, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # as Ctrl-C lands while a request is out
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(AsyncLupitorClient, "create_leads_bulk", interrupted_third)
    common = [str(example), "--campaign", "cmp_1", "--region", "US", "--batch-size", "2"]
    result = run_import(url, *common)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "interrupted: run the same command again to resume; 4 rows confirmed so far "
        f"(created or already in the campaign) are in {example}.journal.sqlite and will "
        "not be sent again"
    )
    assert fake.count("cmp_1") == 4
    monkeypatch.setattr(AsyncLupitorClient, "create_leads_bulk", real)
    again = run_import(url, *common)
    assert again.exit_code == 0, again.output
    assert fake.count("cmp_1") == 16


# -- 8. the columns line is readable at 80 columns --------------------------------------


def test_the_columns_line_wraps_between_mappings_at_80_columns(example: Path) -> None:
    """Not one 131-character line the terminal cuts mid-name: broken between the
    fields' mappings, metadata's names whole."""
    result = CliRunner().invoke(
        cli,
        ["import", str(example), "--campaign", "cmp_1", "--region", "US", "--dry-run"],
        env={"COLUMNS": "80"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    at = next(index for index, line in enumerate(lines) if line.startswith("columns: "))
    assert lines[at : at + 3] == [
        "columns: external_id <- 'CRM ID'; phone_number <- 'Phone';",
        "         priority <- 'Priority';",
        "         metadata <- 'First name', 'Last name', 'Company'",
    ]


_NAMES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=30,
).filter(lambda name: name.strip() == name)


@given(names=st.lists(_NAMES, min_size=1, max_size=12, unique=True), width=st.integers(20, 120))
def test_the_columns_listing_breaks_only_between_names(names: list[str], width: int) -> None:
    """Whatever the column names (quotes, `;` and `,` in them included): the lines put
    back together are the listing, each break falls after a `; ` between mappings
    or a `, ` between names, and a line is longer than `width` only when one piece
    is (a name too long for any line)."""
    columns = ColumnMap(["CRM ID", *(name for name in names if name != "CRM ID")], None)
    text = columns.describe()
    pieces = [f"{field} <- {column!r}" for field, column in columns.columns.items()]
    if columns.metadata_columns:
        listed = [repr(name) for name in columns.metadata_columns]
        listed[0] = f"metadata <- {listed[0]}"
        pieces += listed
    # The offsets in `text` where a line may break (after each piece's separator).
    allowed = set()
    offset = 0
    for piece in pieces[:-1]:
        offset += len(piece) + 2
        allowed.add(offset)
    wrapped = _wrapped("columns: ", text, width).split("\n")
    assert wrapped[0].startswith("columns: ")
    body = [wrapped[0][len("columns: ") :]] + [line[len("columns: ") :] for line in wrapped[1:]]
    assert all(line.startswith(" " * len("columns: ")) for line in wrapped[1:])
    assert " ".join(body) == text
    offset = 0
    for line in body[:-1]:
        offset += len(line) + 1
        assert offset in allowed, (line, text)
    for line, shown in zip(wrapped, body, strict=True):
        if len(line) > width:  # one piece alone, too long for any line
            assert shown.strip().rstrip(";,") in pieces, (line, width)


# -- 4. 429 waits are shown while they last and counted in the report --------------------


def test_429_waits_are_shown_and_counted(example: Path) -> None:
    """The server refuses the first three requests (429, Retry-After 0.6 s each): the
    progress lines say so while it lasts, the report counts them and the wait."""
    fake = FakeLupitor(window=6.0, faults=Faults(forced_429=3))
    with serve(fake) as url:
        result = run_import(
            url, str(example), "--campaign", "cmp_1", "--region", "US", "--progress-every", "0.1"
        )
    assert result.exit_code == 0, result.output
    waiting = [line for line in result.stderr.splitlines() if "the server asked (429)" in line]
    assert waiting, result.stderr
    assert re.search(r", waiting (<1|1) s: the server asked \(429\), about \d+ s left", waiting[0])
    [requests] = [line for line in result.stdout.splitlines() if "requests:" in line]
    assert re.fullmatch(
        r"  requests: 1 bulk, 0 single \(3 answered 429, waited [12] s\)", requests
    ), requests
    assert fake.count("cmp_1") == 16


def test_the_eta_counts_a_429_wait_before_any_row(tmp_path: Path) -> None:
    """Before any row has settled there is no rate: the ETA is the known wait, not
    `-` (a rerun inside the same minute used to stall at `ETA -`)."""
    source = tmp_path / "clean.csv"
    source.write_text("externalId\nA-1\nA-2\nA-3\n")
    fake = FakeLupitor(window=10.0, faults=Faults(forced_429=2))
    with serve(fake) as url:
        result = run_import(url, str(source), "--campaign", "cmp_1", "--progress-every", "0.1")
    assert result.exit_code == 0, result.output
    waiting = [line for line in result.stderr.splitlines() if "(429)" in line]
    assert waiting, result.stderr
    assert all(line.startswith("importing: 0/3 rows settled (0%), 3 sent") for line in waiting)
    assert all(re.search(r"about (<1|1) s left \(rate limit\)$", line) for line in waiting)


@pytest.mark.parametrize(
    ("waiting", "short", "full"),
    [
        (Waiting(12.0, "429"), "429: waiting 12 s", "waiting 12 s: the server asked (429)"),
        (Waiting(40.0, "limit"), "rate limit: 40 s", "waiting 40 s for the rate limit"),
        (
            Waiting(2.0, "retry", "500 Internal server error"),
            "retry in 2 s",
            "waiting 2 s to retry (500)",
        ),
    ],
)
async def test_the_bar_says_what_it_waits_for(waiting: Waiting, short: str, full: str) -> None:
    """On a terminal, the rate's place says what the import waits for, one line from
    80 columns; the ETA counts the wait."""
    for width, text in ((80, short), (120, full)):
        output = io.StringIO()
        console = Console(file=output, width=width, force_terminal=True, color_system=None)
        async with _progress_view(console, "sent", 5.0) as progress:
            progress(ImportProgress(1_000_000, 0, 500, 0, waiting=waiting))
            await asyncio.sleep(0.15)  # a refresh of the live display
        frame = output.getvalue().split("\r\x1b[2K")[-1].split("\n")[0]
        assert len(frame) <= width
        assert text in frame, frame
        assert "ETA -" not in frame


def test_retries_are_counted_in_the_report(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """500s retried are said with the requests (the seed makes the first answers
    500s, then a success); the progress line says what the wait is for."""
    monkeypatch.setattr(client_module, "RetryPolicy", lambda: RetryPolicy(initial=0.2, maximum=0.2))
    fake = FakeLupitor(window=0.05, faults=Faults(error_rate=0.5, seed=SEED))
    with serve(fake) as url:
        result = run_import(
            url, str(example), "--campaign", "cmp_1", "--region", "US", "--progress-every", "0.02"
        )
    assert result.exit_code == 0, result.output
    [requests] = [line for line in result.stdout.splitlines() if "requests:" in line]
    assert re.fullmatch(
        r"  requests: 1 bulk, 0 single \([1-5] retried after a server error or a dropped "
        r"connection, waited (<1|1) s\)",
        requests,
    ), requests
    assert "to retry (500 Internal server error)" in result.stderr
    assert fake.count("cmp_1") == 16
