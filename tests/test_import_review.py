"""issue 13, the hostile review of `predial import`: a dry run after a killed
import, the rejects file a dry run must not overwrite, options found wrong only
after every row was sent. Each through the CLI against the fake API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from predial.cli._app import cli
from predial.cli._import_cmd import _Estimate, _progress_view, _sigterm_as_interrupt
from predial.errors import ConfigurationError
from predial.lupitor import ImportProgress, Waiting
from predial.lupitor import _importer as importer_module
from predial.lupitor._importer import import_leads
from predial.lupitor._journal import recorded_counts
from predial.testing import FakeLupitor, Faults, serve

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


def test_a_read_only_rejects_file_is_kept(
    example: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The file is put in place by replacing it, which a read-only file does not
    stop: it is refused instead (tried through os.access, as root may write any)."""
    rejects = tmp_path / "kept.csv"
    rejects.write_text("mine\n")
    real_access = os.access
    monkeypatch.setattr(
        importer_module.os,
        "access",
        lambda path, mode: False if Path(path) == rejects else real_access(path, mode),
    )
    with pytest.raises(ConfigurationError) as caught:
        import_leads(example, "cmp_1", rejects_path=rejects, dry_run=True)
    assert str(caught.value) == (
        f"--rejects {rejects}: the file is read-only; make it writable, or name another file"
    )
    assert rejects.read_text() == "mine\n"


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


# -- 4. progress and signals ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_short_import_ends_its_log_on_a_last_progress_line(
    api: tuple[FakeLupitor, str], example: Path
) -> None:
    """Shorter than the 5 s between lines, the log used to hold the 0% line alone."""
    _, url = api
    result = run_import(url, str(example), "--campaign", "cmp_1", "--region", "US")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("importing:")]
    assert lines[0].startswith("importing: 0/20 rows settled (0%), 0 sent, ")
    assert re.fullmatch(
        r"importing: 20/20 rows settled \(100%\), 16 sent, [\d,.]+ rows/s, done", lines[-1]
    ), lines


def test_a_dry_run_says_checking_and_counts_what_it_would_send(example: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["import", str(example), "--campaign", "cmp_1", "--region", "US", "--dry-run"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("columns:", " "))]
    assert lines[0] == "checking: 0/20 rows checked (0%), 0 would send, - rows/s"
    assert re.fullmatch(
        r"checking: 20/20 rows checked \(100%\), 16 would send, [\d,.]+ rows/s, done", lines[-1]
    ), lines
    assert "importing" not in result.stderr


def test_the_eta_holds_while_nothing_settles() -> None:
    """A stall (a slow answer, a wait) used to make the rate fall and the ETA climb
    second by second: the rate is the one measured up to the last settled row."""
    clock = Clock()
    estimate = _Estimate(clock)
    estimate.update(ImportProgress(total=1_000, settled=0, sent=0, done_before=0))
    clock.now += 10
    estimate.update(ImportProgress(total=1_000, settled=100, sent=200, done_before=0))
    assert estimate.left() == (90.0, False)
    for _ in range(6):
        clock.now += 10  # a minute without a settled row, and without news
        assert estimate.rate() == 10.0
        assert estimate.left() == (90.0, False)
    # A progress without a settled row (a wait starting) changes nothing either.
    estimate.update(ImportProgress(total=1_000, settled=100, sent=200, done_before=0))
    assert estimate.left() == (90.0, False)


def test_a_known_wait_sets_the_eta_while_nothing_settles() -> None:
    """A 429's Retry-After longer than the rows need: the ETA is the wait, running
    down, not a rate falling for lack of rows."""
    clock = Clock()
    estimate = _Estimate(clock)
    estimate.update(ImportProgress(total=1_000, settled=0, sent=0, done_before=0))
    clock.now += 1
    estimate.update(ImportProgress(total=1_000, settled=900, sent=1_000, done_before=0))
    assert estimate.left() == (pytest.approx(1 / 9), False)
    estimate.update(
        ImportProgress(
            total=1_000, settled=900, sent=1_000, done_before=0, waiting=Waiting(120.0, "429")
        )
    )
    lefts = []
    for _ in range(4):
        lefts.append(estimate.left())
        clock.now += 30
    assert lefts == [(120.0, True), (90.0, True), (60.0, True), (30.0, True)]


@pytest.mark.parametrize("width", [10, 16, 20, 24, 30, 39, 40, 59, 60, 79])
async def test_a_narrow_bar_keeps_the_count(width: int) -> None:
    """At 30 columns the bar used to lose `settled/total`: what matters least goes
    first (the bar, the rate, the ETA, the word rows), never the count."""
    output = io.StringIO()
    console = Console(file=output, width=width, force_terminal=True, color_system=None)
    async with _progress_view(console, "sent", 5.0) as progress:
        progress(ImportProgress(1_000_000, 0, 0, 0))
        progress(ImportProgress(1_000_000, 250_000, 300_000, 0, waiting=Waiting(42.0, "429")))
        await asyncio.sleep(0.15)  # a refresh of the live display
    frame = output.getvalue().split("\r\x1b[2K")[-1].split("\n")[0]
    assert len(frame) <= width, frame
    assert ("250,000/1,000,000" if width >= 17 else "250k/1.0M") in frame
    assert "…" not in frame
    assert ("ETA 42 s" in frame) is (width >= 40)
    assert ("429: waiting 42 s" in frame) is (width >= 60)


def test_ctrl_c_before_the_import_starts_is_one_line(
    api: tuple[FakeLupitor, str], example: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Ctrl-C while the command sets up (here: the adapter --verify builds) used to
    end in click's `Aborted!`; nothing was sent and no journal made, which it says."""
    fake, url = api

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("predial.cli._import_cmd._verifier", interrupted)
    result = run_import(url, str(example), "--campaign", "cmp_1", "--verify")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "interrupted before anything was sent: run the same command again to start"
    ]
    assert fake.requests == []


def test_a_second_sigterm_is_left_to_the_system() -> None:
    """The first SIGTERM stops the import as Ctrl-C does; a second one while that
    unwinds is the system's (the process ends at once); afterwards the handler the
    process had is back."""
    before = signal.getsignal(signal.SIGTERM)
    with _sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_stops_the_import_as_ctrl_c_does(example: Path) -> None:
    """SIGTERM (a supervisor, `kill`) used to end the import silently: it says how
    to resume, and how many rows are confirmed, and exits 1; the rerun completes."""
    fake = FakeLupitor(window=0.05, faults=Faults(latency=0.3))
    with serve(fake) as url:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from predial.cli import main; main()",
                "import",
                str(example),
                "--campaign",
                "cmp_1",
                "--region",
                "US",
                "--batch-size",
                "2",
                "--rate-window",
                "0.05",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "LUPITOR_API_URL": url, "LUPITOR_API_KEY": KEY},
        )
        try:
            deadline = time.monotonic() + 30
            while fake.count("cmp_1") < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 1, err
        assert "Traceback" not in err
        last = err.splitlines()[-1]
        found = re.fullmatch(
            r"terminated \(SIGTERM\): run the same command again to resume; (\d+) rows "
            r"confirmed so far \(created or already in the campaign\) are in (.*) and will "
            r"not be sent again",
            last,
        )
        assert found, last
        assert found.group(2) == f"{example}.journal.sqlite"
        # Batches go one after another: the second is sent once the first's answer
        # is journaled, so with 4 leads stored at least 2 are confirmed.
        confirmed = int(found.group(1))
        assert 2 <= confirmed <= fake.count("cmp_1") < 16
        counts = recorded_counts(Path(found.group(2)))
        assert counts is not None
        assert counts.get("created", 0) + counts.get("already_present", 0) == confirmed
        assert out == ""
        again = run_import(url, str(example), "--campaign", "cmp_1", "--region", "US")
        assert again.exit_code == 0, again.output
        assert fake.count("cmp_1") == 16
