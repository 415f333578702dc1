"""An import's progress: rows (settled / sent / total of real rows, a resumed run
starting where the last stopped and ending at the total), rows per second, an ETA
that counts the rate limit's waits; a live bar on a terminal, a line every few
seconds otherwise."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.progress import Progress

from predial.cli._app import cli
from predial.cli._import_cmd import _duration, _Estimate, _progress_view, _RowsColumn
from predial.lupitor import (
    AsyncLupitorClient,
    ImportProgress,
    RetryPolicy,
    SlidingWindowLimiter,
    import_leads_async,
)
from predial.testing import FakeLupitor, Faults, serve

KEY = "sk_test_write"
FAST = RetryPolicy(attempts=10, initial=0.005, maximum=0.05, rate_limit_waits=1000)


@pytest.fixture(autouse=True)
def _private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the rate limit's share of the time left ---------------------------------------------


@given(
    limit=st.integers(min_value=1, max_value=6),
    window=st.integers(min_value=1, max_value=50),
    earlier=st.lists(st.integers(min_value=0, max_value=60), max_size=8),
    hold=st.integers(min_value=0, max_value=30),
    count=st.integers(min_value=0, max_value=40),
)
def test_time_for_is_when_the_last_acquisition_goes(
    limit: int, window: int, earlier: list[int], hold: int, count: int
) -> None:
    """time_for(n) is exactly when the n-th acquisition from now would be admitted,
    acquiring as early as allowed (whole seconds: no rounding in the comparison)."""
    clock = Clock()
    limiter = SlidingWindowLimiter(limit, float(window), clock)
    start = clock.now - 60
    for offset in sorted(earlier):  # sends in the last minute, some still in the window
        clock.now = start + offset
        limiter.acquire()
    clock.now = start + 60
    if hold:
        limiter.hold(float(hold))
    predicted = limiter.time_for(count)
    began = clock.now
    admitted = began
    for _ in range(count):
        while True:
            wait, stamp = limiter.acquire()
            if stamp is not None:
                admitted = clock.now
                break
            clock.now += wait
    assert predicted == admitted - began


def test_time_for_a_million_batches_is_quick() -> None:
    """Closed form past the first window's worth: no loop over every batch."""
    limiter = SlidingWindowLimiter(10, 60.0, Clock())
    assert limiter.time_for(1_000_000) == 60.0 * (1_000_000 // 10 - 1)


# -- rate and time left ------------------------------------------------------------------


def test_the_eta_counts_the_rate_limit_when_it_is_slower() -> None:
    """The first burst of batches goes at once; the rate limit decides the rest."""
    clock = Clock()
    estimate = _Estimate(clock)
    estimate.update(ImportProgress(total=10_000, settled=0, sent=0, done_before=0))
    clock.now += 2
    # 10 batches of 500 in 2 s: 2,500 rows/s, which alone says 2 s left.
    estimate.update(
        ImportProgress(total=10_000, settled=5_000, sent=5_000, done_before=0, rate_limit_wait=58)
    )
    assert estimate.rate() == 2_500
    assert estimate.left() == (58.0, True)
    clock.now += 8  # the rate limit's floor runs down as time passes
    assert estimate.left() == (50.0, True)
    assert "about 50 s left (rate limit)" in estimate.line("sent")


def test_the_eta_follows_the_rows_when_the_server_is_slower() -> None:
    clock = Clock()
    estimate = _Estimate(clock)
    estimate.update(ImportProgress(total=100, settled=40, sent=0, done_before=40))
    clock.now += 10
    estimate.update(ImportProgress(total=100, settled=60, sent=20, done_before=40))
    assert estimate.rate() == 2.0  # this run's rows only: not those of the earlier run
    assert estimate.left() == (20.0, False)
    line = estimate.line("sent")
    assert line == (
        "importing: 60/100 rows settled (60%), 20 sent, 2.0 rows/s, 40 settled by an "
        "earlier run, about 20 s left"
    )


def test_no_eta_before_any_row() -> None:
    estimate = _Estimate(Clock())
    estimate.update(ImportProgress(total=5, settled=0, sent=0, done_before=0))
    assert estimate.left() == (None, False)
    assert estimate.line("sent") == "importing: 0/5 rows settled (0%), 0 sent, - rows/s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "<1 s"), (42, "42 s"), (60, "1 min"), (185, "3 min 5 s"), (7800, "2 h 10 min")],
)
def test_durations_read_as_time(seconds: float, text: str) -> None:
    assert _duration(seconds) == text


# -- what the importer reports -------------------------------------------------------------


def messy(path: Path, rows: int = 12) -> Path:
    """`rows` leads with a blank line and a `,,` row among them."""
    lines = ["externalId,name"]
    for index in range(rows):
        lines.append(f"E-{index},lead {index}")
        if index == 3:
            lines.append("")
        if index == 7:
            lines.append(",")
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_the_total_is_the_real_rows_and_a_resume_ends_at_it(tmp_path: Path) -> None:
    """Blank rows are not in the total; a resumed run starts at the rows its journal
    settled, and both runs end at the total."""
    source = messy(tmp_path / "leads.csv")
    fake = FakeLupitor(window=0.05)
    seen: list[ImportProgress] = []
    transport = httpx.ASGITransport(app=fake)
    async with AsyncLupitorClient(
        KEY, base_url="http://x", transport=transport, window=0.05, retry=FAST
    ) as client:
        # The first run stops after its second batch: the journal holds 4 rows.
        def stop_after_two_batches(progress: ImportProgress) -> None:
            seen.append(progress)
            if progress.settled >= 4:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            await import_leads_async(
                source, "cmp_1", client=client, batch_size=2, progress=stop_after_two_batches
            )
        assert seen[0] == ImportProgress(total=12, settled=0, sent=0, done_before=0)
        first = list(seen)
        seen.clear()
        report = await import_leads_async(
            source, "cmp_1", client=client, batch_size=2, progress=seen.append
        )
    assert (report.rows, report.blank_rows, report.created) == (12, 2, 12)
    assert first[-1].settled == 4
    assert seen[0].total == 12
    assert seen[0].done_before == seen[0].settled == 4
    assert seen[-1].settled == 12  # not stuck short: blank rows and done rows counted right
    assert seen[-1].sent == 8
    assert [p.settled for p in seen] == sorted(p.settled for p in seen)


async def test_the_rate_limit_wait_is_reported(tmp_path: Path) -> None:
    """With one bulk request per window, the rows not sent yet need a window each."""
    source = messy(tmp_path / "leads.csv", rows=6)
    fake = FakeLupitor(window=60.0)
    seen: list[ImportProgress] = []
    transport = httpx.ASGITransport(app=fake)
    clock = Clock()
    async with AsyncLupitorClient(
        KEY,
        base_url="http://x",
        transport=transport,
        bulk_per_minute=1,
        window=60.0,
        retry=FAST,
        clock=clock,
        sleep=_advance(clock),
    ) as client:
        await import_leads_async(source, "cmp_1", client=client, batch_size=2, progress=seen.append)
    # Before anything is sent: 3 batches, the first at once, then one a window.
    assert seen[0].rate_limit_wait == 120.0
    assert seen[-1].rate_limit_wait == 0.0


def _advance(clock: Clock):  # type: ignore[no-untyped-def]
    async def sleep(seconds: float) -> None:
        clock.now += seconds

    return sleep


# -- through the CLI --------------------------------------------------------------------


@pytest.fixture
def slow_api() -> Iterator[str]:
    fake = FakeLupitor(window=0.05, faults=Faults(latency=0.05))
    with serve(fake) as url:
        yield url


def test_progress_lines_when_stderr_is_not_a_terminal(slow_api: str, tmp_path: Path) -> None:
    source = messy(tmp_path / "leads.csv")
    result = CliRunner().invoke(
        cli,
        [
            "import",
            str(source),
            "--campaign",
            "cmp_1",
            "--api-url",
            slow_api,
            "--rate-window",
            "0.05",
            "--batch-size",
            "1",
            "--progress-every",
            "0.1",
        ],
        env={"LUPITOR_API_KEY": KEY},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("importing:")]
    assert len(lines) >= 3  # the first when the count is known, then every 0.1 s
    # 12 batches, 10 a window of 0.05 s: the rate limit's share is known at once.
    assert lines[0] == (
        "importing: 0/12 rows settled (0%), 0 sent, - rows/s, about <1 s left (rate limit)"
    )
    shown = [re.match(r"importing: (\d+)/12 rows settled", line) for line in lines]
    assert all(shown)
    assert any("rows/s" in line and "- rows/s" not in line for line in lines[1:])
    assert "bytes" not in result.stderr
    assert "B/s" not in result.stderr


def test_a_bar_in_rows_on_a_terminal(slow_api: str, tmp_path: Path) -> None:
    """On a terminal: rows settled of the real rows (ending at the total), sent,
    rows/s and an ETA; never bytes."""
    source = messy(tmp_path / "leads.csv")
    result = CliRunner().invoke(
        cli,
        [
            "import",
            str(source),
            "--campaign",
            "cmp_1",
            "--api-url",
            slow_api,
            "--rate-window",
            "0.05",
            "--batch-size",
            "3",
        ],
        env={"LUPITOR_API_KEY": KEY, "TTY_COMPATIBLE": "1", "COLUMNS": "120"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    shown = result.stderr
    assert "12/12 rows" in shown
    assert "12 sent" in shown
    assert "rows/s" in shown
    assert "ETA" in shown
    assert "bytes" not in shown
    assert "B/s" not in shown
    assert "importing:" not in shown  # the bar, not the lines


def test_a_dry_run_counts_rows_to_send(tmp_path: Path) -> None:
    """Checking, not importing; the rows it would send, counted to the last line
    (it used to end on `importing: 0/12 ..., 0 to send`, beside `would send 12`)."""
    source = messy(tmp_path / "leads.csv")
    result = CliRunner().invoke(
        cli, ["import", str(source), "--campaign", "cmp_1", "--dry-run"], catch_exceptions=False
    )
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if not line.startswith("columns:")]
    assert lines[0] == "checking: 0/12 rows checked (0%), 0 would send, - rows/s"
    assert re.fullmatch(
        r"checking: 12/12 rows checked \(100%\), 12 would send, [\d,.]+ rows/s, done", lines[-1]
    ), lines
    assert "  would send                       12" in result.stdout.splitlines()


def test_a_csv_with_quoted_newlines_counts_records_not_lines(tmp_path: Path) -> None:
    """Rows, not lines: a record over three lines is one row of the total."""
    source = tmp_path / "leads.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["externalId", "note"])
        writer.writerow(["E-1", "one\ntwo\nthree"])
        writer.writerow(["E-2", "plain"])
    result = CliRunner().invoke(
        cli, ["import", str(source), "--campaign", "cmp_1", "--dry-run"], catch_exceptions=False
    )
    assert "checking: 0/2 rows checked" in result.stderr


def test_the_bar_says_counting_before_the_total_is_known() -> None:
    """A big file's rows take seconds to count: the bar says so, then shows rows."""
    bar = Progress()
    task_id = bar.add_task("importing", total=None, sent=0)
    column = _RowsColumn("sent")
    assert column.render(bar.tasks[0]).plain == "counting rows"
    bar.update(task_id, total=10_000, completed=2_500, sent=3_000)
    assert column.render(bar.tasks[0]).plain == "2,500/10,000 rows 3,000 sent"


@pytest.mark.parametrize("width", [80, 100, 120, 160])
async def test_the_bar_is_one_line_from_80_columns(width: int) -> None:
    """Rows, rows/s and the ETA always fit one line; what matters least goes first."""
    output = io.StringIO()
    console = Console(file=output, width=width, force_terminal=True, color_system=None)
    async with _progress_view(console, "sent", 5.0) as progress:
        progress(ImportProgress(1_000_000, 250_000, 300_000, 0, rate_limit_wait=7_358))
        await asyncio.sleep(0.15)  # a refresh of the live display
    frame = output.getvalue().split("\r\x1b[2K")[-1].split("\n")[0]
    assert len(frame) <= width
    assert "250,000/1,000,000 rows" in frame
    assert "rows/s" in frame
    assert "ETA 2 h 2 min (rate limit)" in frame
    assert ("300,000 sent" in frame) is (width >= 120)
