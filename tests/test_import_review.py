"""issue 13, the hostile review of `predial import`: a dry run after a killed
import, the rejects file a dry run must not overwrite, options found wrong only
after every row was sent. Each through the CLI against the fake API on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from predial.cli.app import cli
from predial.errors import ConfigurationError
from predial.lupitor import importer as importer_module
from predial.lupitor.importer import import_leads
from predial.testing import FakeLupitor, serve

REPO = Path(__file__).resolve().parent.parent
KEY = "sk_test_write"


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
    """The README's messy example file (16 sendable rows, 2 rejected)."""
    path = tmp_path / "import-leads.csv"
    shutil.copy(REPO / "examples" / "import-leads.csv", path)
    return path


def run_import(url: str, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["import", *args, "--api-url", url, "--rate-window", "0.05"],
        env={"LUPITOR_API_KEY": KEY},
        catch_exceptions=False,
    )


def sent_leads(fake: FakeLupitor) -> int:
    """Leads put into create requests (bulk and single) so far."""
    return sum(request.leads for request in fake.requests if request.method == "POST")


# -- 2. a dry run after a killed import ---------------------------------------------------


def test_a_dry_run_after_a_kill_counts_what_the_rerun_sends_also_in_json(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    """A regression check (fixed before this review: `sendable 327, resumed false,
    journal null`): the dry run's JSON says the rerun's number and names the journal."""
    fake, url = api
    common = [str(example), "--campaign", "cmp_1", "--region", "US", "--batch-size", "4"]
    assert run_import(url, *common).exit_code == 0
    journal = example.parent / "import-leads.csv.journal.sqlite"
    with sqlite3.connect(journal) as db:  # what a kill leaves: a batch in flight, one unsent
        db.execute("UPDATE rows SET status = 'sending' WHERE line IN (2, 3, 4, 5)")
        db.execute("DELETE FROM rows WHERE line IN (8, 12)")
    db.close()
    dry = run_import(url, *common, "--dry-run", "--json")
    report = json.loads(dry.stdout)
    assert (report["resumed"], report["journal"], report["in_flight"]) == (True, str(journal), 4)
    before = sent_leads(fake)
    real = json.loads(run_import(url, *common, "--json").stdout)
    assert sent_leads(fake) - before == report["sendable"] == real["sendable"]


def test_a_dry_run_does_not_overwrite_the_real_runs_rejects(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    """The real run's rejects file is the operator's list of rows to fix: a dry run
    with the same command line refuses it in one line, before anything is read."""
    _, url = api
    rejects = example.parent / "rejects.csv"
    common = [str(example), "--campaign", "cmp_1", "--region", "US", "--rejects", str(rejects)]
    assert run_import(url, *common).exit_code == 0
    written = rejects.read_bytes()
    journal = example.parent / "import-leads.csv.journal.sqlite"
    # The same file by another name (a symbolic link) is the same file.
    link = example.parent / "link.csv"
    link.symlink_to(rejects)
    for named in (rejects, link):
        result = run_import(
            url, *common[:-1], str(named), "--dry-run", *(["--json"] * (named == link))
        )
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [
            f"error: --rejects {named}: the real import recorded in {journal} wrote its "
            "rejected rows there, and a dry run does not overwrite them; name another file "
            f"(e.g. --rejects {named.with_name(named.stem + '.dry-run.csv')}) or leave "
            "--rejects out"
        ]
        assert result.stdout == ""
    assert rejects.read_bytes() == written
    # Another file is written when asked; the real run still rewrites its own.
    other = example.parent / "dry.csv"
    result = run_import(url, *common[:-1], str(other), "--dry-run")
    assert result.exit_code == 0, result.output
    assert other.read_text("utf-8-sig").startswith("line,status,column,reason,")
    assert run_import(url, *common).exit_code == 0
    assert rejects.read_bytes() == written


def test_a_dry_run_may_write_where_no_real_run_wrote(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    """Without a real run's rejects there (no journal yet, or the file is gone), the
    file named is written: the operator asked for it."""
    _, url = api
    rejects = example.parent / "rejects.csv"
    common = [str(example), "--campaign", "cmp_1", "--region", "US", "--rejects", str(rejects)]
    assert run_import(url, *common, "--dry-run").exit_code == 0
    assert run_import(url, *common, "--dry-run").exit_code == 0  # its own: rewritten
    assert run_import(url, *common).exit_code == 0
    rejects.unlink()
    assert run_import(url, *common, "--dry-run").exit_code == 0
    assert rejects.exists()


# -- 3. bad arguments are found before anything is sent ----------------------------------


def test_a_rejects_file_in_a_missing_folder_is_refused_before_anything_is_sent(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    fake, url = api
    target = example.parent / "missing" / "r.csv"
    result = run_import(url, str(example), "--campaign", "cmp_1", "--rejects", str(target))
    assert result.exit_code == 2, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: --rejects {target}: the folder {target.parent} does not exist; create it, "
        "or name a file in a folder that exists"
    ]
    assert fake.requests == []
    assert not (example.parent / "import-leads.csv.journal.sqlite").exists()


def test_a_rejects_file_under_a_file_is_refused(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    fake, url = api
    target = example / "r.csv"
    result = run_import(url, str(example), "--campaign", "cmp_1", "--rejects", str(target))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: --rejects {target}: {example} is a file, not a folder; name a file in a folder"
    )
    assert fake.requests == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_device_as_rejects_file_is_refused(api: tuple[FakeLupitor, str], example: Path) -> None:
    fake, url = api
    result = run_import(url, str(example), "--campaign", "cmp_1", "--rejects", "/dev/full")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        "error: --rejects /dev/full: not a regular file (a device, a pipe or a socket); "
        "name a file to write the rejected rows to"
    )
    assert fake.requests == []


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root writes")
def test_a_rejects_file_in_a_read_only_folder_is_refused(
    api: tuple[FakeLupitor, str], example: Path, tmp_path: Path
) -> None:
    fake, url = api
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        target = folder / "r.csv"
        result = run_import(url, str(example), "--campaign", "cmp_1", "--rejects", str(target))
    finally:
        folder.chmod(stat.S_IRWXU)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith(
        f"error: --rejects {target}: no file can be written in {folder} ("
    )
    assert fake.requests == []


def test_a_read_only_folder_is_found_by_writing_in_it(
    tmp_path: Path, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root a mode says nothing: the folder is tried, and what the try meets is
    the answer (here a folder refusing files, as a read-only mount does)."""

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(importer_module.tempfile, "mkstemp", refuse)
    with pytest.raises(ConfigurationError) as caught:
        import_leads(example, "cmp_1", rejects_path=tmp_path / "r.csv", dry_run=True)
    assert str(caught.value) == (
        f"--rejects {tmp_path / 'r.csv'}: no file can be written in {tmp_path} (Read-only "
        "file system); make it writable, or name a file in another folder"
    )


def test_a_rejects_file_is_replaced_whole_and_keeps_its_mode(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    """Written beside itself and put in place: no temporary file is left, the mode
    an operator gave it stays, and a failure leaves the earlier file as it was."""
    _, url = api
    rejects = example.parent / "rejects.csv"
    rejects.write_text("an earlier list\n")
    rejects.chmod(0o640)
    common = [str(example), "--campaign", "cmp_1", "--region", "US", "--rejects", str(rejects)]
    assert run_import(url, *common).exit_code == 0
    assert rejects.read_text("utf-8-sig").startswith("line,status,column,reason,")
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o640
    assert [path.name for path in example.parent.iterdir() if path.name.endswith(".tmp")] == []


def test_a_rejects_file_that_cannot_be_written_at_the_end_is_one_line(
    api: tuple[FakeLupitor, str], example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up during the import: one line naming --rejects and what to
    do, the earlier rejects file untouched, no temporary file left."""
    _, url = api
    rejects = example.parent / "rejects.csv"
    rejects.write_text("an earlier list\n")
    real_replace = os.replace

    def full(source: str | Path, target: str | Path) -> None:
        if str(target) == str(rejects):
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(importer_module.os, "replace", full)
    result = run_import(
        url, str(example), "--campaign", "cmp_1", "--region", "US", "--rejects", str(rejects)
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: --rejects {rejects}: could not be written (No space left on device); the "
        "import itself is journaled: rerun the same command (nothing is sent again) with "
        "--rejects naming a file where there is room"
    )
    assert rejects.read_text() == "an earlier list\n"
    assert [path.name for path in example.parent.iterdir() if path.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("campaign", "message"),
    [
        ("", "a campaign id cannot be empty; give the campaign's id, e.g. cmp_1"),
        ("   ", "a campaign id cannot be empty; give the campaign's id, e.g. cmp_1"),
        (
            "c" * 257,
            "the campaign id is 257 characters long; Lupitor's are at most 256: give the "
            "campaign's id, e.g. cmp_1",
        ),
        (" cmp_1", "' cmp_1' has blanks around it; give the id without them"),
        (
            "cmp\x1b[2J",
            "'cmp\\x1b[2J' holds a control character; give the campaign's id as shown",
        ),
    ],
)
def test_a_campaign_id_the_api_cannot_take_is_refused_up_front(
    api: tuple[FakeLupitor, str], example: Path, campaign: str, message: str
) -> None:
    """Not 346 rows rejected as `unreadable row` and exit 0: one line, exit 2."""
    fake, url = api
    for dry_run in ([], ["--dry-run"]):
        result = run_import(url, str(example), "--campaign", campaign, *dry_run)
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [f"error: --campaign: {message}"]
        assert result.stdout == ""
    assert fake.requests == []
    assert list(example.parent.iterdir()) == [example]


def test_a_256_character_campaign_id_is_taken(example: Path) -> None:
    report = import_leads(example, "c" * 256, region="US", dry_run=True)
    assert report.sendable == 16


def test_the_library_refuses_a_campaign_id_too(example: Path) -> None:
    with pytest.raises(ValueError, match="^campaign_id: a campaign id cannot be empty"):
        import_leads(example, "", dry_run=True)
