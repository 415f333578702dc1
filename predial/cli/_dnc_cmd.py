"""`predial dnc`: the do-not-call lists a campaign's gate reads (add, remove, import,
check, stats)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .._phone import PhonePolicy
from ..compliance._dnc_import import DncImportReport
from ..compliance._dnc_lists import DNC_DIR_ENV, DncList, DncLists
from ..errors import ConfigurationError
from ._exits import EXIT_OK, EXIT_REFUSED
from ._output import Masker, err_console, out_console
from ._resolve import show_numbers_option

__all__ = ["dnc"]

#: The lists' directory when neither --dir nor $PREDIAL_DNC_DIR says.
DEFAULT_DIR = "dnc"
#: From this many numbers a list's bytes per number are shown: below it the fixed
#: index (~12 KB, and 4 KB per area code) makes a handful of numbers look costly.
_PER_NUMBER_FROM = 10_000

_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DNC_DIR_ENV,
    default=DEFAULT_DIR,
    show_default=True,
    help=f"The directory of list files (or ${DNC_DIR_ENV}).",
)
_region_option = click.option(
    "--default-region",
    default="US",
    show_default=True,
    help="Region of numbers written without a country code.",
)


def _list_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--list", "list_name", default=default, show_default=True, help="The list's name."
    )


def _by_default() -> str:
    return f"cli:{os.environ.get('USER') or os.environ.get('USERNAME') or 'unknown'}"


def _readable(lists: DncLists, names: list[str]) -> list[str]:
    """Of every list in the directory, those that open: one stray or damaged file
    (a folder named x.pdnc, a half-copied list) is a warning line, not the end of a
    check of the others. A list named with --list is not passed through here: it
    must open."""
    kept = []
    for name in names:
        try:
            lists.check_names([name])
        except ConfigurationError as error:
            err_console().print(
                f"[yellow]warning:[/] skipped {escape(name)}: {escape(str(error))}",
                highlight=False,
            )
        else:
            kept.append(name)
    return kept


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _numbers(values: tuple[str, ...], region: str) -> list[str]:
    """E.164 numbers, or a one-line error naming the argument that is not one. A
    do-not-call request is honoured for any plausible number, so only the length is
    checked (not whether the exchange is assigned)."""
    try:
        policy = PhonePolicy(
            default_region=region, strictness="possible", refused_types=frozenset()
        )
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--default-region") from error
    return [policy.normalize(value) for value in values]


@click.group()
def dnc() -> None:
    """Do-not-call lists: one file per list in --dir (default ./dnc or $PREDIAL_DNC_DIR).

    \b
    predial dnc add +12025550123 --by agent-17 --reason "asked on call"
    predial dnc import ftc/*.txt --list national
    predial dnc import changes-2026-12-01.txt --list national --changes
    predial dnc check +12025550123      (exit 1 when a list holds it)
    predial dnc stats
    """


@dnc.command()
@click.argument("numbers", nargs=-1, required=True)
@_dir_option
@_list_option("internal")
@click.option("--by", default=None, help="Who or what asked (recorded; default cli:$USER).")
@click.option("--reason", default=None, help="Why (recorded).")
@_region_option
def add(
    numbers: tuple[str, ...],
    directory: Path,
    list_name: str,
    by: str | None,
    reason: str | None,
    default_region: str,
) -> None:
    """List NUMBERs (one rewrite for all), recording when, by what and why."""
    parsed = _numbers(numbers, default_region)
    added = DncList(directory, list_name).add(parsed, by=by or _by_default(), reason=reason)
    err_console().print(
        f"{escape(list_name)}: {added:,} added, {len(set(parsed)) - added:,} already listed",
        highlight=False,
    )


@dnc.command()
@click.argument("numbers", nargs=-1, required=True)
@_dir_option
@_list_option("internal")
@click.option("--by", default=None, help="Who or what removed them (recorded).")
@click.option("--reason", default=None, help="Why (recorded).")
@_region_option
def remove(
    numbers: tuple[str, ...],
    directory: Path,
    list_name: str,
    by: str | None,
    reason: str | None,
    default_region: str,
) -> None:
    """Unlist NUMBERs (recorded in the list's history, which keeps the adds too)."""
    parsed = _numbers(numbers, default_region)
    listed = DncList(directory, list_name)
    listed.open().close()  # a mistyped list name is an error, not an empty list
    removed = listed.remove(parsed, by=by or _by_default(), reason=reason)
    err_console().print(
        f"{escape(list_name)}: {removed:,} removed, {len(set(parsed)) - removed:,} not listed",
        highlight=False,
    )


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    console = err_console()
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


@dnc.command(name="import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_dir_option
@_list_option("national")
@click.option(
    "--changes",
    is_flag=True,
    help="The files are change lists (additions and deletions), not full files.",
)
def import_(files: tuple[Path, ...], directory: Path, list_name: str, changes: bool) -> None:
    """Import the FTC registry's downloads (.txt, .csv, .gz, .zip).

    \b
    Full files (one number per line) replace the area codes they hold; with
    --changes, change lists add and delete numbers. Only the area codes a file
    touches are rebuilt. Bad lines are counted and the first few shown with their
    line numbers; exit 1 when there were any (the rest is imported).
    """
    target = DncList(directory, list_name)
    with _progress(f"importing into {list_name}") as progress:
        report = target.import_files(list(files), changes=changes, progress=progress)
    _print_report(list_name, report)
    if report.bad:
        raise click.exceptions.Exit(EXIT_REFUSED)


def _print_report(name: str, report: DncImportReport) -> None:
    console = err_console()
    kind = "change list" if report.kind == "changes" else "full file"
    parts = [f"{report.records:,} records read ({kind}s)"]
    if report.kind == "changes":
        parts.append(f"{report.additions:,} additions, {report.deletions:,} deletions")
    parts += [
        f"{report.bad:,} bad line{'s' if report.bad != 1 else ''}",
        f"{len(report.area_codes):,} area code{'s' if len(report.area_codes) != 1 else ''} rebuilt",
        f"{report.total:,} numbers in the list",
        f"{report.seconds:.1f} s",
    ]
    console.print(f"{escape(name)}: " + ", ".join(parts), highlight=False)
    for bad in report.bad_lines:
        console.print(
            f"  {escape(bad.file)} line {bad.line}: {escape(bad.reason)}", highlight=False
        )
    if report.bad > len(report.bad_lines):
        console.print(f"  ... and {report.bad - len(report.bad_lines):,} more", highlight=False)


@dnc.command()
@click.argument("numbers", nargs=-1, required=True)
@_dir_option
@click.option(
    "--list", "list_names", multiple=True, help="Check these lists only (default: every list)."
)
@_region_option
@show_numbers_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per number on stdout.")
def check(
    numbers: tuple[str, ...],
    directory: Path,
    list_names: tuple[str, ...],
    default_region: str,
    show_numbers: bool,
    as_json: bool,
) -> None:
    """Which lists hold each NUMBER. Exit 1 when any number is listed, 0 when none."""
    masker = Masker(show_numbers)
    lists = DncLists(directory)
    names = list(list_names) or _readable(lists, lists.names())
    if not names:
        # "Not listed" from a folder with no lists would pass every number: a wrong
        # --dir must not look like a clean check.
        raise ConfigurationError(
            f"no readable do-not-call lists in {directory}: give the folder the lists "
            "are in (--dir or $PREDIAL_DNC_DIR), or create one with predial dnc add / import"
        )
    lists.check_names(names)
    parsed = _numbers(numbers, default_region)
    console = out_console()
    listed = False
    try:
        for number in parsed:
            hits = lists.hits(number, names)
            listed = listed or bool(hits)
            entries = {name: lists.get(name).entry(number) for name in hits}
            if as_json:
                record: dict[str, Any] = {"number": masker.number(number), "lists": hits}
                record["entries"] = {
                    name: {"added_at": e.at.isoformat(), "added_by": e.by, "reason": e.reason}
                    for name, e in entries.items()
                    if e is not None
                }
                click.echo(json.dumps(record, sort_keys=True))
                continue
            if not hits:
                console.print(f"{masker.number(number)}: not listed", highlight=False)
                continue
            shown = []
            for name in hits:
                entry = entries[name]
                detail = (
                    f" (added {entry.at.isoformat(timespec='seconds')} by {entry.by}"
                    + (f": {entry.reason}" if entry.reason else "")
                    + ")"
                    if entry is not None
                    else ""
                )
                shown.append(escape(name + masker.text(detail)))
            console.print(f"{masker.number(number)}: listed in {', '.join(shown)}", highlight=False)
    finally:
        lists.close()
    raise click.exceptions.Exit(EXIT_REFUSED if listed else EXIT_OK)


@dnc.command()
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per list on stdout.")
def stats(directory: Path, as_json: bool) -> None:
    """Per list: numbers, bytes (bytes per number from 10,000 numbers), version,
    last import."""
    lists = DncLists(directory)
    every = lists.names()
    names = _readable(lists, every)
    lists.close()
    if not names:
        raise click.UsageError(
            f"no {'readable ' if every else ''}do-not-call lists in {directory}; "
            "create one with 'predial dnc add' or 'predial dnc import'"
        )
    console = out_console()
    for name in names:
        found = lists.get(name).stats()
        per = found.bytes_per_number
        last = found.last_import
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "list": name,
                        "numbers": found.numbers,
                        "bytes": found.bytes,
                        "bytes_per_number": per,
                        "index_bytes": found.index_bytes,
                        "version": found.generation,
                        "written_at": found.written_at,
                        "last_import": last,
                    },
                    sort_keys=True,
                )
            )
            continue
        imported = (
            f"last import {last['at']} ({last['kind']}, {', '.join(last['files'])})"
            if last
            else "never imported"
        )
        size = (
            f"{per:.2f} bytes/number"
            if per is not None and found.numbers >= _PER_NUMBER_FROM
            else f"index {found.index_bytes:,} + 4 per number"
        )
        console.print(
            f"{escape(name)}: {_plural(found.numbers, 'number')}, {found.bytes:,} bytes "
            f"({size}), version {found.generation}, written {found.written_at}, "
            f"{escape(imported)}",
            highlight=False,
        )
