"""Filling the cache ahead of a dial window (`Resolver.warm`).

Leads whose number is already fresh in the cache are skipped. For the rest, an
adapter with a batch read (`fetch_phones(external_ids)`, e.g. HubSpot's batch
read of 100 contacts) is called once per `batch_size` ids; other adapters get
bounded concurrent single fetches through the normal resolve path. Every answer
is interpreted and cached exactly as a just-in-time fetch would be, so a dial
that follows is a cache hit. One failed batch never stops the others.

A batch answer maps ids to what `fetch_phone` would return; a `RecordNotFound`
instance as a value says the record does not exist. An id left out of the answer
is fetched alone: absence from a batch is not proof (HubSpot answers a merged
record under its survivor's id).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._decision import DecisionContext, current_decision
from ._fetcher import Answer, CampaignRuntime
from ._models import Lead, parse_lead
from ._redaction import redact, safe_text
from ._selection import TRANSIENT_REASONS, Outcome
from .errors import (
    AdapterError,
    BadBatchAnswer,
    CircuitOpen,
    InvalidLead,
    RecordNotFound,
    Unresolvable,
)

if TYPE_CHECKING:
    from ._resolver import Resolver

__all__ = ["WarmReport", "warm"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class WarmReport:
    """What `Resolver.warm` did.

    `requested`: distinct prefetch leads asked for. `fresh`: already fresh in the
    cache, not fetched. `warmed`: now cached with a dialable number. `refused`:
    cached as not dialable (not found, no valid number, do-not-call). `failed`: the
    CRM could not answer; nothing cached, the dial will fetch just in time.
    `skipped`: standard-mode leads and leads of unknown campaigns (nothing to warm).
    `invalid`: malformed leads (`resolve` refuses them with `InvalidLead`), not warmed.
    `batches`: `fetch_phones` calls made.
    """

    requested: int = 0
    fresh: int = 0
    warmed: int = 0
    refused: int = 0
    failed: int = 0
    skipped: int = 0
    invalid: int = 0
    batches: int = 0


async def warm(
    resolver: Resolver,
    leads: Iterable[Lead | Mapping[str, Any]],
    *,
    concurrency: int,
    batch_timeout: float,
    on_progress: Progress | None,
) -> WarmReport:
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    report = WarmReport()
    wanted: dict[str, dict[str, Lead]] = {}
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(leads):
        try:
            lead = parse_lead(item, index=index)
        except InvalidLead:
            report.invalid += 1
            continue
        if lead.external_id is None or lead.campaign_id not in resolver.campaigns:
            report.skipped += 1
            continue
        key = (lead.campaign_id, lead.external_id)
        if key in seen:
            continue
        seen.add(key)
        report.requested += 1
        if resolver.is_fresh(*key):
            report.fresh += 1
            continue
        wanted.setdefault(lead.campaign_id, {})[lead.external_id] = lead

    total = report.requested - report.fresh
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if on_progress is not None:
            on_progress(done, total)

    gate = asyncio.Semaphore(concurrency)

    async def batch(runtime: CampaignRuntime, leads: dict[str, Lead]) -> None:
        ids = list(leads)
        async with gate:
            deadline = asyncio.timeout(batch_timeout)
            try:
                async with deadline:
                    answers = await runtime.fetch_many(ids)
            except Exception as error:
                # Whatever one batch raises (an outage, a timeout, an adapter bug)
                # costs only its own leads: they are fetched just in time later.
                if deadline.expired():
                    runtime.breaker.record_failure()  # the cancelled call could not
                if not isinstance(error, CircuitOpen):
                    report.batches += 1
                log.warning(
                    "campaign %s: a batch of %d could not be warmed: %s",
                    runtime.campaign.id,
                    len(ids),
                    "timed out" if isinstance(error, TimeoutError) else _describe(error),
                )
                report.failed += len(ids)
                advance(len(ids))
                return
            report.batches += 1
            missing = []
            for external_id in ids:
                if external_id not in answers:
                    # Not in the answer is not proof of absence (a merged record comes
                    # back under its survivor's id): asked alone, below.
                    missing.append(leads[external_id])
                    continue
                answer = answers[external_id]
                if isinstance(answer, RecordNotFound):
                    outcome = Outcome.permanent("not_found")
                else:
                    outcome = runtime.finish(Answer(answer))
                resolver.store(runtime, (runtime.campaign.id, external_id), outcome)
                _count(report, outcome)
            advance(len(ids) - len(missing))
        # Outside the gate: the single fetches take it themselves.
        await asyncio.gather(*(single(lead) for lead in missing))

    async def single(lead: Lead) -> None:
        async with gate:
            try:
                # Not a dial: no compliance gate, and audited as the warm-up it is.
                token = current_decision.set(DecisionContext(None, "warm"))
                try:
                    result = await resolver._resolve(lead, gated=False)
                finally:
                    current_decision.reset(token)
            except Unresolvable as refusal:
                if refusal.retryable:
                    report.failed += 1
                else:
                    report.refused += 1
            else:
                if result.source in ("crm", "cache"):
                    report.warmed += 1
                elif result.source == "stale" or result.fallback_reason in TRANSIENT_REASONS:
                    report.failed += 1  # the stored number stood in for a CRM that failed
                else:
                    report.refused += 1
            advance(1)

    async with asyncio.TaskGroup() as group:
        for campaign_id, by_id in wanted.items():
            runtime = resolver.campaigns[campaign_id]
            if runtime.fetch_batch is not None and runtime.error is None:
                ids = list(by_id)
                for start in range(0, len(ids), runtime.batch_size):
                    chunk = ids[start : start + runtime.batch_size]
                    group.create_task(batch(runtime, {i: by_id[i] for i in chunk}))
            else:
                for lead in by_id.values():
                    group.create_task(single(lead))
    return report


def _describe(error: Exception) -> str:
    if isinstance(error, (AdapterError, BadBatchAnswer)):
        return redact(safe_text(error))  # the adapter's text: numbers and secrets out
    # Not one of ours: the type only, as exception texts of HTTP libraries can hold
    # URLs with credentials.
    return f"{type(error).__name__} (a bug in the adapter's fetch_phones?)"


def _count(report: WarmReport, outcome: Outcome) -> None:
    if outcome.phone_number is not None:
        report.warmed += 1
    elif outcome.transient:
        report.failed += 1
    else:
        report.refused += 1
