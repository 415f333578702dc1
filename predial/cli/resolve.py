"""`predial resolve`: resolve a leads file, or one lead, and show where each number came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.text import Text

from .._threads import run as run_to_end
from ..errors import InputFileError, InvalidLead, UnknownCampaign, Unresolvable
from ..leadfile import KNOWN_COLUMNS, LeadRow, LeadRowError, read_leads
from ..models import Lead, Resolution, parse_lead
from ..resolver import Resolver
from ..tabular import read_header, table_format
from .exits import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from .output import (
    FitColumn,
    Masker,
    err_console,
    fitted_table,
    json_line,
    out_console,
    reported_by_the_command,
    summary_text,
    table_width,
)

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
    # A misconfigured campaign is this command's own exit-2 line, not a log error too.
    with reported_by_the_command("predial.resolver"):
        resolver = Resolver.from_config(config_path, strict=False)
    run_to_end(_resolve_all(resolver, items, concurrency, as_json))

    if as_json:
        for item in items:
            json_line(_as_json(item, masker))
        err_console().print(summary_text(_outcomes(items)))
    else:
        _print_table(items, masker)
    misconfigured = [
        item.result
        for item in items
        if isinstance(item.result, Unresolvable) and item.result.reason in CONFIGURATION_REASONS
    ]
    if misconfigured:
        # A campaign missing from the configuration, or one whose adapter could not be
        # built, is the operator's to fix, not a lead's verdict: say so once, exit 2.
        err_console().print(
            f"[bold red]error:[/] {escape(configuration_problem(misconfigured))}",
            highlight=False,
        )
        ctx.exit(EXIT_USAGE)
    refused = any(not isinstance(item.result, Resolution) for item in items)
    ctx.exit(EXIT_REFUSED if refused else EXIT_OK)


_OPTIONS = {"campaignId": "--campaign", "externalId": "--external-id", "phoneNumber": "--phone"}


def lead_from_options(campaign: str, external_id: str | None, phone: str | None) -> Lead:
    """The lead given by command-line options; a bad one is one line naming the option."""
    try:
        return parse_lead({"campaignId": campaign, "externalId": external_id, "phoneNumber": phone})
    except InvalidLead as invalid:
        field, message = invalid.problems[0]
        option = _OPTIONS.get(field or "", "the lead")
        raise click.UsageError(f"{option}: {message}") from None


#: Refusals that say the configuration is wrong, not the lead: the CLI exits 2.
CONFIGURATION_REASONS = frozenset({"unknown_campaign", "campaign_misconfigured"})


def configuration_problem(refusals: list[Unresolvable]) -> str:
    """One line for leads refused because of the configuration: the first cause, how
    many campaigns and leads it touched, and what to do."""
    first = refusals[0]
    campaigns = {refusal.campaign_id for refusal in refusals}
    others = len(campaigns) - 1
    also = f" (and {others} other campaign{'s' if others > 1 else ''})" if others else ""
    cause = (
        str(first.detail)
        if isinstance(first, UnknownCampaign)
        else f"campaign {first.campaign_id!r} is misconfigured: {first.detail}"
    )
    count = len(refusals)
    return (
        f"{cause}{also}; {count} lead{'s' if count > 1 else ''} not resolved: "
        "fix the configuration (predial config validate) or check --config"
    )


def _read_items(
    leads_file: Path | None, campaign: str | None, external_id: str | None, phone: str | None
) -> list[_Item]:
    if leads_file is None:
        if not campaign:
            raise click.UsageError("--external-id needs --campaign")
        lead = lead_from_options(campaign, external_id, phone)
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


@dataclass
class _Cells:
    """One lead's row, in every form the table may take."""

    row: Text
    mode: Text
    campaign: Text
    external: Text
    number: Text
    source: Text
    #: `source` in a word: the source, or a refusal's verdict (retry, skip).
    result: Text
    #: A reason code (never cut), or an invalid row's problem (may be cut).
    reason: Text
    reason_is_code: bool
    ms: Text


def _cells(item: _Item, masker: Masker) -> _Cells:
    lead, result = item.lead, item.result
    # Leads-file and adapter text is shown as Text, never read as rich markup.
    row = Text(str(item.line) if item.line is not None else "-")
    mode = Text(lead.mode if lead else "-")
    campaign = Text(lead.campaign_id if lead else "-")
    external = Text(lead.external_id or "" if lead else "")
    if isinstance(result, Resolution):
        source = Text(result.source, style="green")
        return _Cells(
            row,
            mode,
            campaign,
            external,
            Text(masker.number(result.phone_number)),
            source,
            source,
            Text(result.fallback_reason or ""),
            True,
            Text(f"{result.elapsed * 1000:.1f}"),
        )
    if isinstance(result, Unresolvable):
        verdict = "retry" if result.retryable else "skip"
        return _Cells(
            row,
            mode,
            campaign,
            external,
            Text(""),
            Text.assemble(("refused", "red"), f" ({verdict})"),
            Text(verdict, style="red"),
            Text(result.reason),
            True,
            Text(f"{result.elapsed * 1000:.1f}"),
        )
    error = item.error
    # The row is in its own column: the problem is the column and what is wrong.
    if error is None:
        problem = "invalid lead"
    elif error.field and not error.message.startswith(error.field):
        problem = f"{error.field}: {error.message}"
    else:
        problem = error.message
    invalid = Text("invalid", style="red")
    return _Cells(
        row,
        mode,
        campaign,
        external,
        Text(""),
        invalid,
        invalid,
        Text(masker.text(problem)),
        False,
        Text(""),
    )


def _columns(
    cells: list[_Cells], *, ms: bool, campaign: bool, mode: bool, compact: bool
) -> list[FitColumn]:
    def column(header: str, values: list[Text], **options: Any) -> FitColumn:
        return FitColumn(header, values, **options)

    codes = [len(c.reason) for c in cells if c.reason_is_code]
    columns = [column("row", [c.row for c in cells], justify="right")]
    if mode:
        columns.append(column("mode", [c.mode for c in cells]))
    if campaign:
        # Cut, if it must be, to no fewer than 10 characters: never to nothing.
        columns.append(column("campaign", [c.campaign for c in cells], floor=10))
    columns += [
        column("ext. id" if compact else "external id", [c.external for c in cells], floor=8),
        column("number", [c.number for c in cells]),  # never cut: all its visible digits
    ]
    if compact:
        columns.append(column("result", [c.result for c in cells]))
    else:
        columns.append(column("source", [c.source for c in cells]))
    # A reason code is never cut; an invalid row's problem may end in an ellipsis
    # (other columns are left out to show 40 characters of it, not more).
    columns.append(column("reason", [c.reason for c in cells], floor=max([12, *codes]), wanted=40))
    if ms:
        columns.append(column("ms", [c.ms for c in cells], justify="right"))
    return columns


def _print_table(items: list[_Item], masker: Masker) -> None:
    console = out_console()
    cells = [_cells(item, masker) for item in items]
    # Invalid rows have no campaign to speak of: they do not keep the column.
    campaigns = {item.lead.campaign_id for item in items if item.lead is not None}
    one_campaign = len(campaigns) == 1
    # What matters least goes first when the terminal is narrow: the timings (the
    # summary has their percentiles), the campaign when every row has the same one
    # (said once above the table), the mode, then the long forms of a header and of
    # a refusal ("refused (retry)" -> "retry"). Only then are cells cut.
    layouts = [
        {"ms": True, "campaign": True, "mode": True, "compact": False},
        {"ms": False, "campaign": True, "mode": True, "compact": False},
        {"ms": False, "campaign": not one_campaign, "mode": True, "compact": False},
        {"ms": False, "campaign": not one_campaign, "mode": False, "compact": False},
        {"ms": False, "campaign": not one_campaign, "mode": False, "compact": True},
    ]
    for layout in layouts:
        columns = _columns(cells, **layout)
        if table_width(columns) <= console.width:
            break
    if not layout["campaign"]:
        console.print(Text.assemble(("campaign ", "bold"), campaigns.pop()))
    table, cut = fitted_table(columns, console.width)
    console.print(table)
    if cut:
        console.print(
            f"(some cells are cut to fit {console.width} columns; --json shows them whole)"
        )
    console.print(summary_text(_outcomes(items)))
