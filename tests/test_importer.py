"""The importer against the fake Lupitor API: in-process, and served by uvicorn."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predial import ConfigurationError, InputFileError
from predial.lupitor import AsyncLupitorClient, RetryPolicy, import_leads_async
from predial.testing import FakeLupitor, Faults, serve

KEY = "sk_test_write"
CAMPAIGN = "cmp_1"
FAST = RetryPolicy(attempts=10, initial=0.005, maximum=0.05, rate_limit_waits=1000)
PHONES = [f"+1202456{n:04d}" for n in range(1000, 9999)]


@pytest.fixture(autouse=True)
def _private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Import locks go to the test's own temporary folder (the child processes' too),
    not the machine's, where one empty lock file per input file would pile up."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def in_process(fake: FakeLupitor, window: float) -> AsyncLupitorClient:
    return AsyncLupitorClient(
        KEY,
        base_url="http://lupitor.test",
        transport=httpx.ASGITransport(app=fake),
        window=window,
        retry=FAST,
    )


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def identifiers(fake: FakeLupitor) -> list[str]:
    return [lead.get("externalId") or lead["phoneNumber"] for lead in fake.leads(CAMPAIGN)]


async def test_small_import_reports_every_row(tmp_path: Path) -> None:
    """Created, duplicates in the file, already in the campaign, rejected: each counted and journaled."""
    fake = FakeLupitor(window=0.05)
    async with in_process(fake, 0.05) as client:
        await client.create_lead({"campaignId": CAMPAIGN, "externalId": "E-OLD"})
        source = write_csv(
            tmp_path / "leads.csv",
            [
                {"CRM ID": "E-1", "Phone": "", "name": "prefetch"},
                {"CRM ID": "", "Phone": "(202) 456-1111", "name": "standard"},
                {"CRM ID": "E-3", "Phone": "202.456.1414", "name": "both"},
                {"CRM ID": "E-1", "Phone": "", "name": "duplicate id"},
                {"CRM ID": "", "Phone": "+1 202 456 1111", "name": "duplicate phone"},
                {"CRM ID": "E-OLD", "Phone": "", "name": "already there"},
                {"CRM ID": "E-7", "Phone": "+15555551234", "name": "fictional number"},
                {"CRM ID": "", "Phone": "", "name": "nothing"},
            ],
        )
        rejects = tmp_path / "rejects.csv"
        report = await import_leads_async(
            source, CAMPAIGN, client=client, region="US", rejects_path=rejects, batch_size=3
        )
    assert (report.rows, report.created, report.duplicates_in_file) == (8, 3, 2)
    assert (report.already_present, report.rejected, report.failed) == (1, 2, 0)
    assert report.accounted
    assert sorted(identifiers(fake)) == ["+12024561111", "E-1", "E-3", "E-OLD"]
    stored = {lead.get("externalId"): lead for lead in fake.leads(CAMPAIGN)}
    assert stored["E-3"]["phoneNumber"] == "+12024561414"
    assert stored["E-1"]["metadata"] == {"name": "prefetch"}
    with rejects.open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["line"], r["column"]) for r in rows] == [("8", "Phone"), ("9", "")]
    assert "not an assigned number" in rows[0]["reason"]
    assert rows[0]["name"] == "fictional number"


async def test_rerun_after_success_sends_nothing(tmp_path: Path) -> None:
    """The journal knows every row is settled: the second run sends no request."""
    fake = FakeLupitor(window=0.05)
    source = write_csv(tmp_path / "leads.csv", [{"id": f"E{i}", "phone": ""} for i in range(20)])
    async with in_process(fake, 0.05) as client:
        first = await import_leads_async(source, CAMPAIGN, client=client, batch_size=7)
        sent = len(fake.requests)
        second = await import_leads_async(source, CAMPAIGN, client=client, batch_size=7)
    assert (first.created, second.created) == (20, 20)
    assert second.resumed
    assert len(fake.requests) == sent


async def test_older_api_gets_prefetch_leads_one_by_one(tmp_path: Path) -> None:
    """v1 refuses phone-less leads in bulk: they are created singly, the rest in bulk."""
    fake = FakeLupitor(version="v1", window=0.05)
    rows = [{"id": f"E{i}", "phone": PHONES[i] if i % 2 else ""} for i in range(10)]
    source = write_csv(tmp_path / "leads.csv", rows)
    async with in_process(fake, 0.05) as client:
        report = await import_leads_async(source, CAMPAIGN, client=client)
    assert report.created == 10
    assert report.single_requests == 5
    assert fake.count(CAMPAIGN) == 10


async def test_dry_run_sends_nothing_and_leaves_no_journal(tmp_path: Path) -> None:
    """--dry-run validates and reports only."""
    source = write_csv(
        tmp_path / "leads.csv", [{"id": "A", "phone": "+15555551234"}, {"id": "B", "phone": ""}]
    )
    report = await import_leads_async(source, CAMPAIGN, dry_run=True)
    assert (report.rejected, report.created, report.dry_run) == (1, 0, True)
    assert not (tmp_path / "leads.csv.journal.sqlite").exists()


async def test_auth_errors_stop_the_import_and_leave_rows_to_resume(tmp_path: Path) -> None:
    """A bad key is fatal and loud; the rows stay in flight for the rerun."""
    fake = FakeLupitor(window=0.05)
    source = write_csv(tmp_path / "leads.csv", [{"id": "A", "phone": ""}])
    client = AsyncLupitorClient(
        "sk_wrong",
        base_url="http://lupitor.test",
        transport=httpx.ASGITransport(app=fake),
        retry=FAST,
    )
    async with client:
        with pytest.raises(Exception, match="Invalid or inactive API key"):
            await import_leads_async(source, CAMPAIGN, client=client)


async def test_a_journal_of_another_campaign_is_refused_naming_the_one_to_pass(
    tmp_path: Path,
) -> None:
    """A journal given for another campaign's import is an error, not a silent skip,
    and the message names the --journal to pass (never "delete" a good journal);
    without --journal, the second campaign gets a journal of its own."""
    source = write_csv(tmp_path / "leads.csv", [{"id": "A", "phone": ""}])
    from predial.lupitor._journal import Journal

    fake = FakeLupitor(window=0.05)
    async with in_process(fake, 0.05) as client:
        await import_leads_async(source, "cmp_1", client=client)
        default = Journal.default_path(source)
        with pytest.raises(ConfigurationError) as refused:
            await import_leads_async(source, "cmp_2", client=client, journal_path=default)
        message = str(refused.value)
        assert "campaign 'cmp_1', not 'cmp_2'" in message
        assert f"--journal {tmp_path / 'leads.csv.cmp_2.journal.sqlite'}" in message
        assert "delete" not in message
        report = await import_leads_async(source, "cmp_2", client=client)
    assert report.journal == str(tmp_path / "leads.csv.cmp_2.journal.sqlite")
    assert (report.created, fake.count("cmp_1"), fake.count("cmp_2")) == (1, 1, 1)


def make_rows(
    count: int, seed: int, prefetch_share: float = 0.5
) -> tuple[list[dict[str, str]], set[str], set[int]]:
    """`count` rows: 5% invalid, 5% duplicates of earlier rows; the rest valid and unique,
    `prefetch_share` of them externalId-only, the others with a phone (some with both).

    Returns the rows, the identifiers the server must end up with, and the invalid lines.
    """
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    expected: set[str] = set()
    invalid: set[int] = set()
    for index in range(count):
        line = index + 2
        roll = rng.random()
        if roll < 0.05:
            rows.append(
                {
                    "externalId": f"BAD{index}",
                    "phoneNumber": "+1555555" + f"{index % 10000:04d}",
                    "priority": "1",
                }
            )
            invalid.add(line)
        elif roll < 0.10 and rows:
            rows.append(dict(rng.choice(rows)))  # a duplicate (of a valid or invalid row)
            if rows[-1]["externalId"].startswith("BAD"):
                invalid.add(line)
        else:
            prefetch = rng.random() < prefetch_share
            kind = rng.randrange(2)  # with a phone: both identifiers, or the phone only
            external = f"CRM-{index}" if prefetch or kind == 0 else ""
            area = rng.choice(("202", "212", "312", "415"))
            phone = "" if prefetch else f"+1{area}{rng.randrange(2000000, 9999999)}"
            rows.append(
                {"externalId": external, "phoneNumber": phone, "priority": str(index % 100)}
            )
    # Expected: first occurrence wins, by externalId then phone, invalid rows excluded.
    seen_ext: set[str] = set()
    seen_phone: set[str] = set()
    for line, row in enumerate(rows, start=2):
        if line in invalid:
            continue
        ext, phone = row["externalId"], row["phoneNumber"]
        if (ext and ext in seen_ext) or (phone and phone in seen_phone):
            continue
        if ext:
            seen_ext.add(ext)
        if phone:
            seen_phone.add(phone)
        expected.add(ext or phone)
    return rows, expected, invalid


@pytest.fixture(params=["v2", "v1"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[FakeLupitor, str]]:
    """The fake API behind a real uvicorn on 127.0.0.1, with faults and a scaled window."""
    fake = FakeLupitor(
        version=request.param,
        window=0.05,
        bulk_limit=10,
        default_limit=100,
        faults=Faults(error_rate=0.10, lost_after_commit_rate=0.02, seed=7),
    )
    with serve(fake) as url:
        yield fake, url


async def test_20000_rows_with_faults_land_exactly_once(
    tmp_path: Path, served: tuple[FakeLupitor, str]
) -> None:
    """5% invalid, 5% duplicated, 10% 5xx, 2% answers lost: the server ends with every
    valid unique lead once, rejects hold every invalid row, the report matches."""
    fake, url = served
    # The older API predates prefetch mode: most of its leads carry a phone, and its
    # prefetch-only leads go one request each.
    share = 0.5 if fake.version == "v2" else 0.1
    rows, expected, invalid = make_rows(20_000, seed=11, prefetch_share=share)
    source = write_csv(tmp_path / "leads.csv", rows)
    rejects = tmp_path / "rejects.csv"
    async with AsyncLupitorClient(KEY, base_url=url, window=0.05, retry=FAST) as client:
        report = await import_leads_async(
            source, CAMPAIGN, client=client, rejects_path=rejects, concurrency=16
        )
    stored = identifiers(fake)
    assert len(stored) == len(set(stored)), "a lead was stored twice"
    assert set(stored) == expected
    assert report.accounted
    assert report.created + report.already_present == fake.count(CAMPAIGN)
    assert report.already_present == 0  # the campaign started empty
    with rejects.open() as file:
        rejected_lines = {int(row["line"]) for row in csv.DictReader(file) if row["reason"]}
    assert rejected_lines == invalid
    assert report.rejected == len(invalid)
    assert report.rows == 20_000
    assert report.rows == report.created + report.duplicates_in_file + report.rejected


def _journal_lines(journal: Path, statuses: tuple[str, ...]) -> dict[int, str]:
    marks = ",".join("?" * len(statuses))
    query = f"SELECT line, identifier FROM rows WHERE status IN ({marks})"
    try:
        with sqlite3.connect(journal) as db:
            return dict(db.execute(query, statuses).fetchall())
    except sqlite3.OperationalError:  # the importer has not created its tables yet
        return {}


class BodyRecorder:
    """ASGI middleware keeping the identifiers of every create request, in order."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or "delete" in scope["path"]:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            payload = json.loads(body)
            leads = payload.get("leads") if "leads" in payload else [payload]
            self.sent.extend(lead.get("externalId") or lead.get("phoneNumber") for lead in leads)
        except (ValueError, AttributeError):
            pass  # not a create body: nothing to record

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@pytest.mark.parametrize(("version", "count", "kill_after"), [("v2", 3000, 500), ("v1", 400, 60)])
def test_sigkill_mid_import_then_rerun(
    tmp_path: Path, version: str, count: int, kill_after: int
) -> None:
    """Killed mid-import, then rerun with the same command: same end state, no row
    confirmed before the kill sent again, and a report that counts what landed as
    created. On v1 the prefetch leads go one by one and the server would not dedup a
    resend, so nothing may be stored twice."""
    fake = FakeLupitor(version=version, window=0.05, faults=Faults(latency=0.02, seed=3))
    recorder = BodyRecorder(fake)
    rows = [{"id": f"K{i}", "phone": ""} for i in range(count)]
    source = write_csv(tmp_path / "leads.csv", rows)
    journal = tmp_path / "leads.csv.journal.sqlite"
    with serve(recorder) as url:
        env = {**os.environ, "LUPITOR_API_KEY": KEY}
        command = [
            sys.executable,
            "-m",
            "predial.cli",
            "import",
            str(source),
            "--campaign",
            CAMPAIGN,
            "--api-url",
            url,
            "--batch-size",
            "100",
            "--rate-window",
            "0.05",
            "--json",
        ]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(_journal_lines(journal, ("created",))) >= kill_after:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        confirmed = set(_journal_lines(journal, ("created", "already_present")).values())
        assert 0 < len(confirmed) < count, "the kill should land mid-import"
        sent_before = len(recorder.sent)
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
    resent = set(recorder.sent[sent_before:])
    assert not resent & confirmed, "a row confirmed before the kill was sent again"
    stored = identifiers(fake)
    assert sorted(stored) == sorted(f"K{i}" for i in range(count)), "lost or doubled leads"
    report = json.loads(rerun.stdout)
    assert (report["created"], report["already_present"]) == (count, 0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(
        st.sampled_from(
            [
                "id",
                "externalId",
                "Phone Number",
                "priority",
                "metadata",
                "scheduledFor",
                "name",
                "",
                "id",
            ]
        ),
        min_size=1,
        max_size=6,
    ),
    cells=st.lists(
        st.lists(
            st.one_of(
                st.text(max_size=30),
                st.sampled_from(
                    [
                        "+12024561111",
                        "(202) 456-1111",
                        "{}",
                        '{"a": 1}',
                        "2025-01-01T00:00:00Z",
                        "100",
                        "-1",
                        '"',
                        "\n",
                        "x" * 5000,
                    ]
                ),
            ),
            max_size=7,
        ),
        max_size=12,
    ),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1"]),
)
async def test_any_csv_is_rows_or_one_clear_error(
    tmp_path: Path, header: list[str], cells: list[list[str]], delimiter: str, encoding: str
) -> None:
    """Odd encodings, missing and extra columns, huge fields, quotes: per-row rejections
    or one clear error, never a crash."""
    path = tmp_path / "fuzz.csv"
    import io

    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(cells)
    path.write_bytes(text.getvalue().encode(encoding, errors="replace"))
    problem: Exception | None = None
    try:
        report = await import_leads_async(path, CAMPAIGN, dry_run=True, region="US")
    except (InputFileError, ValueError) as error:
        problem = error
    if problem is not None:
        assert str(problem)  # one clear error, with a message
        return
    assert report.rows == report.rejected + report.duplicates_in_file + (
        report.rows - report.rejected - report.duplicates_in_file
    )


@respx.mock
async def test_a_lead_refused_in_bulk_is_rejected_and_the_rest_resent(tmp_path: Path) -> None:
    """The API refusing lead N of a batch rejects that row only; the others are sent again."""
    bodies: list[list[str]] = []

    def bulk(request: httpx.Request) -> httpx.Response:
        leads = json.loads(request.content)["leads"]
        bodies.append([lead["externalId"] for lead in leads])
        if len(bodies) == 1:
            body = {"success": False, "data": None, "error": "leads[1]: externalId is too long"}
            return httpx.Response(400, json=body)
        ids = [f"id{i}" for i in range(len(leads))]
        return httpx.Response(
            200,
            json={
                "success": True,
                "data": {"createdIds": ids, "skippedIdentifiers": []},
                "error": None,
            },
        )

    respx.post("http://127.0.0.1:9/api/v1/leads/bulk").mock(side_effect=bulk)
    source = write_csv(tmp_path / "leads.csv", [{"id": f"E{i}", "phone": ""} for i in range(3)])
    async with AsyncLupitorClient(KEY, base_url="http://127.0.0.1:9", retry=FAST) as client:
        report = await import_leads_async(source, CAMPAIGN, client=client)
    assert bodies == [["E0", "E1", "E2"], ["E0", "E2"]]
    assert (report.created, report.rejected) == (2, 1)
