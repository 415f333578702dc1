"""`predial resolve`: resolve a leads file, or one lead, and show where each number came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.text import Text

from .._leadfile import KNOWN_COLUMNS, LeadRow, LeadRowError, read_leads
from .._models import Lead, Resolution, parse_lead
from .._resolver import Resolver
from .._tabular import read_header, table_format
from .._threads import run as run_to_end
from ..errors import InputFileError, InvalidLead, UnknownCampaign, Unresolvable
from ._exits import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from ._output import (
    FitColumn,
    Masker,
    err_console,
    fitted_table,
    json_line,
    out_console,
    print_records,
    print_summary,
    print_words,
    reported_by_the_command,
    summary_text,
    table_width,
    wrapped_phrases,
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
    with reported_by_the_command("predial._resolver"):
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
        if message.startswith("At least one of"):  # the model's rule, in the options' terms
            message = "must not be empty"
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
        "fix the configuration (predial config validate) or check the --config file"
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
        # The compliance gate's: when the window opens, which list holds the number.
        if result.next_allowed_at is not None:
            payload["nextAllowedAt"] = result.next_allowed_at.isoformat()
        if result.list_name is not None:
            payload["listName"] = result.list_name
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


@dataclass(frozen=True)
class _Layout:
    """Which columns the table has, and in which form."""

    ms: bool = True
    mode: bool = True
    #: The campaign in a column, said once above the table (every row has the same
    #: one), or as a letter in a column with a legend above.
    campaign: Literal["column", "above", "letter"] = "column"
    #: "ext. id" for "external id", a refusal's verdict for "refused (verdict)".
    compact: bool = False
    #: The result as a letter with a legend above; the external id cut sooner.
    lettered: bool = False


def _layouts(campaigns: int) -> list[_Layout]:
    """From the widest to the narrowest: what matters least goes first when the
    terminal is narrow. The timings (the summary has their percentiles), the
    campaign when every row has the same one (said once above the table), the mode,
    then the long forms of a header and of a refusal ("refused (retry)" -> "retry"),
    then the result and the campaigns become letters. Cells are cut only past that
    (the external id, then a long campaign), and a masked number or a reason code
    never: a terminal too narrow even then shows each lead as lines of its own."""
    one: Literal["above", "column"] = "above" if campaigns == 1 else "column"
    layouts = [
        _Layout(),
        _Layout(ms=False),
        _Layout(ms=False, campaign=one),
        _Layout(ms=False, campaign=one, mode=False),
        _Layout(ms=False, campaign=one, mode=False, compact=True),
        _Layout(ms=False, campaign=one, mode=False, compact=True, lettered=True),
    ]
    if 1 < campaigns <= len(_CAMPAIGN_LETTERS):
        layouts.append(
            _Layout(ms=False, campaign="letter", mode=False, compact=True, lettered=True)
        )
    return layouts


_CAMPAIGN_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


#: The results in the order their letters are chosen and listed: sources, then
#: refusals (crm c, stored s, retry r, skip k), whatever order the rows come in.
_RESULT_ORDER = ("crm", "cache", "stale", "stored", "retry", "skip", "invalid")


def _letters(words: list[str]) -> dict[str, str]:
    """A letter for each word, in order: its first letter not yet taken, else the
    first free one."""
    letters: dict[str, str] = {}
    for word in words:
        used = set(letters.values())
        free = [c for c in word.lower() if c.isalpha() and c not in used]
        free += [c for c in "abcdefghijklmnopqrstuvwxyz0123456789" if c not in used]
        letters[word] = free[0] if free else "?"
    return letters


def _legend(title: str, pairs: list[tuple[str, str]]) -> list[str]:
    """`title: A first · B second`, as phrases to wrap at the ` · `."""
    phrases = [f"{letter} {meaning}" for letter, meaning in pairs]
    return [f"{title}: {phrases[0]}", *phrases[1:]] if phrases else []


def _columns(cells: list[_Cells], layout: _Layout, legend: list[list[str]]) -> list[FitColumn]:
    """The table's columns in `layout`; the legends its letters need go in `legend`."""
    columns = [FitColumn("row", [c.row for c in cells], justify="right")]  # never cut
    if layout.mode:
        columns.append(FitColumn("mode", [c.mode for c in cells]))
    if layout.campaign == "column":
        # Cut, if it must be, to no fewer than 10 characters: never to nothing.
        columns.append(FitColumn("campaign", [c.campaign for c in cells], floor=10))
    elif layout.campaign == "letter":
        named = dict.fromkeys(c.campaign.plain for c in cells if c.campaign.plain != "-")
        letters = {name: _CAMPAIGN_LETTERS[index] for index, name in enumerate(named)}
        legend.append(_legend("campaign (c)", [(letters[name], name) for name in named]))
        columns.append(
            FitColumn("c", [Text(letters.get(c.campaign.plain, c.campaign.plain)) for c in cells])
        )
    # The external id gives way before anything but the campaign: cut to 7 characters,
    # then to 3.
    if layout.lettered:
        columns.append(FitColumn("ext", [c.external for c in cells], floor=4))
    else:
        header = "ext. id" if layout.compact else "external id"
        columns.append(FitColumn(header, [c.external for c in cells], floor=8))
    columns.append(FitColumn("number", [c.number for c in cells]))  # never cut
    if layout.lettered:
        meaning = {c.result.plain: c.source.plain for c in cells}
        rank = {result: index for index, result in enumerate(_RESULT_ORDER)}
        results = sorted(meaning, key=lambda r: rank.get(r, len(rank)))
        letters = _letters(results)
        legend.append(_legend("result (r)", [(letters[r], meaning[r]) for r in results]))
        columns.append(
            FitColumn("r", [Text(letters[c.result.plain], style=c.result.style) for c in cells])
        )
    elif layout.compact:
        columns.append(FitColumn("result", [c.result for c in cells]))
    else:
        columns.append(FitColumn("source", [c.source for c in cells]))
    # A reason code is never cut; an invalid row's problem may end in an ellipsis
    # (other columns are left out to show 40 characters of it, not more).
    codes = [len(c.reason) for c in cells if c.reason_is_code]
    columns.append(
        FitColumn("reason", [c.reason for c in cells], floor=max([12, *codes]), wanted=40)
    )
    if layout.ms:
        columns.append(FitColumn("ms", [c.ms for c in cells], justify="right"))
    return columns


def _print_table(items: list[_Item], masker: Masker) -> None:
    console = out_console()
    cells = [_cells(item, masker) for item in items]
    # Invalid rows have no campaign to speak of: they do not keep the column.
    campaigns = list(dict.fromkeys(item.lead.campaign_id for item in items if item.lead))
    legend: list[list[str]] = []
    for layout in _layouts(len(campaigns)):
        legend = []
        columns = _columns(cells, layout, legend)
        if table_width(columns) <= console.width:
            break
    # Nothing fits whole: the narrowest layout, cut where cells may be cut.
    fitted = fitted_table(columns, console.width)
    if fitted is None:
        # Too narrow for a row a line: each lead as lines of its own, everything in
        # full (the widest layout), nothing cut.
        layout, legend = _layouts(len(campaigns))[0], []
        if len(campaigns) == 1:
            layout = _Layout(campaign="above")
    if layout.campaign == "above":
        console.print(Text.assemble(("campaign ", "bold"), campaigns[0]), soft_wrap=True)
    for phrases in legend:
        for line in wrapped_phrases(phrases, console.width, hang=2):
            console.print(line, soft_wrap=True, markup=False, highlight=False)
    if fitted is None:
        print_records(console, _columns(cells, layout, []))
    else:
        table, cut = fitted
        console.print(table)
        if cut:
            print_words(
                console,
                Text(
                    f"(some cells are cut to fit {console.width} columns; --json shows them whole)"
                ),
            )
    print_summary(console, _outcomes(items))
