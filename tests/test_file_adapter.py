"""The built-in `file` adapter: CSV, JSONL and SQLite CRM exports."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from predial import CacheSettings, CrmContact, Lead, RecordNotFound
from predial.adapters._file import FileAdapter


def fetch(adapter: FileAdapter, external_id: str) -> CrmContact:
    return asyncio.run(adapter.fetch_phone(external_id))


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "crm.csv"
    path.write_text(
        "\ufeffid,name,mobile_phone,home_phone,do_not_call\n"
        'C-1,"Ada, Countess",(202) 456-1111,,no\n'
        'C-2,"Alan\nTuring",+44 7400 123456,+44 121 234 5678,\n'
        "C-3,Edsger,+31 6 12345678,,yes\n",
        encoding="utf-8",
    )
    return path


def test_reads_an_excel_style_csv(export: Path) -> None:
    """BOM, quoted commas and newlines; columns found by name; labels from column names."""
    adapter = FileAdapter(export)
    contact = fetch(adapter, "C-2")
    assert [(p.label, p.value) for p in contact.phones] == [
        ("mobile", "+44 7400 123456"),
        ("home", "+44 121 234 5678"),
    ]
    assert not contact.do_not_call


def test_do_not_call_column(export: Path) -> None:
    """yes/true/1/x in the do-not-call column flags the record."""
    assert fetch(FileAdapter(export), "C-3").do_not_call


def test_unknown_id_is_not_found(export: Path) -> None:
    """An id that is not in the export raises RecordNotFound."""
    with pytest.raises(RecordNotFound):
        fetch(FileAdapter(export), "C-404")


def test_semicolon_export(tmp_path: Path) -> None:
    """European Excel exports use semicolons: the delimiter is sniffed."""
    path = tmp_path / "crm.csv"
    path.write_text("CRM ID;Phone;DNC\nX1;+33 6 12 34 56 78;0\nX2;+33 1 23 45 67 89;1\n")
    adapter = FileAdapter(path)
    assert adapter.id_column == "CRM ID"
    assert fetch(adapter, "X1").phones[0].value == "+33 6 12 34 56 78"
    assert fetch(adapter, "X2").do_not_call


def test_explicit_columns_and_primary(export: Path) -> None:
    """phone_columns maps labels to columns; primary names the primary label."""
    adapter = FileAdapter(
        export, phone_columns={"main": "home_phone", "cell": "mobile_phone"}, primary="main"
    )
    phones = fetch(adapter, "C-2").phones
    assert [(p.label, p.primary) for p in phones] == [("main", True), ("cell", False)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id_column": "crm"}, "id_column"),
        ({"phone_columns": ["fax"]}, "phone_columns: fax"),
        ({"dnc_column": "blocked"}, "dnc_column"),
    ],
)
def test_wrong_columns_are_named(export: Path, kwargs: dict[str, object], message: str) -> None:
    """A column that is not in the file is named, with the columns that are."""
    with pytest.raises(ValueError, match=message) as caught:
        FileAdapter(export, **kwargs)
    assert "mobile_phone" in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is a settings error."""
    with pytest.raises(ValueError, match="does not exist"):
        FileAdapter(tmp_path / "nope.csv")


def test_reloads_when_the_export_changes(export: Path) -> None:
    """A new nightly export is picked up without a restart."""
    adapter = FileAdapter(export, reload_interval=0)
    before = fetch(adapter, "C-1").phones[0].value
    export.write_text("id,mobile_phone\nC-1,+1 202 456 1414\n")
    stat = export.stat()
    os.utime(export, (stat.st_atime, stat.st_mtime + 5))
    after = fetch(adapter, "C-1").phones[0].value
    assert (before, after) == ("(202) 456-1111", "+1 202 456 1414")


def test_jsonl_export(tmp_path: Path) -> None:
    """One JSON object per line works too."""
    path = tmp_path / "crm.jsonl"
    path.write_text(json.dumps({"id": "J1", "phone": "+12024561111", "dnc": False}) + "\n")
    assert fetch(FileAdapter(path), "J1").phones[0].value == "+12024561111"


def test_sqlite_export(tmp_path: Path) -> None:
    """A SQLite export is queried per lookup, read-only, with the id as a parameter."""
    path = tmp_path / "crm.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE contacts (id TEXT, mobile TEXT, home_phone TEXT, dnc INT)")
        connection.execute("INSERT INTO contacts VALUES ('S1', '+12024561111', NULL, 0)")
        connection.execute("INSERT INTO contacts VALUES ('S2', '+12024561414', NULL, 1)")
    connection.close()
    adapter = FileAdapter(path)
    assert fetch(adapter, "S1").phones[0].value == "+12024561111"
    assert fetch(adapter, "S2").do_not_call
    for hostile in ("' OR '1'='1", "S1' --", "S1; DROP TABLE contacts"):
        with pytest.raises(RecordNotFound):
            fetch(adapter, hostile)
    assert fetch(adapter, "S1").phones  # the table is still there
    adapter.close()


def test_sqlite_with_several_tables_needs_a_table_name(tmp_path: Path) -> None:
    """Which table is ambiguous: say so."""
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE a (id TEXT, phone TEXT)")
        connection.execute("CREATE TABLE b (id TEXT, phone TEXT)")
    connection.close()
    with pytest.raises(ValueError, match="table"):
        FileAdapter(path)
    assert FileAdapter(path, table="b").table == "b"


# -- an export rewritten while it is read -----------------------------------------


def _export(numbers: dict[str, str]) -> bytes:
    return ("id,phone\n" + "".join(f"{key},{value}\n" for key, value in numbers.items())).encode()


def _age(path: Path, seconds: float) -> None:
    """Make the file look written `seconds` ago (settled)."""
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime - seconds))


async def test_an_export_rewritten_in_place_is_never_served_half_written(tmp_path: Path) -> None:
    """The export is rewritten in place byte by byte while 50 tasks resolve in a loop: every
    number served is the old or the new one of its id, and no id is ever "not found"."""
    from predial import Campaign, Resolution, Resolver, Unresolvable

    # German numbers vary in length: a cut-off one is still a valid number.
    old = {f"C-{n}": f"+4930123456{n:03d}" for n in range(40)}
    new = {f"C-{n}": f"+4940987654{n:03d}" for n in range(40)}
    path = tmp_path / "crm.csv"
    path.write_bytes(_export(old))
    _age(path, 10)
    resolver = Resolver(
        [
            Campaign(
                "cmp",
                "file",
                # A writer paused past settle_time is read half-written (documented):
                # a margin wide enough for a loaded machine's scheduling pauses.
                {"path": str(path), "reload_interval": 0, "settle_time": 1.0},
                default_region="DE",
            )
        ],
        cache=CacheSettings(positive_ttl=0, negative_ttl=0, stale_grace=0),
        deadline=5.0,
    )
    served: list[tuple[str, str]] = []
    refusals: list[str] = []
    writing = True

    def rewrite() -> None:
        with path.open("wb") as file:  # truncates, as `export > crm.csv` does
            for byte in _export(new):
                file.write(bytes([byte]))
                file.flush()
                time.sleep(0.001)

    async def dial(worker: int) -> None:
        n = worker
        while writing:
            external_id = f"C-{n % 40}"
            n += 7
            try:
                result = await resolver.resolve(Lead(campaign_id="cmp", external_id=external_id))
            except Unresolvable as refusal:
                refusals.append(refusal.reason)
            else:
                assert isinstance(result, Resolution)
                served.append((external_id, result.phone_number))
            await asyncio.sleep(0)

    async with resolver:
        dialers = [asyncio.create_task(dial(worker)) for worker in range(50)]
        await asyncio.sleep(0.05)
        await asyncio.to_thread(rewrite)
        await asyncio.sleep(1.4)  # past the settle time: the new export is swapped in
        writing = False
        await asyncio.gather(*dialers)
    wrong = [(key, number) for key, number in served if number not in (old[key], new[key])]
    assert not wrong
    assert not refusals
    assert {number for _, number in served[-50:]} <= set(new.values())


def test_a_reload_that_fails_is_unavailable_not_not_found(export: Path) -> None:
    """The export vanished or lost its id column: lookups say "unavailable", and the
    ids it held are not reported as missing."""
    from predial import AdapterUnavailable

    adapter = FileAdapter(export, reload_interval=0, settle_time=0)
    assert fetch(adapter, "C-1").phones
    export.write_text("name,mobile_phone\nAda,+12024561111\n")
    with pytest.raises(AdapterUnavailable, match="no id column"):
        fetch(adapter, "C-1")
    export.unlink()
    with pytest.raises(AdapterUnavailable, match="cannot be read"):
        fetch(adapter, "C-1")


def test_a_file_being_written_keeps_the_previous_export(export: Path) -> None:
    """A changed export younger than settle_time is not swapped in yet."""
    adapter = FileAdapter(export, reload_interval=0, settle_time=60)
    _age(export, 120)
    assert fetch(adapter, "C-1").phones[0].value == "(202) 456-1111"
    export.write_text("id,mobile_phone\nC-1,+1 202 456 1414\n")
    assert fetch(adapter, "C-1").phones[0].value == "(202) 456-1111"
    _age(export, 120)
    assert fetch(adapter, "C-1").phones[0].value == "+1 202 456 1414"


def test_a_first_load_waits_for_a_half_written_file(tmp_path: Path) -> None:
    """The first lookup waits for an export whose last line is not finished yet."""
    path = tmp_path / "crm.csv"
    path.write_text("id,phone\nC-1,+4930123")

    def finish() -> None:
        time.sleep(0.2)
        with path.open("a") as file:
            file.write("456789\n")

    writer = threading.Thread(target=finish)
    writer.start()
    try:
        contact = fetch(FileAdapter(path, settle_time=0.5), "C-1")
    finally:
        writer.join()
    assert contact.phones[0].value == "+4930123456789"


def test_rows_that_cannot_be_read_are_skipped(tmp_path: Path) -> None:
    """A JSON Lines row that is not an object is skipped; the others are served."""
    path = tmp_path / "crm.jsonl"
    path.write_text(
        '{"id": "J1", "phone": "+12024561111"}\n[1, 2]\n{"id": "J2", "phone": "+12024561414"}\n'
    )
    adapter = FileAdapter(path)
    assert fetch(adapter, "J2").phones[0].value == "+12024561414"


def test_a_future_mtime_is_no_proof_that_writing_ended(export: Path) -> None:
    """A file server whose clock runs ahead stamps a half-written export in the future:
    one that stops mid-line is not swapped in."""
    adapter = FileAdapter(export, reload_interval=0, settle_time=60)
    _age(export, 120)
    assert fetch(adapter, "C-1").phones[0].value == "(202) 456-1111"
    export.write_text("id,mobile_phone\nC-1,+1 202 456 1414\nC-2,+1 202 45")
    _age(export, -30)  # 30 s in the future
    assert fetch(adapter, "C-1").phones[0].value == "(202) 456-1111"
    with export.open("a") as file:
        file.write("6 1111\n")
    _age(export, -30)
    assert fetch(adapter, "C-2").phones[0].value == "+1 202 456 1111"


def test_an_export_of_no_records_is_unavailable(export: Path) -> None:
    """A header with no rows is a failed export job: "retry later", not "not found"."""
    from predial import AdapterUnavailable

    adapter = FileAdapter(export, reload_interval=0, settle_time=0)
    assert fetch(adapter, "C-1").phones
    export.write_text("id,name,mobile_phone,home_phone,do_not_call\n")
    with pytest.raises(AdapterUnavailable, match="no records"):
        fetch(adapter, "C-1")


@pytest.mark.parametrize("value", ["abc", float("nan"), -1, True])
def test_time_settings_must_be_seconds(export: Path, value: object) -> None:
    """settle_time and reload_interval are checked: a clear error, not a TypeError later."""
    with pytest.raises(ValueError, match="settle_time"):
        FileAdapter(export, settle_time=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reload_interval"):
        FileAdapter(export, reload_interval=value)  # type: ignore[arg-type]
