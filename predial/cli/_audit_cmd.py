"""`predial audit summarize`: counts over audit records, by campaign, status, source,
reason, hour and origin."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._redaction import redact
from ..compliance._audit_summary import STATUSES, AuditSummary, summarize_audit
from ._exits import EXIT_OK, EXIT_REFUSED
from ._output import err_console, out_console

__all__ = ["audit"]

#: Malformed lines listed on stderr under the tables (all are counted).
_SHOWN_PROBLEMS = 20


@click.group()
def audit() -> None:
    """Read the audit records predial writes (one JSON line per decision)."""


@audit.command()
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_context
def summarize(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Count the records of FILES by campaign, status, source, reason, UTC hour and
    origin. Give a log and its rotated files together (audit.jsonl*).

    \b
    A malformed line is counted and reported with its file and line number;
    the other lines are still counted. Exit code 1 when a line was malformed.
    """
    summary = summarize_audit(*files)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        _print_tables(out_console(), summary)
        _print_problems(err_console(), summary)
    ctx.exit(EXIT_REFUSED if summary.malformed else EXIT_OK)


def _count_table(title: str, header: str, counts: Counter[str], *, by_key: bool = False) -> Table:
    table = Table(title=title, show_edge=False, header_style="bold", title_justify="left")
    table.add_column(header)
    table.add_column("records", justify="right")
    rows = sorted(counts.items()) if by_key else counts.most_common()
    for name, count in rows:
        table.add_row(_cell(name), str(count))
    return table


def _by_status_table(title: str, header: str, counts: dict[str, Counter[str]]) -> Table:
    table = Table(title=title, show_edge=False, header_style="bold", title_justify="left")
    table.add_column("status")
    table.add_column(header)
    table.add_column("records", justify="right")
    for status in STATUSES:
        for name, count in counts.get(status, Counter()).most_common():
            table.add_row(status, _cell(name), str(count))
    return table


def _cell(text: str) -> str:
    """A value read from a record, as other tables show text predial did not write
    here: control characters escaped (an escape sequence in a campaign id would
    drive the terminal), numbers masked, credentials redacted, rich markup inert."""
    return escape(redact(text, limit=200)) or "(none)"


def _print_tables(console: Console, summary: AuditSummary) -> None:
    span = ""
    if summary.first is not None and summary.last is not None:
        span = f", {summary.first:%Y-%m-%d %H:%M:%S}Z to {summary.last:%Y-%m-%d %H:%M:%S}Z"
    console.print(
        f"{summary.records} record(s){span}; {summary.malformed} malformed line(s)",
        markup=False,
    )
    if not summary.records:
        return
    console.print()
    console.print(_count_table("By status", "status", summary.statuses))
    console.print()
    console.print(_count_table("By campaign", "campaign", summary.campaigns))
    console.print()
    console.print(_by_status_table("By source", "source", summary.sources))
    console.print()
    console.print(_by_status_table("By reason", "reason", summary.reasons))
    console.print()
    console.print(_count_table("By hour (UTC)", "hour", summary.hours, by_key=True))
    console.print()
    console.print(_count_table("By origin", "origin", summary.origins))


def _print_problems(console: Console, summary: AuditSummary) -> None:
    for problem in summary.problems[:_SHOWN_PROBLEMS]:
        console.print(f"[yellow]malformed:[/] {escape(str(problem))}", highlight=False)
    more = summary.malformed - min(len(summary.problems), _SHOWN_PROBLEMS)
    if more > 0:
        console.print(
            f"[yellow]malformed:[/] {more} more line(s) (--json lists the first "
            f"{len(summary.problems)})",
            highlight=False,
        )
