"""`predial check`: one traced resolution, for operators and adapter authors."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from .._faults import safe_flag, safe_text
from .._resolver import Resolver
from .._threads import run as run_to_end
from .._trace import Trace
from ..errors import ConfigurationError, UnknownCampaign
from ._exits import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from ._output import (
    FitColumn,
    Masker,
    err_console,
    fitted_table,
    json_line,
    out_console,
    print_records,
    print_words,
    reported_by_the_command,
)
from ._resolve import (
    CONFIGURATION_REASONS,
    config_option,
    configuration_problem,
    lead_from_options,
    show_numbers_option,
)

__all__ = ["check"]


@click.command()
@click.argument("campaign")
@click.argument("external_id")
@click.option("--phone", "stored_phone", help="The lead's stored number, if it has one.")
@config_option
@show_numbers_option
@click.option("--json", "as_json", is_flag=True, help="The trace as one JSON object.")
@click.pass_context
def check(
    ctx: click.Context,
    campaign: str,
    external_id: str,
    stored_phone: str | None,
    config_path: Path | None,
    show_numbers: bool,
    as_json: bool,
) -> None:
    """Resolve EXTERNAL_ID of CAMPAIGN once, without the cache, and show every step:
    the adapter, each attempt with its timing, the raw CRM answer, the policy's
    verdict on each phone, and the result."""
    lead = lead_from_options(campaign, external_id, stored_phone)
    # A misconfigured campaign is this command's own exit-2 line, not a log error too.
    with reported_by_the_command("predial._resolver"):
        resolver = Resolver.from_config(config_path, strict=False)

    async def run() -> Trace:
        async with resolver:
            if lead.campaign_id not in resolver.campaigns:
                # A configuration mistake, not a lead's verdict: exit 2, one line.
                unknown = UnknownCampaign(lead.campaign_id, sorted(resolver.campaigns))
                raise ConfigurationError(f"{unknown.detail}; check the --config file")
            error = resolver.campaigns[lead.campaign_id].error
            if error is not None:  # its adapter could not be built: nothing to trace
                raise ConfigurationError(
                    f"campaign {lead.campaign_id!r} is misconfigured: {safe_text(error)}; "
                    "fix the configuration (predial config validate)"
                )
            return await resolver.explain(lead)

    trace = run_to_end(run())
    masker = Masker(show_numbers)
    if as_json:
        json_line(_as_json(trace, masker))
    else:
        _print(trace, masker)
    refusal = trace.refusal
    if refusal is not None and refusal.reason in CONFIGURATION_REASONS:
        err_console().print(
            f"[bold red]error:[/] {escape(configuration_problem([refusal]))}", highlight=False
        )
        ctx.exit(EXIT_USAGE)
    ctx.exit(EXIT_OK if trace.resolution is not None else EXIT_REFUSED)


def _as_json(trace: Trace, masker: Masker) -> dict[str, object]:
    resolution, refusal = trace.resolution, trace.refusal
    return {
        "campaignId": trace.lead.campaign_id,
        "externalId": trace.lead.external_id,
        "adapter": trace.adapter,
        "plugin": trace.plugin,
        "breaker": trace.breaker,
        "sharedTier": trace.shared,
        "attempts": [
            {
                "attempt": attempt.number,
                "startedMs": round(attempt.started * 1000, 3),
                "ms": round(attempt.duration * 1000, 3),
                "raw": masker.raw(attempt.raw) if attempt.error is None else None,
                "error": masker.text(attempt.error) if attempt.error else None,
                "retryAfter": attempt.retry_after,
                "waitMs": round(attempt.wait * 1000, 3) if attempt.wait else None,
            }
            for attempt in trace.attempts
        ],
        "verdicts": [
            {
                "label": masker.text(verdict.label) if verdict.label is not None else None,
                "primary": safe_flag(verdict.primary),
                "value": masker.number(verdict.value),
                "e164": masker.number(verdict.e164) if verdict.e164 else None,
                "reason": verdict.reason,
            }
            for verdict in trace.verdicts
        ],
        "notes": [masker.text(note) for note in trace.notes],
        "resolved": resolution is not None,
        "phoneNumber": masker.number(resolution.phone_number) if resolution else None,
        "source": resolution.source if resolution else None,
        "fallbackReason": resolution.fallback_reason if resolution else None,
        "reason": refusal.reason if refusal else None,
        "retryable": refusal.retryable if refusal else None,
        "retryAfter": refusal.retry_after if refusal else None,
        "ms": round(trace.elapsed * 1000, 3),
    }


def _print(trace: Trace, masker: Masker) -> None:
    console = out_console()
    lead = trace.lead
    # Prose wraps between words, never inside one: a masked number stays whole.
    print_words(
        console,
        f"[bold]campaign[/] {escape(lead.campaign_id)}   "
        f"[bold]external id[/] {escape(lead.external_id or '')}",
    )
    if trace.adapter:
        print_words(
            console,
            f"[bold]adapter[/] {escape(trace.adapter)}  from {escape(trace.plugin or '')}   "
            f"[bold]circuit[/] {trace.breaker}",
        )
    if trace.shared is not None:
        print_words(
            console,
            f"[bold]shared tier[/] {trace.shared['state']}  {escape(trace.shared['url'])}"
            f"{'  (cluster)' if trace.shared['cluster'] else ''}"
            f"   {trace.shared['members']} process(es) seen",
        )
    for note in trace.notes:
        print_words(console, Text(f"note: {masker.text(note)}"))
    if trace.attempts:
        numbers, starts, durations, answers = [], [], [], []
        for attempt in trace.attempts:
            numbers.append(Text(str(attempt.number)))
            starts.append(Text(f"{attempt.started * 1000:.1f}"))
            durations.append(Text(f"{attempt.duration * 1000:.1f}"))
            if attempt.error:
                answer = Text(masker.text(attempt.error), style="red")
                if attempt.wait:
                    answer.append(f"  (retry in {attempt.wait * 1000:.0f} ms)")
            else:
                answer = Text(masker.raw(attempt.raw))
            answers.append(answer)
        # The answer wraps between words (a masked number is one word, never cut).
        timings = [FitColumn("at ms", starts), FitColumn("took ms", durations)]
        said = FitColumn("answer", answers, wrap=True)
        _print_fitted(
            console,
            "adapter calls",
            [FitColumn("#", numbers), *timings, said],
            [FitColumn("attempt", numbers), *timings, said],
        )
    if trace.verdicts:
        labels, primaries, values, outcomes = [], [], [], []
        for verdict in trace.verdicts:
            labels.append(Text(masker.text(verdict.label) if verdict.label is not None else ""))
            primaries.append(Text("yes" if safe_flag(verdict.primary) else ""))
            values.append(Text(masker.number(verdict.value)))
            outcomes.append(
                Text.assemble(("accepted", "green"), f" {masker.number(verdict.e164)}")
                if verdict.e164
                else Text.assemble(("refused", "red"), f" {verdict.reason or ''}")
            )
        # The value and the verdict (a number, a reason code) are never cut; a long
        # label ends in an ellipsis rather than wrapping.
        columns = [
            FitColumn("label", labels, floor=10),
            FitColumn("primary", primaries),
            FitColumn("value", values),
            FitColumn("verdict", outcomes),
        ]
        order = [Text(str(index)) for index in range(1, len(labels) + 1)]
        _print_fitted(
            console, "phone policy, in pick order", columns, [FitColumn("phone", order), *columns]
        )
    if trace.resolution is not None:
        resolution = trace.resolution
        why = f" (fallback: {resolution.fallback_reason})" if resolution.fallback_reason else ""
        print_words(
            console,
            f"[bold green]resolved[/] {masker.number(resolution.phone_number)} "
            f"from {resolution.source}{why} in {trace.elapsed * 1000:.1f} ms",
        )
    elif trace.refusal is not None:
        refusal = trace.refusal
        action = "retry later" if refusal.retryable else "skip"
        after = f" after {refusal.retry_after:g} s" if refusal.retry_after is not None else ""
        detail = f": {escape(masker.text(refusal.detail))}" if refusal.detail else ""
        print_words(
            console,
            f"[bold red]refused[/] {refusal.reason} ({action}{after}){detail} "
            f"in {trace.elapsed * 1000:.1f} ms",
        )


def _print_fitted(
    console: Console, title: str, columns: list[FitColumn], records: list[FitColumn]
) -> None:
    """`columns` as a table fitted to the console or, on one too narrow for it,
    `records` as a block of lines per row (`print_records`): nothing is cut."""
    fitted = fitted_table(columns, console.width, title=title)
    if fitted is None:
        print_records(console, records, title=title)
    else:
        console.print(fitted[0])
