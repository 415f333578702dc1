"""A dialer loop, the way a dialer process uses predial.

Workers take leads from a queue and resolve each one just before "dialling" it
(here: printing the masked number). A refusal marked retryable goes back on the
queue after its retry_after; a permanent one is skipped. At the end the resolver's
stats are printed.

    python examples/dialer.py                       # the bundled example
    python examples/dialer.py --leads leads.csv --config predial.toml --workers 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import predial
from predial import LeadRow, read_leads

HERE = Path(__file__).parent
MAX_TRIES = 2  # a real dialer would retry in a later calling window instead


async def dial(lead: predial.Lead, number: str) -> None:
    """Stand-in for placing the call."""
    await asyncio.sleep(0)


async def worker(
    name: int,
    resolver: predial.Resolver,
    queue: asyncio.Queue[tuple[predial.Lead, int]],
    outcomes: dict[str, int],
) -> None:
    while True:
        lead, tries = await queue.get()
        try:
            resolution = await resolver.resolve(lead)
        except predial.Unresolvable as refusal:
            # A short wait is retried in this run; a long one (the callee's calling
            # window opens at next_allowed_at, a frequency cap) is left for later.
            delay = refusal.retry_after if refusal.retry_after is not None else 0.2
            if refusal.retryable and tries + 1 < MAX_TRIES and delay <= 1.0:
                shown = lead.external_id or "-"
                print(f"worker {name}: {shown}: {refusal.reason}, retry in {delay:g}s")
                asyncio.get_running_loop().call_later(delay, queue.put_nowait, (lead, tries + 1))
            else:
                verdict = "retry later" if refusal.retryable else "skip"
                if refusal.next_allowed_at is not None:
                    verdict += f" at {refusal.next_allowed_at:%Y-%m-%d %H:%M} UTC"
                print(f"worker {name}: {lead.external_id or '-'}: {refusal.reason} ({verdict})")
                outcomes["refused"] += 1
        else:
            await dial(lead, resolution.phone_number)
            reason = f" ({resolution.fallback_reason})" if resolution.fallback_reason else ""
            print(
                f"worker {name}: {lead.external_id or '-'}: dialling "
                f"{predial.mask_phone(resolution.phone_number)} from {resolution.source}{reason}"
            )
            outcomes["dialled"] += 1
        finally:
            queue.task_done()


async def main(leads_path: Path, config: Path, workers: int) -> dict[str, int]:
    queue: asyncio.Queue[tuple[predial.Lead, int]] = asyncio.Queue()
    for row in read_leads(leads_path):
        if isinstance(row, LeadRow):
            queue.put_nowait((row.lead, 0))
        else:
            print(f"skipping {row}")
    outcomes = {"dialled": 0, "refused": 0}
    async with predial.Resolver.from_config(config) as resolver:
        tasks = [asyncio.create_task(worker(n, resolver, queue, outcomes)) for n in range(workers)]
        while True:  # wait until the queue is drained and no retry is pending
            await queue.join()
            await asyncio.sleep(MAX_TRIES * 1.0)
            if queue.empty():
                break
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        print("stats:", json.dumps(resolver.stats().to_dict()))
    return outcomes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A dialer loop using predial.")
    parser.add_argument("--leads", type=Path, default=HERE / "leads.csv")
    parser.add_argument("--config", type=Path, default=HERE / "predial.toml")
    parser.add_argument("--workers", type=int, default=5)
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments.leads, arguments.config, arguments.workers))
    print(f"dialled {result['dialled']}, refused {result['refused']}")
