"""`predial import`: put a leads file into a Lupitor campaign, resumably."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .._threads import run as run_to_end
from ..errors import InputFileError
from ..lupitor.client import API_URL_ENV, AsyncLupitorClient
from ..lupitor.importer import ApiVersion, ImportReport, import_leads_async
from ..resolver import Resolver
from .app import EXIT_OK, EXIT_REFUSED
from .output import err_console, out_console
from .resolve import config_option

__all__ = ["import_"]


def _mapping(values: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for value in values:
        field, sep, column = value.partition("=")
        if not sep or not field or not column:
            raise click.BadParameter(f"{value!r}: write FIELD=COLUMN", param_hint="--map")
        mapping[field.strip()] = column.strip()
    return mapping


def _count_rows(path: Path) -> int | None:
    """Lines in the file, for the progress bar's total (records may span lines)."""
    try:
        with path.open("rb") as file:
            return max(0, sum(1 for _ in file) - 1)
    except OSError:
        return None


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--campaign", required=True, help="The Lupitor campaign to import into.")
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
    help="Journal file (default: FILE.journal.sqlite beside the input).",
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every rejected or failed row, with its reason and its values, to this "
    "CSV. A value starting with = + - @ or a tab or carriage return gets a ' in front, "
    "so a spreadsheet runs no formula; a byte that could not be read shows as \\xNN; "
    "values are otherwise kept as they were. Its last column, extra, holds values "
    "without a column. It may not be FILE or the journal.",
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
@click.option("--dry-run", is_flag=True, help="Validate and report; send nothing.")
@click.option(
    "--verify",
    is_flag=True,
    help="Resolve each prefetch lead through the campaign's adapter first (--config).",
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
) -> None:
    """Import FILE (CSV or JSONL) into a campaign: prefetch leads by externalId,
    standard leads with their numbers. The API key is read from $LUPITOR_API_KEY.

    Rerun the same command after an interruption: confirmed rows are not sent again.
    A second import of the same file while one runs stops at once (exit 2) naming
    the first, or waits for it with --wait. Exit code 0 only when every row is
    accounted for (created, already present, duplicate or rejected); 1 when some
    failed to send; 2 on errors.
    """
    if not file.exists():
        raise InputFileError(f"{file}: no such file")
    mapping = _mapping(maps)
    console = err_console()
    resolver = Resolver.from_config(config_path, strict=False) if verify else None
    client = (
        None
        if dry_run
        else AsyncLupitorClient(
            base_url=api_url,
            resource="records" if resource == "records" else "leads",
            bulk_per_minute=bulk_per_minute,
            calls_per_minute=calls_per_minute,
            window=rate_window,
        )
    )
    total = _count_rows(file)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )

    async def run() -> ImportReport:
        try:
            with progress:
                task = progress.add_task("importing", total=total)
                return await import_leads_async(
                    file,
                    campaign,
                    client=client,
                    batch_size=batch_size,
                    region=region,
                    mapping=mapping,
                    journal_path=journal_path,
                    rejects_path=rejects_path,
                    dry_run=dry_run,
                    api_version=cast(ApiVersion, api_version),
                    verify=resolver,
                    progress=lambda count: progress.advance(task, count),
                    on_columns=lambda text: console.print(f"columns: {text}", markup=False),
                    encoding=encoding,
                    wait=wait,
                    on_notice=lambda text: console.print(text, markup=False, highlight=False),
                )
        finally:
            if client is not None:
                await client.aclose()
            if resolver is not None:
                await resolver.close()

    report = run_to_end(run())
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    ctx.exit(EXIT_OK if report.accounted else EXIT_REFUSED)


def _print_report(report: ImportReport) -> None:
    out = out_console()
    title = "dry run (nothing sent)" if report.dry_run else "import"
    if report.resumed:
        title += ", resumed from its journal"
    out.print(f"[bold]{title}[/]: {report.rows} rows in {report.elapsed:.1f} s")
    if report.dry_run:
        out.print(f"  would send                       {report.sendable}")
    else:
        out.print(f"  created                          {report.created}")
    out.print(f"  skipped: duplicate in the file   {report.duplicates_in_file}")
    out.print(f"  skipped: already in the campaign {report.already_present}")
    out.print(f"  rejected                         {report.rejected}")
    out.print(f"  failed to send                   {report.failed}")
    if report.in_flight:
        out.print(f"  in flight (rerun to settle)      {report.in_flight}")
    if report.would_not_resolve:
        out.print(f"  would not resolve (--verify)     {report.would_not_resolve}")
    out.print(f"  requests: {report.bulk_requests} bulk, {report.single_requests} single")
    if report.encoding not in ("utf-8", "utf-8-sig"):
        out.print(f"  read as: {report.encoding}", markup=False)
    if report.rejects:
        out.print(f"  rejected and failed rows: {report.rejects}")
    if report.journal:
        out.print(f"  journal: {report.journal}")
