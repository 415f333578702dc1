"""Issue 10: the importer loses nothing, doubles nothing, corrupts nothing.

Two imports of one file at once, rows that used to stop every run, strict decoding,
formula cells in the rejects file, and journal faults as one clear error.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import socket
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
from click.testing import CliRunner

from predial import ConfigurationError, InputFileError, PredialError
from predial._leadfile import LeadRow, LeadRowError, read_leads
from predial._tabular import read_rows
from predial.cli._app import cli
from predial.lupitor import AsyncLupitorClient, RetryPolicy, import_leads, import_leads_async
from predial.lupitor._journal import Journal
from predial.testing import FakeLupitor, Faults, serve

KEY = "sk_test_write"
CAMPAIGN = "cmp_1"
FAST = RetryPolicy(attempts=10, initial=0.005, maximum=0.05, rate_limit_waits=1000)
MB = 1024 * 1024
STARTED = re.compile(r"started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(autouse=True)
def _private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Import locks go to the test's own temporary folder (the child processes' too),
    not the machine's, where one empty lock file per input file would pile up."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def in_process(fake: FakeLupitor) -> AsyncLupitorClient:
    return AsyncLupitorClient(
        KEY,
        base_url="http://lupitor.test",
        transport=httpx.ASGITransport(app=fake),
        window=0.05,
        retry=FAST,
    )


def stored(fake: FakeLupitor) -> list[str]:
    return sorted(lead.get("externalId") or lead["phoneNumber"] for lead in fake.leads(CAMPAIGN))


def rejects_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


# -- 10. two imports of one file at once ----------------------------------------------


def _journal_created(journal: Path) -> int:
    if not journal.exists():
        return 0
    db = sqlite3.connect(journal)
    try:
        row = db.execute("SELECT COUNT(*) FROM rows WHERE status = 'created'").fetchone()
    except sqlite3.Error:  # its tables are not written yet
        return 0
    finally:
        db.close()
    return int(row[0])


def _leads_file(tmp_path: Path) -> tuple[Path, list[str]]:
    """160 prefetch leads (the older API takes them one by one), 40 with a phone,
    one invalid row: the valid identifiers come back."""
    rows = [[f"P{i}", ""] for i in range(160)]
    rows += [[f"N{i}", f"+1202456{1000 + i}"] for i in range(40)]
    rows.append(["BAD", "+15555551234"])
    path = tmp_path / "leads.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["externalId", "phoneNumber"])
        writer.writerows(rows)
    return path, sorted(row[0] for row in rows if row[0] != "BAD")


def _command(url: str, source: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "predial",
        "import",
        str(source),
        "--campaign",
        CAMPAIGN,
        "--api-url",
        url,
        "--batch-size",
        "20",
        "--rate-window",
        "0.05",
        "--json",
        *extra,
    ]


@pytest.fixture
def slow_api(request: pytest.FixtureRequest) -> Iterator[tuple[FakeLupitor, str]]:
    fake = FakeLupitor(version=request.param, window=0.05, faults=Faults(latency=0.02))
    with serve(fake) as url:
        yield fake, url


def _start_first(url: str, source: Path, journal: Path, fake: FakeLupitor) -> subprocess.Popen[str]:
    """The first import, once it has rows created (it then holds its locks), slowed
    down so that it is still running while the second one starts."""
    env = {**os.environ, "LUPITOR_API_KEY": KEY}
    first = subprocess.Popen(
        _command(url, source), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while _journal_created(journal) == 0:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first import created nothing"
        time.sleep(0.02)
    fake.faults = Faults(latency=1.0)
    return first


@pytest.mark.parametrize("slow_api", ["v1", "v2"], indirect=True)
def test_a_second_import_of_the_same_file_stops_and_names_the_first(
    tmp_path: Path, slow_api: tuple[FakeLupitor, str]
) -> None:
    """Two `predial import` processes on one file: one runs, the other exits 2
    naming its pid, host and start; every valid lead is on the server exactly once."""
    fake, url = slow_api
    source, expected = _leads_file(tmp_path)
    env = {**os.environ, "LUPITOR_API_KEY": KEY}
    first = _start_first(url, source, tmp_path / "leads.csv.journal.sqlite", fake)
    try:
        second = subprocess.run(
            _command(url, source), env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        fake.faults = Faults()
        out, err = first.communicate(timeout=120)
    assert stored(fake) == expected  # each valid lead once: nothing doubled or lost
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    message = second.stderr
    assert "another import of leads.csv into campaign cmp_1 is running" in message
    assert f"pid {first.pid} on host {socket.gethostname()}" in message
    assert STARTED.search(message)
    assert "--wait" in message
    errors = [line for line in message.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert json.loads(out)["created"] == len(expected)


@pytest.mark.parametrize("slow_api", ["v1"], indirect=True)
def test_a_second_import_with_another_journal_is_stopped_too(
    tmp_path: Path, slow_api: tuple[FakeLupitor, str]
) -> None:
    """The same file into the same campaign through another --journal: stopped by the
    lock on the file itself (the older API would store its prefetch leads twice)."""
    fake, url = slow_api
    source, expected = _leads_file(tmp_path)
    env = {**os.environ, "LUPITOR_API_KEY": KEY}
    first = _start_first(url, source, tmp_path / "leads.csv.journal.sqlite", fake)
    try:
        second = subprocess.run(
            _command(url, source, "--journal", str(tmp_path / "other.journal")),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        fake.faults = Faults()
        _, err = first.communicate(timeout=120)
    assert stored(fake) == expected
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    assert f"pid {first.pid}" in second.stderr


def _run_waiting_second(
    url: str, source: Path, fake: FakeLupitor, first: subprocess.Popen[str], *extra: str
) -> tuple[str, str, int, str]:
    """Start a second import with --wait while `first` is held by the slow fake; let
    the first finish once the second says it waits. Returns the second's stdout,
    stderr and exit code, and the first's stderr."""
    env = {**os.environ, "LUPITOR_API_KEY": KEY}
    second = subprocess.Popen(
        _command(url, source, "--wait", *extra),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert second.stderr is not None
    early: list[str] = []
    try:
        # Until the second says it waits (or ends): only then may the first finish.
        while not (early and early[-1].startswith("waiting for")):
            line = second.stderr.readline()
            if not line:
                break
            early.append(line)
    finally:
        fake.faults = Faults()
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    second_out, rest = second.communicate(timeout=120)
    return second_out, "".join(early) + rest, second.returncode, first_err


@pytest.mark.parametrize("slow_api", ["v1"], indirect=True)
def test_wait_runs_the_second_import_after_the_first(
    tmp_path: Path, slow_api: tuple[FakeLupitor, str]
) -> None:
    """--wait: the second says whose import it waits for, then resumes from the
    journal the first wrote; every lead once, both exit 0."""
    fake, url = slow_api
    source, expected = _leads_file(tmp_path)
    first = _start_first(url, source, tmp_path / "leads.csv.journal.sqlite", fake)
    second_out, second_err, code, _ = _run_waiting_second(url, source, fake, first)
    assert code == 0, second_err
    waited = [line for line in second_err.splitlines() if line.startswith("waiting for")]
    assert len(waited) == 1, second_err
    assert f"pid {first.pid} on host {socket.gethostname()}" in waited[0]
    assert "another import of leads.csv into campaign cmp_1" in waited[0]
    report = json.loads(second_out)
    assert report["resumed"]
    assert report["created"] == len(expected)
    assert report["bulk_requests"] + report["single_requests"] == 0  # nothing left to send
    assert stored(fake) == expected


async def test_an_import_in_the_same_process_is_refused_with_its_owner(tmp_path: Path) -> None:
    """The lock is taken by the import, not the process: a second import while one
    holds it raises ImportInProgress whose owner names this process."""
    from predial.lupitor._journal import ImportLock

    source = tmp_path / "leads.csv"
    source.write_text("externalId\nA\n")
    held = ImportLock(Journal.default_path(source), source, CAMPAIGN)
    held.acquire()
    fake = FakeLupitor(window=0.05)
    try:
        async with in_process(fake) as client:
            with pytest.raises(PredialError, match="another import of leads.csv") as caught:
                await import_leads_async(source, CAMPAIGN, client=client)
    finally:
        held.release()
    error = caught.value
    assert type(error).__name__ == "ImportInProgress"
    owner: Any = getattr(error, "owner", None)
    assert owner["pid"] == os.getpid()
    assert owner["source"] == str(source.resolve())
    assert fake.requests == []  # refused before anything was sent
    assert not Journal.default_path(source).exists()


async def test_without_an_owner_file_the_holder_is_another_process(tmp_path: Path) -> None:
    """An owner file that cannot be read: the message says another process, no details."""
    from predial.lupitor._journal import ImportLock

    source = tmp_path / "leads.csv"
    source.write_text("externalId\nA\n")
    journal = Journal.default_path(source)
    held = ImportLock(journal, source, CAMPAIGN)
    held.acquire()
    _write(f"{journal}.lock.owner", "{not json")
    try:
        with pytest.raises(PredialError, match="in another process, which did not say"):
            await import_leads_async(source, CAMPAIGN, api_key=KEY, base_url="http://127.0.0.1:9")
    finally:
        held.release()


async def test_locks_are_let_go_after_a_failed_import_and_a_dry_run_takes_none(
    tmp_path: Path,
) -> None:
    """An import that fails (bad key) releases its locks, and removes its owner files;
    a dry run never takes them."""
    source = tmp_path / "leads.csv"
    source.write_text("externalId\nA\n")
    fake = FakeLupitor(window=0.05)
    wrong = AsyncLupitorClient(
        "sk_wrong", base_url="http://lupitor.test", transport=httpx.ASGITransport(app=fake)
    )
    async with wrong:
        with pytest.raises(PredialError, match="Invalid or inactive API key"):
            await import_leads_async(source, CAMPAIGN, client=wrong)
    assert not _owner_file_left(source)
    async with in_process(fake) as client:
        report = await import_leads_async(source, CAMPAIGN, client=client)
    assert report.created == 1
    from predial.lupitor._journal import ImportLock

    held = ImportLock(Journal.default_path(source), source, CAMPAIGN)
    held.acquire()
    try:
        dry = await import_leads_async(source, CAMPAIGN, dry_run=True)
    finally:
        held.release()
    assert dry.dry_run
    assert dry.rows == 1


# -- 11. one bad row never blocks the import ----------------------------------------


def _owner_file_left(source: Path) -> bool:
    return Path(f"{Journal.default_path(source)}.lock.owner").exists()


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


async def test_a_jsonl_integer_of_5000_digits_is_one_rejected_row(tmp_path: Path) -> None:
    """`Exceeds the limit (4300 digits)` rejects that line; the rows after it go through."""
    source = _jsonl(
        tmp_path / "leads.jsonl",
        [
            '{"externalId": "A"}',
            '{"externalId": "B", "priority": ' + "7" * 5000 + "}",
            '{"externalId": "C"}',
        ],
    )
    rejects = tmp_path / "rejects.csv"
    fake = FakeLupitor(window=0.05)
    async with in_process(fake) as client:
        report = await import_leads_async(source, CAMPAIGN, client=client, rejects_path=rejects)
    assert (report.created, report.rejected) == (2, 1)
    assert stored(fake) == ["A", "C"]
    [row] = rejects_of(rejects)
    assert row["line"] == "2"
    assert "4300 digits" in row["reason"]


async def test_deeply_nested_json_is_a_rejected_row_not_a_traceback(tmp_path: Path) -> None:
    """Nesting past the parser's depth, or past the lead model's, rejects its row."""
    too_deep = "[" * 100_000 + "]" * 100_000
    deep_metadata = json.dumps({"externalId": "M", "metadata": _nested(400)})
    deep_column = json.dumps({"externalId": "K", "notes": _nested(400)})
    source = _jsonl(
        tmp_path / "leads.jsonl",
        [
            '{"externalId": "A"}',
            '{"externalId": "B", "metadata": ' + too_deep + "}",
            deep_metadata,
            deep_column,
            '{"externalId": ' + "[" * 900 + "]" * 900 + "}",
            '{"externalId": "C"}',
        ],
    )
    rejects = tmp_path / "rejects.csv"
    report = await import_leads_async(source, CAMPAIGN, dry_run=True, rejects_path=rejects)
    assert (report.rows, report.rejected, report.sendable) == (6, 4, 2)
    reasons = {row["line"]: row["reason"] for row in rejects_of(rejects)}
    assert "nested too deeply" in reasons["2"]
    assert "nested too deeply" in reasons["3"]
    assert "nested too deeply" in reasons["4"]
    assert "not a JSON object" in reasons["5"]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


def test_csv_metadata_cells_with_huge_numbers_or_deep_nesting_are_rejected(
    tmp_path: Path,
) -> None:
    """A metadata cell's JSON that cannot be parsed is that row's rejection (importer
    columns and `read_leads` alike)."""
    source = tmp_path / "leads.csv"
    with source.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["campaignId", "externalId", "metadata"])
        writer.writerow(["c", "A", '{"n": ' + "9" * 5000 + "}"])
        writer.writerow(["c", "B", "[" * 50_000 + "]" * 50_000])
        writer.writerow(["c", "C", '{"ok": 1}'])
    rows = list(read_leads(source))
    assert [type(row).__name__ for row in rows] == ["LeadRowError", "LeadRowError", "LeadRow"]
    assert isinstance(rows[0], LeadRowError)
    assert "4300 digits" in rows[0].message
    assert isinstance(rows[1], LeadRowError)
    assert "nested too deeply" in rows[1].message
    from predial import PhonePolicy
    from predial.lupitor._columns import ColumnMap, Rejection

    columns = ColumnMap(["campaignId", "externalId", "metadata"])
    outcomes = [
        columns.lead(row.fields, "c", PhonePolicy(default_region="US")) for row in read_rows(source)
    ]
    assert [isinstance(o, Rejection) for o in outcomes] == [True, True, False]


async def test_a_jsonl_line_over_10_mb_is_one_rejected_row(tmp_path: Path) -> None:
    """The 11 MB line is consumed to its end and rejected; the lines around it count right."""
    source = tmp_path / "leads.jsonl"
    with source.open("w", encoding="utf-8") as file:
        file.write('{"externalId": "A"}\n')
        file.write('{"externalId": "B", "notes": "' + "x" * (11 * MB) + '"}\n')
        file.write('{"externalId": "C"}\n')
    rows = list(read_rows(source))
    assert [(row.line, "__error__" in row.fields) for row in rows] == [
        (1, False),
        (2, True),
        (3, False),
    ]
    assert "longer than 10 MB" in rows[1].fields["__error__"]
    report = await import_leads_async(source, CAMPAIGN, dry_run=True)
    assert (report.rows, report.rejected, report.sendable) == (3, 1, 2)


async def test_a_csv_field_over_10_mb_is_one_rejected_row(tmp_path: Path) -> None:
    """`field larger than field limit` is that record's rejection, not the file's."""
    source = tmp_path / "leads.csv"
    source.write_text(
        "externalId,notes\nA,short\nB," + "y" * (11 * MB) + "\nC,short\n", encoding="utf-8"
    )
    rejects = tmp_path / "rejects.csv"
    report = await import_leads_async(source, CAMPAIGN, dry_run=True, rejects_path=rejects)
    assert (report.rows, report.rejected, report.sendable) == (3, 1, 2)
    [row] = rejects_of(rejects)
    assert row["line"] == "3"
    assert "longer than 10 MB" in row["reason"]


def test_after_a_quoted_field_over_10_mb_reading_resumes_at_the_next_record(
    tmp_path: Path,
) -> None:
    """The csv reader restarts on the line after its error, inside the quoted field:
    the rest of that record is skipped, and the records after it keep their lines."""
    source = tmp_path / "leads.csv"
    field = ("q" * 999 + "\n") * 10_600
    source.write_text(
        'externalId,notes,n\nA,ok,1\nB,"'
        + field
        + 'end",2,"more\nlines"\nC,"two\nlines",3\nD,plain,4\n',
        encoding="utf-8",
    )
    rows = [(row.line, row.fields) for row in read_rows(source)]
    assert rows[0] == (2, {"externalId": "A", "notes": "ok", "n": "1"})
    assert rows[1][0] == 3
    assert "longer than 10 MB" in rows[1][1]["__error__"]
    after = 3 + 10_600 + 2  # the record's first line, its field's lines, its end
    assert rows[2:] == [
        (after, {"externalId": "C", "notes": "two\nlines", "n": "3"}),
        (after + 2, {"externalId": "D", "notes": "plain", "n": "4"}),
    ]


def test_any_csv_error_resumes_where_the_csv_module_does(tmp_path: Path) -> None:
    """The resync agrees with csv itself for quotes, doubled quotes and delimiters:
    every record after the bad one has the fields and line csv would give it."""
    tail = 'C,"a ""quoted"" word",3\nD,"x, y\n""z""",4\nE, "lead",5\nF,5" screen,6\n'
    source = tmp_path / "leads.csv"
    source.write_text(
        'externalId,notes,n\nB,"' + "w" * (11 * MB) + '",2\n' + tail, encoding="utf-8"
    )
    expected = list(csv.reader(tail.splitlines(keepends=True)))
    rows = list(read_rows(source))
    assert "__error__" in rows[0].fields
    assert [list(row.fields.values()) for row in rows[1:]] == expected
    assert [row.line for row in rows[1:]] == [3, 4, 6, 7]


def test_a_lone_surrogate_escape_in_jsonl_is_rejected(tmp_path: Path) -> None:
    """`\\udcfc` alone is no character: it could not be sent or written as UTF-8."""
    source = _jsonl(
        tmp_path / "leads.jsonl",
        [
            '{"externalId": "A\\udcfc"}',
            '{"externalId": "smile \\ud83d\\ude00"}',
            '{"\\ud800": "x", "externalId": "B"}',
        ],
    )
    rows = list(read_rows(source))
    assert "half a character" in rows[0].fields["__error__"]
    assert rows[1].fields == {"externalId": "smile \U0001f600"}
    assert "half a character" in rows[2].fields["__error__"]


async def test_doubled_quotes_in_a_crlf_csv_are_one_quote(tmp_path: Path) -> None:
    """Excel's and the csv module's CRLF files: a doubled quote in a quoted cell is
    stored as one quote (the sniffer's guess used to keep both)."""
    source = tmp_path / "leads.csv"
    source.write_bytes(b'externalId,notes\r\nA,"He said ""hi"""\r\nB,"{""ok"": 1}"\r\n')
    fake = FakeLupitor(window=0.05)
    async with in_process(fake) as client:
        report = await import_leads_async(source, CAMPAIGN, client=client)
    assert report.created == 2
    notes = {lead["externalId"]: lead["metadata"]["notes"] for lead in fake.leads(CAMPAIGN)}
    assert notes == {"A": 'He said "hi"', "B": '{"ok": 1}'}


# -- 12. strict decoding ---------------------------------------------------------------


def _ascii_rows(count: int, start: int = 0) -> bytes:
    return b"".join(f"E{i},plain-{i}\n".encode() for i in range(start, start + count))


async def test_a_bad_byte_after_64_kb_rejects_its_row_and_stores_nothing_altered(
    tmp_path: Path,
) -> None:
    """`late-M\\xfcller` after the first 64 KB: that row is rejected with its line and
    byte; nothing reaches the server as `late-M\\ufffdller`."""
    head = b"externalId,name\n" + _ascii_rows(5000)
    assert len(head) > 64 * 1024
    source = tmp_path / "leads.csv"
    source.write_bytes(head + "Z1,Zoë\n".encode() + b"LATE,late-M\xfcller\n" + b"Z2,ok\n")
    rejects = tmp_path / "rejects.csv"
    fake = FakeLupitor(window=0.05)
    async with in_process(fake) as client:
        report = await import_leads_async(
            source, CAMPAIGN, client=client, rejects_path=rejects, batch_size=1000
        )
    assert (report.rejected, report.created) == (1, 5002)
    names = {lead["externalId"]: lead["metadata"]["name"] for lead in fake.leads(CAMPAIGN)}
    assert "LATE" not in names
    assert names["Z1"] == "Zoë"
    assert not any("\ufffd" in name for name in names.values())
    [row] = rejects_of(rejects)
    assert row["line"] == str(5000 + 3)
    assert "not valid UTF-8 (byte 0xFC in column 'name')" in row["reason"]
    assert "--encoding" in row["reason"]
    assert report.encoding == "utf-8"


async def test_a_bad_byte_early_does_not_turn_the_file_into_cp1252(tmp_path: Path) -> None:
    """One bad byte in the first 64 KB: `Zoë` is still stored as `Zoë` (not `ZoÃ«`),
    and only the bad row is rejected."""
    source = tmp_path / "leads.csv"
    source.write_bytes(
        b"externalId,name\n" + "A,Zoë\n".encode() + b"B,M\xfcller\n" + "C,Ærø\n".encode()
    )
    fake = FakeLupitor(window=0.05)
    async with in_process(fake) as client:
        report = await import_leads_async(source, CAMPAIGN, client=client)
    names = {lead["externalId"]: lead["metadata"]["name"] for lead in fake.leads(CAMPAIGN)}
    assert names == {"A": "Zoë", "C": "Ærø"}
    assert report.rejected == 1


async def test_a_file_with_no_utf8_character_is_read_as_cp1252_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every non-ASCII byte invalid as UTF-8: cp1252, said in a warning and the report."""
    source = tmp_path / "leads.csv"
    source.write_bytes(b"externalId,name\n" + _ascii_rows(3000) + "X,Müller – €\n".encode("cp1252"))
    fake = FakeLupitor(window=0.05)
    with caplog.at_level(logging.WARNING, logger="predial._tabular"):
        async with in_process(fake) as client:
            report = await import_leads_async(source, CAMPAIGN, client=client, batch_size=1000)
    names = {lead["externalId"]: lead["metadata"]["name"] for lead in fake.leads(CAMPAIGN)}
    assert names["X"] == "Müller – €"
    assert report.encoding == "cp1252"
    warnings = [r.getMessage() for r in caplog.records if r.name == "predial._tabular"]
    assert len(warnings) == 1
    assert "read as cp1252" in warnings[0]


def test_bytes_undefined_in_cp1252_reject_their_row(tmp_path: Path) -> None:
    """0x81 has no character in cp1252: that row is rejected, the others are read."""
    source = tmp_path / "leads.csv"
    source.write_bytes(b"externalId,name\nA,M\xfcller\nB,x\x81y\nC,\xe9t\xe9\n")
    rows = list(read_rows(source))
    assert rows[0].fields == {"externalId": "A", "name": "Müller"}
    assert "not valid cp1252 (byte 0x81" in rows[1].fields["__error__"]
    assert rows[2].fields == {"externalId": "C", "name": "été"}


def test_an_explicit_encoding_wins_and_an_unknown_one_is_named(tmp_path: Path) -> None:
    """`encoding=` is used as given; a name Python does not know is an InputFileError."""
    source = tmp_path / "leads.csv"
    source.write_bytes("externalId,name\nA,Zoë\n".encode())
    [row] = list(read_rows(source, encoding="latin-1"))
    assert row.fields["name"] == "ZoÃ«"  # what the operator asked for
    with pytest.raises(InputFileError, match="--encoding klingon: unknown encoding"):
        list(read_rows(source, encoding="klingon"))


def test_excel_unicode_text_is_read_as_utf16(tmp_path: Path) -> None:
    """A UTF-16 file with its byte-order mark (tab-separated, as Excel saves it)."""
    source = tmp_path / "leads.csv"
    source.write_bytes("externalId\tname\r\nA\tZoë\r\nB\t日本\r\n".encode("utf-16"))
    rows = [(row.line, row.fields) for row in read_rows(source)]
    assert rows == [
        (2, {"externalId": "A", "name": "Zoë"}),
        (3, {"externalId": "B", "name": "日本"}),
    ]


def test_a_header_with_a_bad_byte_is_one_clear_error(tmp_path: Path) -> None:
    """The columns' names cannot be read: the file is refused, naming line 1 and the byte."""
    source = tmp_path / "leads.csv"
    source.write_bytes(b"externalId,Stra\xdfe\n" + "A,Zoë\n".encode())
    with pytest.raises(InputFileError, match=r"line 1 \(the header\): not valid UTF-8 \(byte 0xDF"):
        list(read_rows(source))


def test_a_resume_must_read_the_file_as_the_first_run_did(tmp_path: Path) -> None:
    """The journal records the encoding; another one is a ConfigurationError saying
    what to do, and a journal from before (no encoding) is accepted."""
    source = tmp_path / "leads.csv"
    source.write_bytes(b"externalId,name\nA,M\xfcller\n")
    journal = tmp_path / "j.sqlite"
    Journal(journal, source=source, campaign_id="c", encoding="cp1252").close()
    with pytest.raises(ConfigurationError, match="rerun with --encoding cp1252"):
        Journal(journal, source=source, campaign_id="c", encoding="iso8859-1")
    old = tmp_path / "old.sqlite"
    Journal(old, source=source, campaign_id="c").close()
    assert Journal(old, source=source, campaign_id="c", encoding="cp1252").resumed


def test_import_cli_says_it_read_cp1252_and_takes_encoding(tmp_path: Path) -> None:
    """`predial import`: "read as cp1252" on stderr; --encoding reads as told."""
    source = tmp_path / "leads.csv"
    source.write_bytes(b"externalId,name\nA,M\xfcller\n")
    runner = CliRunner()
    guessed = runner.invoke(cli, ["import", str(source), "--campaign", "c", "--dry-run", "--json"])
    assert guessed.exit_code == 0, guessed.output
    assert "read as cp1252" in guessed.stderr
    assert json.loads(guessed.stdout)["encoding"] == "cp1252"
    told = runner.invoke(
        cli,
        ["import", str(source), "--campaign", "c", "--dry-run", "--json", "--encoding", "utf-8"],
    )
    assert json.loads(told.stdout)["rejected"] == 1
    assert "read as cp1252" not in told.stderr


# -- 13. formula cells in the rejects file --------------------------------------------


async def test_rejects_file_cells_cannot_start_a_formula(tmp_path: Path) -> None:
    """= + - @ TAB CR at a cell's start get a `'` in front, header included; values
    are otherwise as they were."""
    source = tmp_path / "leads.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["externalId", "phone", "=HYPERLINK(1)", "note"])
        writer.writerow(["", "+1555555", '=HYPERLINK("http://x")', "@SUM(A1)"])
        writer.writerow(["A", "", "-2+3", "\tcmd"])
        writer.writerow(["B", "+15555551234", "\rx", "plain"])
    rejects = tmp_path / "rejects.csv"
    report = await import_leads_async(
        source, CAMPAIGN, dry_run=True, region="US", rejects_path=rejects
    )
    assert report.rejected == 2
    with rejects.open(newline="", encoding="utf-8") as file:
        table = list(csv.reader(file))
    assert table[0] == [
        "line",
        "status",
        "column",
        "reason",
        "externalId",
        "phone",
        "'=HYPERLINK(1)",
        "note",
        "extra",
    ]
    assert table[1][4:] == ["", "'+1555555", '\'=HYPERLINK("http://x")', "'@SUM(A1)", ""]
    assert table[2][4:] == ["B", "'+15555551234", "'\rx", "plain", ""]
    assert all(
        not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in table for cell in row
    )


def test_help_says_what_the_rejects_file_changes() -> None:
    """`predial import --help` documents the apostrophe, and --wait and --encoding."""
    result = CliRunner().invoke(cli, ["import", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    assert "gets a ' in front" in text
    assert "values are otherwise kept as they were" in text
    assert "--wait" in text
    assert "--encoding" in text


# -- 14. journal faults are one clear error -------------------------------------------


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "leads.csv"
    source.write_text("externalId\nA\nB\n")
    return source


def _cli_import(source: Path, *args: str) -> Any:
    return CliRunner().invoke(
        cli,
        ["import", str(source), "--campaign", CAMPAIGN, "--api-url", "http://127.0.0.1:9", *args],
        env={"LUPITOR_API_KEY": KEY},
    )


def test_a_corrupted_journal_is_one_error_line_saying_what_to_do(tmp_path: Path) -> None:
    """A predial journal damaged past its header: exit 2, no traceback, "delete it"."""
    source = _source(tmp_path)
    path = Journal.default_path(source)
    Journal(path, source=source, campaign_id=CAMPAIGN).close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + bytes(range(256)) * ((len(data) - 100) // 256 + 1))
    result = _cli_import(source)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "a damaged predial journal" in result.stderr
    assert "delete it" in result.stderr
    assert "--journal" in result.stderr


def test_another_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    """--journal naming someone's database: refused before any table is written into it."""
    source = _source(tmp_path)
    foreign = tmp_path / "crm.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE contacts (id TEXT, phone TEXT)")
    db.close()
    before = foreign.read_bytes()
    result = _cli_import(source, "--journal", str(foreign))
    assert result.exit_code == 2, result.output
    assert "not a predial journal (it holds table contacts)" in result.stderr
    assert foreign.read_bytes() == before


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("UPDATE rows SET status = 'teleported' WHERE line = 2", "unknown status 'teleported'"),
        ("UPDATE rows SET line = 4000000000 WHERE line = 2", "records line 4000000000"),
        ("UPDATE rows SET line = -1 WHERE line = 2", "records line -1"),
        ("DELETE FROM meta", "has no stamp"),
    ],
)
def test_journal_contents_are_checked_as_read(tmp_path: Path, sql: str, message: str) -> None:
    """Unknown status, a line the file cannot have (no 3.9 GB array), a missing
    stamp: one JournalError naming the journal."""
    source = _source(tmp_path)
    path = Journal.default_path(source)
    journal = Journal(path, source=source, campaign_id=CAMPAIGN)
    journal.record(2, "created", identifier="A")
    journal.close()
    with sqlite3.connect(path) as db:
        db.execute(sql)
    db.close()
    result = _cli_import(source)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert str(path.name) in result.stderr
    with pytest.raises(PredialError, match=re.escape(message)) as caught:
        Journal(path, source=source, campaign_id=CAMPAIGN).statuses()
    assert type(caught.value).__name__ == "JournalError"


def test_a_journal_that_cannot_be_opened_is_one_clear_error(tmp_path: Path) -> None:
    """A journal path SQLite cannot open (a folder): a JournalError saying what to
    do, not sqlite3's OperationalError."""
    source = _source(tmp_path)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(PredialError, match="cannot be opened for writing") as caught:
        import_leads(
            source, CAMPAIGN, api_key=KEY, base_url="http://127.0.0.1:9", journal_path=folder
        )
    assert type(caught.value).__name__ == "JournalError"
    assert "pass another --journal" in str(caught.value)


def test_a_read_only_journal_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal SQLite may only read (opened with `mode=ro`, which holds as root
    too): exit 2, "make the file ... writable", never "delete it"."""
    source = _source(tmp_path)
    path = Journal.default_path(source)
    Journal(path, source=source, campaign_id=CAMPAIGN).close()
    real_connect = sqlite3.connect

    def read_only(database: str, **kwargs: Any) -> sqlite3.Connection:
        if kwargs.pop("uri", False):  # already read-only (which journal to use)
            return real_connect(database, uri=True, **kwargs)
        return real_connect(f"file:{database}?mode=ro", uri=True, **kwargs)

    monkeypatch.setattr("predial.lupitor._journal.sqlite3.connect", read_only)
    result = _cli_import(source)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "writable" in result.stderr
    assert "delete" not in result.stderr


class _FullDisk(sqlite3.Connection):
    """SQLite as it answers when the disk fills up: SQLITE_FULL on a write."""

    def executemany(self, sql: str, rows: Any, /) -> sqlite3.Cursor:
        if sql.startswith("INSERT INTO rows"):
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13
            error.sqlite_errorname = "SQLITE_FULL"
            raise error
        return super().executemany(sql, rows)


async def test_a_full_disk_mid_import_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write to the journal failing: a JournalError saying to free space and rerun,
    and the locks are let go."""
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(*args, **kwargs, factory=_FullDisk)

    monkeypatch.setattr("predial.lupitor._journal.sqlite3.connect", connect)
    source = _source(tmp_path)
    fake = FakeLupitor(window=0.05)
    async with in_process(fake) as client:
        with pytest.raises(PredialError, match="disk is full; free some space") as caught:
            await import_leads_async(source, CAMPAIGN, client=client)
    assert type(caught.value).__name__ == "JournalError"
    assert not _owner_file_left(source)


def test_new_errors_are_public_and_in_the_tree() -> None:
    """ImportInProgress and JournalError: exported, PredialErrors, drawn in the tree."""
    import predial
    import predial.errors

    for name in ("ImportInProgress", "JournalError"):
        error = getattr(predial, name)
        assert issubclass(error, PredialError)
        assert name in predial.__all__
        assert name in predial.errors.__all__
        assert f"── {name}" in (predial.errors.__doc__ or "")
    assert predial.errors.__all__ == sorted(predial.errors.__all__)


def test_the_header_is_read_even_when_the_first_row_is_bad(tmp_path: Path) -> None:
    """A first row that cannot be read is that row's error, not the header."""
    source = tmp_path / "leads.csv"
    source.write_bytes(b"externalId,name\nA,M\xfcller\n" + "B,Zoë\n".encode())
    rows = list(read_leads(source, campaign_id="c"))
    assert isinstance(rows[0], LeadRowError)
    assert "byte 0xFC" in rows[0].message
    assert isinstance(rows[1], LeadRow)
    assert rows[1].lead.external_id == "B"


# -- review of issue 10: nothing given is overwritten ---------------------------------


def _import_args(source: Path, *args: str) -> list[str]:
    return ["import", str(source), "--campaign", CAMPAIGN, "--api-url", "http://127.0.0.1:9", *args]


def test_rejects_naming_the_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    """`--rejects leads.csv` (the input, here through another spelling): exit 2
    before anything is read or written; the input is as it was."""
    source = tmp_path / "leads.csv"
    source.write_text("externalId,phone\nA,\nB,+15555551234\n")
    before = source.read_bytes()
    result = _cli_import(source, "--rejects", str(tmp_path / "." / "leads.csv"))
    assert result.exit_code == 2, result.output
    assert "--rejects" in result.stderr
    assert "that is the input file" in result.stderr
    assert source.read_bytes() == before
    assert not Journal.default_path(source).exists()


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_rejects_naming_the_journal_or_its_files_is_refused(tmp_path: Path, suffix: str) -> None:
    """`--rejects leads.csv.journal.sqlite` (or its -wal, -shm): refused, the
    journal stays the SQLite database it was."""
    source = _source(tmp_path)
    journal = Journal.default_path(source)
    Journal(journal, source=source, campaign_id=CAMPAIGN).close()
    target = Path(f"{journal}{suffix}")
    target.touch()
    before = journal.read_bytes()
    result = _cli_import(source, "--dry-run", "--rejects", str(target))
    assert result.exit_code == 2, result.output
    assert "which the rejected rows would overwrite" in result.stderr
    assert journal.read_bytes() == before
    assert target.read_bytes() == (before if not suffix else b"")


def test_rejects_naming_a_hard_link_to_the_input_is_refused(tmp_path: Path) -> None:
    """Another name of the same file (a hard link) is the same file."""
    source = _source(tmp_path)
    link = tmp_path / "same.csv"
    os.link(source, link)
    result = _cli_import(source, "--rejects", str(link))
    assert result.exit_code == 2, result.output
    assert "that is the input file" in result.stderr


def test_a_journal_naming_the_input_is_refused_without_advice_to_delete(tmp_path: Path) -> None:
    """`--journal leads.csv`: "that is the input file", never "delete it"."""
    source = _source(tmp_path)
    before = source.read_bytes()
    result = _cli_import(source, "--journal", str(source))
    assert result.exit_code == 2, result.output
    assert "--journal" in result.stderr
    assert "that is the input file" in result.stderr
    assert "delete" not in result.stderr
    assert source.read_bytes() == before
    assert not Path(f"{source}.lock").exists()


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"externalId,phone\nX,\n", "not an SQLite database"),
        (b"SQLite format 3\x00" + bytes(range(256)) * 16, "not marked as a predial journal"),
    ],
)
def test_a_journal_that_is_not_ours_is_never_to_be_deleted(
    tmp_path: Path, content: bytes, what: str
) -> None:
    """Another file, or a damaged SQLite database without predial's mark, as
    --journal: "not a predial journal ... pass another --journal", no "delete"."""
    source = _source(tmp_path)
    other = tmp_path / "other.csv"
    other.write_bytes(content)
    result = _cli_import(source, "--journal", str(other))
    assert result.exit_code == 2, result.output
    assert "not a predial journal" in result.stderr
    assert what in result.stderr
    assert "pass another --journal" in result.stderr
    assert "delete" not in result.stderr
    assert other.read_bytes() == content


# -- review: the older API and a fresh journal -------------------------------------------


async def test_a_rerun_with_a_fresh_journal_on_the_older_api_adds_nothing(tmp_path: Path) -> None:
    """v1 stores an externalId-only lead twice if sent twice: a second import of the
    file with another journal lists the campaign and reports every lead as already
    present; each lead is stored once."""
    source, expected = _leads_file(tmp_path)
    fake = FakeLupitor(version="v1", window=0.05)
    async with in_process(fake) as client:
        first = await import_leads_async(
            source, CAMPAIGN, client=client, journal_path=tmp_path / "first.journal"
        )
        second = await import_leads_async(
            source, CAMPAIGN, client=client, journal_path=tmp_path / "second.journal"
        )
    assert (first.created, first.rejected) == (len(expected), 1)
    assert stored(fake) == expected
    assert not second.resumed
    assert (second.created, second.already_present) == (0, len(expected))
    assert second.single_requests == 0
    assert second.accounted


@pytest.mark.parametrize("slow_api", ["v1"], indirect=True)
def test_wait_with_another_journal_adds_nothing_twice(
    tmp_path: Path, slow_api: tuple[FakeLupitor, str]
) -> None:
    """--wait and another --journal on the older API: the second import waits, then
    finds every lead already present; each is stored once."""
    fake, url = slow_api
    source, expected = _leads_file(tmp_path)
    first = _start_first(url, source, tmp_path / "leads.csv.journal.sqlite", fake)
    other = str(tmp_path / "other.journal")
    second_out, second_err, code, _ = _run_waiting_second(
        url, source, fake, first, "--journal", other
    )
    assert code == 0, second_err
    report = json.loads(second_out)
    assert not report["resumed"]
    assert (report["created"], report["already_present"]) == (0, len(expected))
    assert stored(fake) == expected


# -- review: locks and journal paths ---------------------------------------------------


def test_imports_with_different_temp_folders_and_journals_are_one_at_a_time(
    tmp_path: Path,
) -> None:
    """cron and a shell have different TMPDIRs: with another --journal too, the
    lock beside the input file still stops the second import."""
    from predial.errors import ImportInProgress
    from predial.lupitor._journal import ImportLock

    source = _source(tmp_path)
    (tmp_path / "cron").mkdir()
    (tmp_path / "shell").mkdir()
    tempfile.tempdir = str(tmp_path / "cron")
    held = ImportLock(tmp_path / "cron.journal", source, CAMPAIGN)
    held.acquire()
    try:
        tempfile.tempdir = str(tmp_path / "shell")
        with pytest.raises(ImportInProgress, match=f"pid {os.getpid()}"):
            import_leads(
                source,
                CAMPAIGN,
                api_key=KEY,
                base_url="http://127.0.0.1:9",
                journal_path=tmp_path / "shell.journal",
            )
    finally:
        held.release()
    assert not (tmp_path / "shell.journal").exists()


def test_a_journal_reached_through_a_symbolic_link_is_the_same_journal(tmp_path: Path) -> None:
    """The journal lock is keyed by the journal's resolved path: a symlink to a
    journal in use is refused, even for another file and campaign."""
    from predial.errors import ImportInProgress
    from predial.lupitor._journal import ImportLock

    source = _source(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("externalId\nZ\n")
    journal = tmp_path / "real.journal"
    link = tmp_path / "link.journal"
    link.symlink_to(journal)
    held = ImportLock(journal, source, CAMPAIGN)
    held.acquire()
    try:
        with pytest.raises(ImportInProgress):
            ImportLock(link, other, "cmp_other").acquire()
    finally:
        held.release()


async def test_an_input_folder_that_cannot_be_written_skips_that_lock_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No lock can be created beside the input (a read-only folder): the import runs
    under its other locks, and a warning says so once."""
    import errno

    from predial.lupitor import _journal as journal_module

    real_create = journal_module._create_lock_file

    def create(path: Path, mode: int) -> None:
        if path.name.endswith(".import.lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real_create(path, mode)

    monkeypatch.setattr(journal_module, "_create_lock_file", create)
    source = _source(tmp_path)
    fake = FakeLupitor(window=0.05)
    with caplog.at_level(logging.WARNING, logger="predial.lupitor._journal"):
        async with in_process(fake) as client:
            report = await import_leads_async(source, CAMPAIGN, client=client)
    assert report.created == 2
    warnings = [r.getMessage() for r in caplog.records if "beside the input" in r.getMessage()]
    assert len(warnings) == 1
    assert "Permission denied" in warnings[0]


def test_a_journal_in_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    """--journal in a folder that does not exist: one error naming that folder; the
    folder is not created, and nothing says another import is running."""
    source = _source(tmp_path)
    missing = tmp_path / "no-such-folder"
    result = _cli_import(source, "--journal", str(missing / "j.sqlite"))
    assert result.exit_code == 2, result.output
    assert f"the folder {missing} does not exist (No such file or directory)" in result.stderr
    assert "another import" not in result.stderr
    assert not missing.exists()


def test_a_lock_file_that_cannot_be_created_is_not_another_import(tmp_path: Path) -> None:
    """`--journal /proc/x.j`: its lock cannot be created there; the error names it and
    the system's reason, not "another import ... is running"."""
    source = _source(tmp_path)
    result = _cli_import(source, "--journal", "/proc/x.j")
    assert result.exit_code == 2, result.output
    assert "/proc/x.j.lock: cannot take the journal's lock" in result.stderr
    assert "another import" not in result.stderr


class _ReadOnlyFolder(sqlite3.Connection):
    """SQLite as it answers for a journal in a folder the user cannot write (seen as
    a non-root user): SQLITE_READONLY_DIRECTORY, an extended code, on any read."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        error = sqlite3.OperationalError("attempt to write a readonly database")
        error.sqlite_errorcode = 1544
        error.sqlite_errorname = "SQLITE_READONLY_DIRECTORY"
        raise error


def test_a_journal_in_a_read_only_folder_says_to_fix_the_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An extended "read-only" code: make the file and its folder writable, or pass
    another --journal; never "delete it"."""
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(*args, **kwargs, factory=_ReadOnlyFolder)

    monkeypatch.setattr("predial.lupitor._journal.sqlite3.connect", connect)
    source = _source(tmp_path)
    result = _cli_import(source)
    assert result.exit_code == 2, result.output
    assert f"and its folder ({tmp_path}) writable" in result.stderr
    assert "pass another --journal" in result.stderr
    assert "delete" not in result.stderr


# -- review: a tampered journal ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["TEXT", "REAL", "BLOB"])
def test_a_journal_whose_columns_have_other_types_is_one_error(tmp_path: Path, kind: str) -> None:
    """`rows` recreated with the right names but `line TEXT` (or REAL, BLOB): one
    JournalError line, exit 2, no TypeError traceback."""
    source = _source(tmp_path)
    path = Journal.default_path(source)
    Journal(path, source=source, campaign_id=CAMPAIGN).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE rows")
        db.execute(
            f"CREATE TABLE rows (line {kind} PRIMARY KEY, status TEXT NOT NULL, "
            "identifier TEXT, lead_id TEXT, column_name TEXT, reason TEXT)"
        )
        db.execute("INSERT INTO rows (line, status) VALUES ('2', 'created')")
        db.execute("INSERT INTO rows (line, status) VALUES (3, 'created')")
    db.close()
    result = _cli_import(source)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"its table rows is not a predial journal's (columns line {kind}," in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1


def test_a_journal_value_of_the_wrong_type_is_one_error(tmp_path: Path) -> None:
    """A rejected row's reason stored as a BLOB: a JournalError as it is read, and
    no rejects file with `b'...'` in it."""
    source = tmp_path / "leads.csv"
    source.write_text("externalId,phone\nA,\nB,+15555551234\n")
    path = Journal.default_path(source)
    journal = Journal(path, source=source, campaign_id=CAMPAIGN)
    journal.record(2, "created", identifier="A")
    journal.record(3, "rejected", column="phone", reason="fictional")
    journal.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE rows SET reason = X'00ff' WHERE line = 3")
    db.close()
    rejects = tmp_path / "rejects.csv"
    with pytest.raises(PredialError, match="line 3 has a column or reason that is not text"):
        import_leads(
            source, CAMPAIGN, api_key=KEY, base_url="http://127.0.0.1:9", rejects_path=rejects
        )
    assert not rejects.exists()


def test_a_line_past_the_file_says_how_long_the_file_is(tmp_path: Path) -> None:
    """The bound on line numbers is the file's size in bytes, and said to be."""
    source = _source(tmp_path)
    path = Journal.default_path(source)
    journal = Journal(path, source=source, campaign_id=CAMPAIGN)
    journal.record(500, "created", identifier="A")
    journal.close()
    size = source.stat().st_size
    with pytest.raises(PredialError) as caught:
        Journal(path, source=source, campaign_id=CAMPAIGN).statuses()
    assert f"the file is {size} bytes long, so no line can be numbered over {size + 1}" in str(
        caught.value
    )


# -- review: what the rejects file keeps of unreadable rows ----------------------------


async def test_a_row_with_a_bad_byte_keeps_its_values_in_the_rejects_file(tmp_path: Path) -> None:
    """`M\\xfcller` in a UTF-8 file: the rejects row holds its values, the bad byte as
    `\\xFC` text; a NUL as `\\x00`; values past the header go to `extra`."""
    source = tmp_path / "leads.csv"
    source.write_bytes(
        b"externalId,name\n"
        + "A,Zoë\n".encode()
        + b"B,M\xfcller\n"
        + b"C,nul\x00here\n"
        + b"D,ok,stray,=1+1\n"
    )
    rejects = tmp_path / "rejects.csv"
    report = await import_leads_async(source, CAMPAIGN, dry_run=True, rejects_path=rejects)
    assert (report.rejected, report.sendable) == (3, 1)
    with rejects.open(newline="", encoding="utf-8") as file:
        table = list(csv.reader(file))
    assert table[0][4:] == ["externalId", "name", "extra"]
    assert table[1][4:] == ["B", "M\\xFCller", ""]
    assert table[2][4:] == ["C", "nul\\x00here", ""]
    assert table[3][4:] == ["D", "ok", '["stray", "=1+1"]']
    assert "NUL byte" in table[2][3]


async def test_a_jsonl_row_with_a_bad_byte_keeps_its_values_and_other_keys(
    tmp_path: Path,
) -> None:
    """JSON Lines: the bad row's values, the byte as `\\xE9`; keys that are not among
    the columns go to `extra` as an object."""
    source = tmp_path / "leads.jsonl"
    source.write_bytes(
        '{"externalId": "A", "name": "Zoë"}\n'.encode()
        + b'{"externalId": "B", "name": "Ren\xe9", "notes": "x"}\n'
    )
    rejects = tmp_path / "rejects.csv"
    report = await import_leads_async(source, CAMPAIGN, dry_run=True, rejects_path=rejects)
    assert report.rejected == 1
    [row] = rejects_of(rejects)
    assert (row["externalId"], row["name"], row["extra"]) == ("B", "Ren\\xE9", '{"notes": "x"}')


# -- review: NUL bytes and UTF-16 without a byte-order mark ----------------------------


async def test_a_nul_byte_late_in_the_file_rejects_its_row(tmp_path: Path) -> None:
    """A NUL at line 20,002 is that row's rejection ("NUL byte"), never part of an
    externalId; the rows around it are imported."""
    source = tmp_path / "leads.csv"
    source.write_bytes(b"externalId,name\n" + _ascii_rows(20_000) + b"X\x00Y,late\n" + b"Z,after\n")
    rejects = tmp_path / "rejects.csv"
    report = await import_leads_async(source, CAMPAIGN, dry_run=True, rejects_path=rejects)
    assert (report.rows, report.rejected, report.sendable) == (20_002, 1, 20_001)
    [row] = rejects_of(rejects)
    assert row["line"] == "20002"
    assert "NUL byte" in row["reason"]
    assert "column 'externalId'" in row["reason"]


async def test_a_few_nul_bytes_early_reject_their_rows_not_the_file(tmp_path: Path) -> None:
    """Two NULs in the first 64 KB of a text file: two rejected rows, not "binary"."""
    source = tmp_path / "leads.csv"
    source.write_bytes(b"externalId,name\nA,ok\nB,pad\x00\nC,ok\n" + _ascii_rows(100) + b"D,\x00\n")
    report = await import_leads_async(source, CAMPAIGN, dry_run=True)
    assert (report.rejected, report.sendable) == (2, 102)


@pytest.mark.parametrize(("codec", "order"), [("utf-16-le", "le"), ("utf-16-be", "be")])
def test_utf16_without_a_byte_order_mark_names_the_encoding_to_pass(
    tmp_path: Path, codec: str, order: str
) -> None:
    """UTF-16 without its mark is not "binary": the error says UTF-16 and the
    --encoding to pass, which then reads it."""
    source = tmp_path / "leads.csv"
    source.write_bytes("externalId,name\nA,Zoë\nB,日本\n".encode(codec))
    with pytest.raises(InputFileError, match=f"UTF-16 without a byte-order mark.*utf-16-{order}"):
        list(read_rows(source))
    rows = [row.fields for row in read_rows(source, encoding=f"utf-16-{order}")]
    assert rows == [{"externalId": "A", "name": "Zoë"}, {"externalId": "B", "name": "日本"}]


def test_a_file_that_looks_binary_is_still_refused(tmp_path: Path) -> None:
    """Many control bytes and NULs (a spreadsheet's zip, say): "binary"."""
    import random

    source = tmp_path / "leads.csv"
    source.write_bytes(b"PK\x03\x04" + random.Random(7).randbytes(70_000))
    with pytest.raises(InputFileError, match="looks like a binary file"):
        list(read_rows(source))


# -- review: a byte-order mark under an explicit encoding ------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
async def test_an_explicit_encoding_drops_the_byte_order_mark_from_the_first_column(
    tmp_path: Path, codec: str
) -> None:
    """`--encoding utf-16-le` on a file with its mark: the first column is
    `externalId` (mapped to the id), not U+FEFF + `externalId` (metadata)."""
    source = tmp_path / "leads.csv"
    source.write_bytes("\ufeffexternalId,name\nA,Zoë\n".encode(codec))
    report = await import_leads_async(source, CAMPAIGN, dry_run=True, encoding=codec)
    assert report.columns == "external_id <- 'externalId'; metadata <- 'name'"
    assert report.sendable == 1


def test_a_jsonl_file_read_with_an_explicit_encoding_keeps_its_first_line(tmp_path: Path) -> None:
    """The first JSON line after a byte-order mark the codec kept is read, not refused."""
    source = tmp_path / "leads.jsonl"
    source.write_bytes('\ufeff{"externalId": "A"}\n'.encode("utf-16-le"))
    assert [row.fields for row in read_rows(source, encoding="utf-16-le")] == [{"externalId": "A"}]


# -- review: wording -------------------------------------------------------------------


def test_a_dry_run_report_says_what_it_would_send(tmp_path: Path) -> None:
    """The dry run's text report: "would send 2", not "created 0"."""
    source = _source(tmp_path)
    result = CliRunner().invoke(cli, ["import", str(source), "--campaign", CAMPAIGN, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert re.search(r"would send\s+2\n", result.stdout)
    assert "created" not in result.stdout


# -- review: reading in linear time ----------------------------------------------------


def test_the_delimiter_is_found_without_csv_sniffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """csv.Sniffer is quadratic on quoted samples (23 s for 64 KB of `c, "a`): the
    delimiter is found by parsing the first records with each candidate."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("csv.Sniffer was used")

    monkeypatch.setattr(csv.Sniffer, "sniff", refuse)
    hostile = tmp_path / "hostile.csv"
    hostile.write_text("externalId,note\n" + 'c, "a' * 12_000 + "\nB,x\n")
    assert [row.line for row in read_rows(hostile)] == [2, 3]
    samples = {
        ",": ('id,"a;b",c\n1,"x;y",3\n', ["id", "a;b", "c"]),
        ";": ("CRM ID;Phone;DNC\nX1;+33 6 12 34 56 78;0\nX2;1,5;1\n", ["CRM ID", "Phone", "DNC"]),
        "\t": ("id\tname\n1\tA, B\n", ["id", "name"]),
        "|": ("id|name|n\n1|a;b|2\n", ["id", "name", "n"]),
    }
    for delimiter, (text, header) in samples.items():
        path = tmp_path / "sample.csv"
        path.write_text(text)
        assert list(next(read_rows(path)).fields) == header, delimiter


def test_comma_wins_a_tie_and_a_single_column(tmp_path: Path) -> None:
    """Two delimiters giving as many columns: comma; one column: comma."""
    path = tmp_path / "tie.csv"
    path.write_text("a;b,c\n1;2,3\n")
    assert list(next(read_rows(path)).fields) == ["a;b", "c"]
    path.write_text("externalId\nA;B\n")
    assert next(read_rows(path)).fields == {"externalId": "A;B"}


def test_a_header_of_40000_columns_names_its_duplicates(tmp_path: Path) -> None:
    """The duplicate check counts names once (it was quadratic: 41 s here)."""
    from predial._tabular import read_header

    names = [f"c{i}" for i in range(40_000)] + ["c7", "c5", "c7"]
    path = tmp_path / "wide.csv"
    path.write_text(",".join(names) + "\n")
    with pytest.raises(InputFileError, match="duplicate column names: c5, c7$"):
        read_header(path)


# -- review: line ends of JSON Lines ---------------------------------------------------


def test_a_jsonl_file_with_cr_only_line_ends_says_so(tmp_path: Path) -> None:
    """Old-Mac CR line ends: "carriage return only", not "no column for the external id"."""
    source = tmp_path / "leads.jsonl"
    source.write_bytes(b'{"externalId": "A"}\r{"externalId": "B"}\r')
    result = CliRunner().invoke(cli, ["import", str(source), "--campaign", CAMPAIGN, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "end with a carriage return only" in result.stderr
    assert "no column" not in result.stderr


def test_a_jsonl_file_without_line_ends_says_so(tmp_path: Path) -> None:
    """Objects run together on one line: "the file has no line ends"; one bad line
    that does end is only "no JSON object could be read"."""
    source = tmp_path / "leads.jsonl"
    source.write_bytes(b'{"externalId": "A"}{"externalId": "B"}')
    with pytest.raises(InputFileError, match="the file has no line ends"):
        import_leads(source, CAMPAIGN, dry_run=True)
    source.write_bytes(b"not json\n")
    with pytest.raises(InputFileError, match=r"no JSON object could be read .*\(line 1: invalid"):
        import_leads(source, CAMPAIGN, dry_run=True)
