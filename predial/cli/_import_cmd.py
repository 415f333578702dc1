"""`predial import`: put a leads file into a Lupitor campaign, resumably."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, cast

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from .._config import find_config
from .._resolver import Resolver
from .._threads import run as run_to_end
from ..errors import (
    ConfigurationError,
    InputFileError,
    LupitorAuthError,
    LupitorError,
    LupitorForbidden,
    LupitorNotFound,
)
from ..lupitor._client import API_KEY_ENV, API_URL_ENV, AsyncLupitorClient
from ..lupitor._importer import (
    ApiVersion,
    ImportProgress,
    ImportReport,
    campaign_problem,
    import_leads_async,
    verify_problem,
)
from ..lupitor._journal import Journal, recorded_counts
from ._exits import EXIT_OK, EXIT_REFUSED
from ._output import err_console, out_console, reported_by_the_command
from ._resolve import config_option

__all__ = ["import_"]

#: Seconds between progress lines when stderr is not a terminal (a log, a pipe).
PROGRESS_EVERY = 5.0
#: Lines of a group's cause shown in the report: the rest are in the rejects file.
_SHOWN_LINES = 10


def _mapping(values: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for value in values:
        field, sep, column = value.partition("=")
        if not sep or not field or not column:
            raise click.BadParameter(f"{value!r}: write FIELD=COLUMN", param_hint="--map")
        mapping[field.strip()] = column.strip()
    return mapping


class _Estimate:
    """Rows per second and the time left, at any moment, from the import's latest
    progress. The rate is this run's rows settled over its time so far; the time
    left is the longer of what that rate needs for the rows left and what the rate
    limit needs at least (the observed rate alone swings: a burst of batches goes
    out at once, then the limit holds the next ones back for most of a minute)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.latest: ImportProgress | None = None
        self.at = self.started
        #: When the count of settled rows last changed. The rate is measured up to
        #: then: while nothing settles (a 429's wait, the rate limit, a slow answer)
        #: a rate measured up to now would fall, and the ETA climb, for no news.
        self.settled_at = self.started

    def update(self, progress: ImportProgress) -> None:
        now = self.clock()
        if self.latest is None:
            self.started = self.settled_at = now  # counted from the first rows, not the count
        elif progress.settled != self.latest.settled:
            self.settled_at = now
        self.latest = progress
        self.at = now

    def rate(self) -> float | None:
        """Rows settled per second by this run (up to its latest settled row), or
        None before any."""
        latest = self.latest
        if latest is None:
            return None
        done = latest.settled - latest.done_before
        seconds = self.settled_at - self.started
        return done / seconds if done > 0 and seconds > 0 else None

    def left(self) -> tuple[float | None, bool]:
        """(seconds left or None if unknown, whether the rate limit decides it)."""
        latest = self.latest
        if latest is None:
            return None, False
        remaining = latest.total - latest.settled
        if remaining <= 0:
            return 0.0, False
        # A wait the client is in (a 429's Retry-After, say) holds the rows in flight
        # too, which the rate limit's share does not count.
        waiting = latest.waiting.seconds if latest.waiting is not None else 0.0
        floor = max(0.0, max(latest.rate_limit_wait, waiting) - (self.clock() - self.at))
        rate = self.rate()
        by_rate = remaining / rate if rate else None
        if by_rate is None or floor > by_rate:
            return (floor, True) if floor > 0 else (None, False)
        return by_rate, False

    def wait_text(self, short: bool = False, brief: bool = False) -> str | None:
        """What the import waits for now, or None: `waiting 12 s: the server asked
        (429)`, `waiting 40 s for the rate limit`, `waiting 2 s to retry (500
        Internal server error)`; `brief` (a bar), a retry's cause in one word
        (`500`, `ConnectError`); `short`, for a bar under 120 columns: `429:
        waiting 12 s`, `rate limit: 40 s`, `retry in 2 s`."""
        latest = self.latest
        if latest is None or latest.waiting is None:
            return None
        left = latest.waiting.seconds - (self.clock() - self.at)
        if left <= 0:
            return None
        shown = _duration(left)
        reason = latest.waiting.reason
        if short:
            if reason == "429":
                return f"429: waiting {shown}"
            return f"rate limit: {shown}" if reason == "limit" else f"retry in {shown}"
        if reason == "429":
            return f"waiting {shown}: the server asked (429)"
        if reason == "limit":
            return f"waiting {shown} for the rate limit"
        cause = latest.waiting.cause
        if cause and brief:
            cause = cause.split()[0]
        return f"waiting {shown} to retry" + (f" ({cause})" if cause else "")

    def line(self, sent_label: str, verb: str = "importing") -> str:
        """The progress as one line of text, for a log: `importing: ... rows
        settled`, or, for a dry run (`verb` "checking"), `checking: ... rows
        checked`."""
        latest = self.latest
        if latest is None:
            return f"{verb}: counting rows"
        share = latest.settled / latest.total if latest.total else 1.0
        did = "checked" if verb == "checking" else "settled"
        parts = [
            f"{latest.settled:,}/{latest.total:,} rows {did} ({share:.0%})",
            f"{latest.sent:,} {sent_label}",
            _rate_text(self.rate()),
        ]
        waiting = self.wait_text()
        if waiting is not None:
            parts.append(waiting)
        if latest.done_before:
            parts.append(f"{latest.done_before:,} settled by an earlier run")
        left, limited = self.left()
        if latest.settled >= latest.total:
            parts.append("done")
        elif left is not None:
            parts.append(f"about {_duration(left)} left" + (" (rate limit)" if limited else ""))
        return f"{verb}: " + ", ".join(parts)


#: A quoted name (Python's repr, either quote, escapes kept).
_QUOTED = r"'(?:[^'\\]|\\.)*'" + "|" + r'"(?:[^"\\]|\\.)*"'
#: A field's mapping, up to its `;`; and a part of it, up to a `,`: outside quotes.
_MAPPING = re.compile(rf"""(?:{_QUOTED}|[^'";])+;?\s*|;\s*""")
_PART = re.compile(rf"""(?:{_QUOTED}|[^'",])+,?\s*|,\s*""")


def _wrapped(prefix: str, text: str, width: int) -> str:
    """`prefix` and the column listing `text` in lines of at most `width` columns,
    the lines after the first indented under the text. A line breaks between two
    fields' mappings (`a <- 'A'; b <- 'B'`), or, for a mapping longer than a line
    (metadata's many columns), after one of its commas: never inside a column's
    name. A name longer than a line has a line to itself."""
    indent = " " * len(prefix)
    lines: list[str] = []
    line = prefix

    def fits(piece: str) -> bool:
        return len(line + piece.rstrip()) <= width

    for mapping in _MAPPING.findall(text):
        if not fits(mapping) and line != prefix and len(indent + mapping.rstrip()) <= width:
            lines.append(line.rstrip())
            line = indent
        if fits(mapping):
            line += mapping
            continue
        for part in _PART.findall(mapping):
            if not fits(part) and line.strip() and line not in (prefix, indent):
                lines.append(line.rstrip())
                line = indent
            line += part
    lines.append(line.rstrip())
    return "\n".join(lines)


def _rate_text(rate: float | None) -> str:
    if rate is None:
        return "- rows/s"
    return f"{rate:,.1f} rows/s" if rate < 100 else f"{rate:,.0f} rows/s"


def _duration(seconds: float) -> str:
    """`<1 s`, `42 s`, `3 min 5 s`, `2 h 10 min`."""
    whole = round(seconds)
    if whole < 1:
        return "<1 s"
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class _RateColumn(ProgressColumn):
    """Rows per second; while the import waits (a 429, the rate limit, a retry),
    what it waits for instead: no rows move then, and the operator sees why."""

    def __init__(self, estimate: _Estimate, wide: bool) -> None:
        super().__init__()
        self.estimate = estimate
        self.wide = wide

    def render(self, task: Task) -> Text:
        waiting = self.estimate.wait_text(short=not self.wide, brief=True)
        if waiting is not None:
            return Text(waiting, style="progress.data.speed")
        return Text(_rate_text(self.estimate.rate()), style="progress.data.speed")


class _RowsColumn(ProgressColumn):
    """`3,000/10,000 rows` (with `3,500 sent` when `sent_label`), or `counting rows`
    before the total is known; `bare`, for the narrowest terminals, `3,000/10,000`
    and `counting`."""

    def __init__(self, sent_label: str | None, bare: bool = False, width: int = 80) -> None:
        super().__init__()
        self.sent_label = sent_label
        self.bare = bare
        self.width = width

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("counting" if self.bare else "counting rows", style="progress.download")
        text = f"{task.completed:,.0f}/{task.total:,.0f}"
        if self.bare and len(text) > self.width:
            text = f"{_compact(task.completed)}/{_compact(task.total)}"
        if not self.bare:
            text += " rows"
        if self.sent_label:
            text += f" {task.fields.get('sent', 0):,} {self.sent_label}"
        return Text(text, style="progress.download")


def _compact(number: float) -> str:
    """`950`, `9,999`, `250k`, `1.2M`: a count in at most 5 characters."""
    if number < 10_000:
        return f"{number:,.0f}"
    if number < 999_500:
        return f"{number / 1000:.0f}k"
    millions = number / 1_000_000
    return f"{millions:.1f}M" if millions < 99.95 else f"{millions:.0f}M"


class _LeftColumn(ProgressColumn):
    """`ETA 3 min 5 s`, with ` (rate limit)` when the rate limit decides it (not
    when `short`), `ETA -` before it is known, `done` at the end."""

    def __init__(self, estimate: _Estimate, short: bool = False) -> None:
        super().__init__()
        self.estimate = estimate
        self.short = short

    def render(self, task: Task) -> Text:
        left, limited = self.estimate.left()
        if left is None:
            return Text("ETA -", style="progress.remaining")
        if left == 0 and not limited:
            return Text("done", style="progress.remaining")
        text = f"ETA {_duration(left)}" + (" (rate limit)" if limited and not self.short else "")
        return Text(text, style="progress.remaining")


@asynccontextmanager
async def _progress_view(
    console: Console, sent_label: str, every: float, verb: str = "importing"
) -> AsyncIterator[Callable[[ImportProgress], None]]:
    """Show the import's progress on stderr: a live bar on a terminal (rows, not
    lines or bytes; rows/s; the time left), else a line when the count is known,
    one every `every` seconds after it, and one when the import is done. `verb`
    is what the import does (`checking` for a dry run). Yields the `progress`
    callback."""
    estimate = _Estimate()
    if not console.is_terminal:
        shown: list[str] = []

        def show() -> None:
            text = estimate.line(sent_label, verb)
            shown[:] = [text]
            console.print(text, markup=False, highlight=False)

        def told(progress: ImportProgress) -> None:
            first = estimate.latest is None
            estimate.update(progress)
            if first:
                show()

        async def lines() -> None:
            # Timed, not on each change: the rate limit can hold the rows back for
            # most of a minute, and the log should still hear from the import.
            while True:
                await asyncio.sleep(every)
                if estimate.latest is not None:
                    show()

        task = asyncio.get_running_loop().create_task(lines())
        try:
            yield told
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        # Done (not interrupted: an exception skips this): the log ends on the end,
        # not on the first line of an import shorter than `every`.
        if estimate.latest is not None and shown != [estimate.line(sent_label, verb)]:
            show()
        return
    columns = _bar_columns(estimate, console.width, sent_label)
    bar = Progress(*columns, console=console, transient=True)
    # Shown from the start: counting a big file's rows takes a few seconds.
    row_task = bar.add_task(verb, total=None, sent=0)

    def update(progress: ImportProgress) -> None:
        estimate.update(progress)
        bar.update(row_task, total=progress.total, completed=progress.settled, sent=progress.sent)

    with bar:
        yield update


def _bar_columns(estimate: _Estimate, width: int, sent_label: str) -> list[ProgressColumn]:
    """The bar's columns for a terminal `width` columns wide, on one line. What
    matters least goes first as it narrows: the description and the rows sent
    (under 120 columns), the bar (under 80), the rate and the ETA's reason (under
    60), the ETA (under 40), the word `rows` (under 25), the digits (`250k/1.0M`,
    when the count is wider than the terminal); the count of rows settled of the
    total stays at any width; a wait is said in full from 120 columns."""
    if width >= 80:
        # The text takes up to ~75 columns (~100 with the description and the rows
        # sent, ~125 with a wait said in full); the bar takes what it leaves.
        wide = width >= 120
        room = width - (125 if wide else 75)
        columns: list[ProgressColumn] = [
            BarColumn(bar_width=max(5, min(40, room))),
            _RowsColumn(sent_label if wide else None),
            _RateColumn(estimate, wide),
            _LeftColumn(estimate),
        ]
        if wide:
            columns.insert(0, TextColumn("[progress.description]{task.description}"))
        return columns
    if width >= 60:
        return [_RowsColumn(None), _RateColumn(estimate, False), _LeftColumn(estimate, short=True)]
    if width >= 40:
        return [_RowsColumn(None), _LeftColumn(estimate, short=True)]
    return [_RowsColumn(None, bare=width < 25, width=width)]


def _campaign(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # Up front: an empty or over-long id would reject every row, one by one.
    problem = campaign_problem(value)
    if problem is not None:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return value


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--campaign",
    required=True,
    callback=_campaign,
    help="The Lupitor campaign to import into (its id, e.g. cmp_1).",
)
@click.option(
    "--api-url",
    envvar=API_URL_ENV,
    help="API base URL (default $LUPITOR_API_URL, else the docs' host).",
)
@click.option(
    "--resource",
    type=click.Choice(["leads", "records"]),
    default="leads",
    show_default=True,
    help="Use /leads or its /records alias.",
)
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Read a lead field from a column, e.g. --map externalId='CRM ID'.",
)
@click.option("--region", help="Default region for national phone formats, e.g. US.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Journal file (default: FILE.journal.sqlite beside the input, or "
    "FILE.CAMPAIGN.journal.sqlite when that one records another campaign).",
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every rejected or failed row, with its reason and its values, to this "
    "CSV. A value starting with = + - @ or a tab or carriage return gets a ' in front, "
    "so a spreadsheet runs no formula; a byte that could not be read shows as \\xNN; "
    "values are otherwise kept as they were. Its last column, extra, holds values "
    "without a column. It may not be FILE or the journal, and its folder must exist. "
    "A dry run writes it only when given, never over the one a real run of its "
    "journal wrote.",
)
@click.option(
    "--encoding",
    help="The file's encoding, e.g. cp1252 or latin-1 (default: UTF-8, with or "
    "without a byte-order mark, UTF-16 with one, or cp1252 when no UTF-8 character "
    "is in the file at all). Rows not valid in it are rejected.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="If another import of FILE (or with the same journal) is running, wait for "
    "it to finish, then resume from its journal; by default that is an error.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate, and count what a real run would send now (the journal is read, "
    "never written or created); send nothing.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="First resolve each lead with an externalId as it will be imported (its "
    "stored number too) through the campaign's adapter (--config), and report those "
    "that would not resolve.",
)
@config_option
@click.option(
    "--api-version",
    type=click.Choice(["auto", "v1", "v2"]),
    default="auto",
    show_default=True,
    help="v1: the older API, which refuses prefetch leads in bulk.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--bulk-per-minute",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="Bulk requests per rate window (the documented limit is 10).",
)
@click.option(
    "--calls-per-minute",
    default=100,
    show_default=True,
    type=click.IntRange(1),
    help="Other requests per rate window (the documented limit is 100).",
)
@click.option(
    "--rate-window",
    default=60.0,
    hidden=True,
    type=click.FloatRange(min=0.001),
    help="Seconds per rate window: only for a time-scaled test server.",
)
@click.option(
    "--progress-every",
    default=PROGRESS_EVERY,
    hidden=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between progress lines when stderr is not a terminal.",
)
@click.pass_context
def import_(
    ctx: click.Context,
    file: Path,
    campaign: str,
    api_url: str | None,
    resource: str,
    maps: tuple[str, ...],
    region: str | None,
    batch_size: int,
    journal_path: Path | None,
    rejects_path: Path | None,
    encoding: str | None,
    wait: bool,
    dry_run: bool,
    verify: bool,
    config_path: Path | None,
    api_version: str,
    as_json: bool,
    bulk_per_minute: int,
    calls_per_minute: int,
    rate_window: float,
    progress_every: float,
) -> None:
    """Import FILE (CSV or JSONL) into a campaign: prefetch leads by externalId,
    standard leads with their numbers. The API key is read from $LUPITOR_API_KEY.

    Rerun the same command after an interruption: confirmed rows are not sent again
    (the journal of each campaign's import of FILE is its own).
    A second import of the same file while one runs stops at once (exit 2) naming
    the first, or waits for it with --wait. Exit code 0 only when every row is
    accounted for (created, already present, duplicate or rejected); 1 when some
    failed to send, or when interrupted (Ctrl-C or SIGTERM: the journal keeps what
    was confirmed); 2 on errors.

    Progress goes to stderr: a bar on a terminal, else a line every few seconds and
    one at the end.
    """
    console = err_console()
    with _sigterm_as_interrupt():
        try:
            if not file.exists():
                raise InputFileError(f"{file}: no such file")
            mapping = _mapping(maps)
            if not dry_run and not os.environ.get(API_KEY_ENV, "").strip():
                # The library's own message says "pass api_key": this command has no
                # such option (a key in a flag would sit in the shell's history and ps).
                raise ConfigurationError(
                    f"no Lupitor API key: set {API_KEY_ENV} in the environment "
                    f"(export {API_KEY_ENV}=...), the only place predial import reads it "
                    "from; to try an import without an account, `predial fake-lupitor` "
                    "prints one"
                )
            report = _run(
                console,
                file,
                campaign,
                mapping,
                verify=verify,
                config_path=config_path,
                client=None
                if dry_run
                else partial(
                    AsyncLupitorClient,
                    base_url=api_url,
                    resource="records" if resource == "records" else "leads",
                    bulk_per_minute=bulk_per_minute,
                    calls_per_minute=calls_per_minute,
                    window=rate_window,
                ),
                batch_size=batch_size,
                region=region,
                journal_path=journal_path,
                rejects_path=rejects_path,
                dry_run=dry_run,
                api_version=cast(ApiVersion, api_version),
                encoding=encoding,
                wait=wait,
                progress_every=progress_every,
            )
        except (LupitorAuthError, LupitorForbidden, LupitorNotFound) as refused:
            # The API's words alone ("403 Forbidden") do not say what to do.
            raise ConfigurationError(_refusal_text(refused, campaign)) from None
        except KeyboardInterrupt as stop:
            # Instead of click's bare "Aborted!" (or, for SIGTERM, nothing at all):
            # what happened and what to do next.
            console.print(
                _interrupted_text(stop, dry_run, journal_path or Journal.path_for(file, campaign)),
                markup=False,
                highlight=False,
            )
            ctx.exit(EXIT_REFUSED)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    ctx.exit(EXIT_OK if report.accounted else EXIT_REFUSED)


def _run(
    console: Console,
    file: Path,
    campaign: str,
    mapping: dict[str, str],
    *,
    verify: bool,
    config_path: Path | None,
    client: Callable[[], AsyncLupitorClient] | None,
    dry_run: bool,
    progress_every: float,
    **options: Any,
) -> ImportReport:
    """The import itself, with its progress on `console`: `client` makes the API
    client (None for a dry run); `options` are `import_leads_async`'s."""
    resolver = _verifier(config_path, campaign) if verify else None
    api = client() if client is not None else None

    async def run() -> ImportReport:
        try:
            sent_label = "would send" if dry_run else "sent"
            verb = "checking" if dry_run else "importing"
            async with _progress_view(console, sent_label, progress_every, verb) as progress:
                return await import_leads_async(
                    file,
                    campaign,
                    client=api,
                    mapping=mapping,
                    dry_run=dry_run,
                    verify=resolver,
                    progress=progress,
                    on_columns=lambda text: console.print(
                        _wrapped("columns: ", text, console.width),
                        markup=False,
                        highlight=False,
                        soft_wrap=True,
                    ),
                    on_notice=lambda text: console.print(text, markup=False, highlight=False),
                    **options,
                )
        finally:
            if api is not None:
                await api.aclose()
            if resolver is not None:
                await resolver.close()

    return run_to_end(run())


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: the import stops the
    same way (its journal closed, the resume line said), not silently."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM handled as Ctrl-C while the block runs. A second SIGTERM while the
    first is handled ends the process at once, as the system's default does: the
    journal survives that as it survives kill -9."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler (and receives signals)
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _interrupted_text(stop: KeyboardInterrupt, dry_run: bool, journal: Path) -> str:
    """What an interrupted import (Ctrl-C, SIGTERM) says: what was sent, and that
    the same command resumes."""
    what = "terminated (SIGTERM)" if isinstance(stop, _Terminated) else "interrupted"
    if dry_run:
        return f"{what} (a dry run: nothing was sent)"
    # The import closed its journal on the way out: what it holds is all there.
    counts = recorded_counts(journal)
    if counts is None:
        if not journal.exists():
            # The journal is made before the first row is sent.
            return f"{what} before anything was sent: run the same command again to start"
        confirmed = "the rows confirmed so far are"
    else:
        number = counts.get("created", 0) + counts.get("already_present", 0)
        confirmed = (
            f"{number:,} row{'' if number == 1 else 's'} confirmed so far (created or "
            f"already in the campaign) {'is' if number == 1 else 'are'}"
        )
    return (
        f"{what}: run the same command again to resume; {confirmed} in {journal} and "
        "will not be sent again"
    )


def _refusal_text(refused: LupitorError, campaign: str) -> str:
    """The API's refusal of the key or the campaign as one line saying what to do
    (the key itself is never in it: the client registered it for redaction)."""
    answer = f"{refused.status} {refused.message}" if refused.status else refused.message
    if isinstance(refused, LupitorAuthError):
        return f"the key in {API_KEY_ENV} was refused ({answer}): set a valid key"
    if isinstance(refused, LupitorForbidden):
        return (
            f"the key in {API_KEY_ENV} has no write scope ({answer}): create a key with "
            f"Write scope and set {API_KEY_ENV} to it"
        )
    return (
        f"campaign {campaign!r} was not found, or the key in {API_KEY_ENV} cannot reach "
        f"it ({answer}): check --campaign, and that the key is of the campaign's account"
    )


def _verifier(config_path: Path | None, campaign: str) -> Resolver:
    """The resolver --verify resolves through, refused (one line, exit 2) before
    anything is read, sent or journaled when it cannot verify `campaign`: the
    campaign is not configured, or its adapter could not be built."""
    where = find_config(config_path)
    # A misconfigured campaign is this command's own exit-2 line, not a log error too.
    with reported_by_the_command("predial._resolver"):
        resolver = Resolver.from_config(config_path, strict=False)
    problem = verify_problem(resolver, campaign, str(where), "--verify")
    if problem is not None:
        resolver.close_sync()
        raise ConfigurationError(problem)
    return resolver


def _print_report(report: ImportReport) -> None:
    out = out_console()

    def count(label: str, value: int) -> None:
        out.print(f"  {label:<33}{value:,}", markup=False)

    def causes(groups: list[tuple[str, int]], lines: dict[str, list[int]] | None = None) -> None:
        # Grouped, most first: the operator sees why without opening the rejects file.
        for cause, number in groups[:_SHOWN_LINES]:
            where = ""
            if lines and lines.get(cause):
                shown = lines[cause][:_SHOWN_LINES]
                more = ", ..." if number > len(shown) else ""
                where = f" (line{'s' if number > 1 else ''} {', '.join(map(str, shown))}{more})"
            out.print(f"      {number:>6,}  {cause}{where}", markup=False)
        if len(groups) > _SHOWN_LINES:
            rest = sum(number for _, number in groups[_SHOWN_LINES:])
            out.print(f"      {rest:>6,}  other causes", markup=False)

    title = "dry run (nothing sent)" if report.dry_run else "import"
    if report.resumed:
        title += ", against its journal" if report.dry_run else ", resumed from its journal"
    out.print(f"[bold]{title}[/]: {report.rows:,} rows in {report.elapsed:.1f} s")
    if report.dry_run:
        # What a real run would send now: the journal's settled rows are not sent again.
        settled = report.created + report.already_present
        before = f" ({settled:,} already settled in the journal)" if settled else ""
        out.print(f"  {'would send':<33}{report.sendable:,}{before}", markup=False)
    else:
        count("created", report.created)
    count("skipped: duplicate in the file", report.duplicates_in_file)
    if not report.dry_run:
        count("skipped: already in the campaign", report.already_present)
    count("skipped: blank rows", report.blank_rows)
    count("rejected", report.rejected)
    causes(report.rejected_causes)
    if not report.dry_run:
        count("failed to send", report.failed)
        causes(report.failed_causes)
    if report.in_flight:
        count("in flight (rerun to settle)", report.in_flight)
    if report.would_not_resolve:
        count("would not resolve (--verify)", report.would_not_resolve)
        lines: dict[str, list[int]] = {}
        for line, reason in report.not_resolving:
            lines.setdefault(reason, []).append(line)
        causes(report.would_not_resolve_reasons, lines)
    if not report.dry_run:
        # What slowed the requests down, when anything did: the 429s and the retries.
        met = []
        if report.answered_429:
            met.append(
                f"{report.answered_429:,} answered 429, waited {_duration(report.waited_429)}"
            )
        if report.retries:
            met.append(
                f"{report.retries:,} retried after a server error or a dropped connection, "
                f"waited {_duration(report.waited_retry)}"
            )
        shown = f" ({'; '.join(met)})" if met else ""
        out.print(
            f"  requests: {report.bulk_requests:,} bulk, {report.single_requests:,} single{shown}",
            markup=False,
        )
    if report.encoding not in ("utf-8", "utf-8-sig"):
        out.print(f"  read as: {report.encoding}", markup=False)
    if report.rejects:
        out.print(f"  rejects: {report.rejects}", markup=False)
    if report.journal:
        read = " (read, not written)" if report.dry_run else ""
        out.print(f"  journal: {report.journal}{read}", markup=False)
    if report.failed or report.in_flight:
        out.print("  rerun the same command to send the rows not settled", markup=False)
    # A rerun writes the rejects file from the journal (rejected and failed rows);
    # leads that would not resolve are found again only by a dry run.
    listed = report.rejected or report.failed or (report.dry_run and report.would_not_resolve)
    if listed and not report.rejects:
        out.print(
            "  rerun with --rejects rejects.csv to get each row with its reason", markup=False
        )
