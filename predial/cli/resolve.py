"""`predial resolve`: resolve a leads file, or one lead, and show where each number came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from .._threads import run as run_to_end
from ..errors import InputFileError, UnknownCampaign, Unresolvable
from ..leadfile import KNOWN_COLUMNS, LeadRow, LeadRowError, read_leads
from ..models import Lead, Resolution
from ..resolver import Resolver
from ..tabular import read_header, table_format
from .app import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from .output import Masker, err_console, json_line, out_console, summary_text

__all__ = ["resolve"]


@dataclass
class _Item:
    line: int | None
    lead: Lead | None
    result: Resolution | Unresolvable | None = None
    error: LeadRowError | None = None


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The predial.toml to use (default: $PREDIAL_CONFIG, then ./predial.toml).",
)
show_numbers_option = click.option(
    "--show-numbers", is_flag=True, help="Print phone numbers in full (masked by default)."
)


@click.command()
@click.argument("leads_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@config_option
@click.option(
    "--campaign", help="Campaign of leads without a campaignId column, or of --external-id."
)
@click.option("--external-id", help="Resolve one prefetch lead by its CRM id (with --campaign).")
@click.option("--phone", "stored_phone", help="The lead's stored number, with --external-id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per lead on stdout.")
@show_numbers_option
@click.option(
    "--concurrency",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Leads resolved at once.",
)
@click.pass_context
def resolve(
    ctx: click.Context,
    leads_file: Path | None,
    config_path: Path | None,
    campaign: str | None,
    external_id: str | None,
    stored_phone: str | None,
    as_json: bool,
    show_numbers: bool,
    concurrency: int,
) -> None:
    """Resolve every lead of LEADS_FILE (CSV or JSONL, Lupitor lead columns).

    \b
    predial resolve leads.csv --config predial.toml
    predial resolve --campaign cmp_1 --external-id C-1001
    """
    if (leads_file is None) == (external_id is None):
        raise click.UsageError("give a LEADS_FILE or --external-id (with --campaign), not both")
    items = _read_items(leads_file, campaign, external_id, stored_phone)
    masker = Masker(show_numbers)
    resolver = Resolver.from_config(config_path, strict=False)
    run_to_end(_resolve_all(resolver, items, concurrency, as_json))

    if as_json:
        for item in items:
            json_line(_as_json(item, masker))
        err_console().print(summary_text(_outcomes(items)))
    else:
        _print_table(items, masker)
    unknown = [item.result for item in items if isinstance(item.result, UnknownCampaign)]
    if unknown:
        # A campaign missing from the configuration is the operator's to fix, not a
        # lead's verdict: say so once, and exit 2.
        more = len({refusal.campaign_id for refusal in unknown}) - 1
        also = f" (and {more} other campaign{'s' if more > 1 else ''})" if more else ""
        err_console().print(
            f"[bold red]error:[/] {escape(str(unknown[0].detail))}{escape(also)}; "
            f"{len(unknown)} lead{'s' if len(unknown) > 1 else ''} not resolved: check --config",
            highlight=False,
        )
        ctx.exit(EXIT_USAGE)
    refused = any(not isinstance(item.result, Resolution) for item in items)
    ctx.exit(EXIT_REFUSED if refused else EXIT_OK)


def _read_items(
    leads_file: Path | None, campaign: str | None, external_id: str | None, phone: str | None
) -> list[_Item]:
    if leads_file is None:
        if not campaign:
            raise click.UsageError("--external-id needs --campaign")
        lead = Lead(campaign_id=campaign, external_id=external_id, phone_number=phone)
        return [_Item(None, lead)]
    if not leads_file.exists():
        raise InputFileError(f"{leads_file}: no such file")
    if table_format(leads_file) == "csv":
        ignored = [name for name in read_header(leads_file) if name not in KNOWN_COLUMNS]
        if ignored:
            err_console().print(f"note: columns ignored: {', '.join(ignored)}")
    items = []
    for row in read_leads(leads_file, campaign):
        if isinstance(row, LeadRow):
            items.append(_Item(row.line, row.lead))
        else:
            items.append(_Item(row.line, None, error=row))
    if not items:
        raise InputFileError(f"{leads_file}: has no leads")
    return items


async def _resolve_all(
    resolver: Resolver, items: list[_Item], concurrency: int, quiet: bool
) -> None:
    valid = [item for item in items if item.lead is not None]
    console = err_console()
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal or len(valid) < 2,
    )
    async with resolver:
        with progress:
            task = progress.add_task("resolving", total=len(valid))

            def done(index: int, result: Resolution | Unresolvable) -> None:
                valid[index].result = result
                progress.advance(task)

            leads = [item.lead for item in valid if item.lead is not None]
            await resolver.resolve_many(leads, concurrency=concurrency, on_result=done)


def _outcomes(items: list[_Item]) -> list[Resolution | Unresolvable | str]:
    return [item.result if item.result is not None else "invalid_lead" for item in items]


def _as_json(item: _Item, masker: Masker) -> dict[str, object]:
    lead, result = item.lead, item.result
    payload: dict[str, object] = {"row": item.line}
    if lead is not None:
        payload.update(campaignId=lead.campaign_id, externalId=lead.external_id, mode=lead.mode)
    if isinstance(result, Resolution):
        payload.update(
            resolved=True,
            phoneNumber=masker.number(result.phone_number),
            source=result.source,
            fallbackReason=result.fallback_reason,
            adapter=result.adapter,
            ms=round(result.elapsed * 1000, 3),
        )
    elif isinstance(result, Unresolvable):
        payload.update(
            resolved=False,
            reason=result.reason,
            retryable=result.retryable,
            retryAfter=result.retry_after,
            detail=masker.text(result.detail) if result.detail else None,
            ms=round(result.elapsed * 1000, 3),
        )
    else:
        error = item.error
        payload.update(
            resolved=False,
            reason="invalid_lead",
            retryable=False,
            column=error.field if error else None,
            detail=masker.text(error.message) if error else None,
        )
    return payload


def _print_table(items: list[_Item], masker: Masker) -> None:
    table = Table(show_edge=False, header_style="bold")
    for name in ("row", "mode", "campaign", "external id", "number", "source", "reason"):
        table.add_column(name, justify="right" if name == "row" else "left")
    table.add_column("ms", justify="right")
    for item in items:
        lead, result = item.lead, item.result
        row = str(item.line) if item.line is not None else "-"
        mode = lead.mode if lead else "-"
        # Leads-file and adapter text is shown as text, never read as rich markup.
        campaign = escape(lead.campaign_id) if lead else "-"
        external = escape(lead.external_id or "") if lead else ""
        if isinstance(result, Resolution):
            table.add_row(
                row,
                mode,
                campaign,
                external,
                masker.number(result.phone_number),
                f"[green]{result.source}[/]",
                result.fallback_reason or "",
                f"{result.elapsed * 1000:.1f}",
            )
        elif isinstance(result, Unresolvable):
            verdict = "retry" if result.retryable else "skip"
            table.add_row(
                row,
                mode,
                campaign,
                external,
                "",
                f"[red]refused[/] ({verdict})",
                escape(result.reason),
                f"{result.elapsed * 1000:.1f}",
            )
        else:
            detail = escape(masker.text(item.error)) if item.error else "invalid lead"
            table.add_row(row, mode, campaign, external, "", "[red]invalid[/]", detail, "")
    console = out_console()
    console.print(table)
    console.print(summary_text(_outcomes(items)))
