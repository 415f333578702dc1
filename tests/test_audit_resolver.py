"""The audit log under a resolver (issue 15, acceptance): a 10,000-lead run with a
sink that is blocked or failing still resolves every lead (no decision waits for the
sink: the records are dropped and counted instead), and `summarize` of the log a
healthy sink wrote reproduces the resolver's own stats."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from conftest import VALID_US, Script, make_resolver

from predial.compliance import AuditLog, summarize_audit

KEY = "a-key-for-the-resolver-audit-test"
LEADS = 10_000


def answer(external_id: str) -> Any:
    # Four in five found; the CRM has no number for the rest (a permanent refusal).
    return None if int(external_id) % 5 == 0 else VALID_US


def leads() -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    for index in range(LEADS):
        kind = index % 20
        if kind == 0:
            batch.append({"campaignId": "cmp", "phoneNumber": VALID_US})  # standard mode
        elif kind == 1:
            batch.append({"campaignId": "other", "externalId": str(index)})  # unknown campaign
        elif kind == 2:
            batch.append({"campaignId": "cmp"})  # invalid: neither id nor number
        else:
            # Repeats, so the cache answers some.
            batch.append({"campaignId": "cmp", "externalId": str(index % 997)})
    return batch


async def test_a_blocked_sink_holds_up_no_resolve() -> None:
    release = threading.Event()
    entered = threading.Event()

    def blocked(record: dict[str, Any]) -> None:
        entered.set()
        release.wait(60)

    audit = AuditLog(blocked, key=KEY, max_queue=100)
    resolver = make_resolver(Script(answer=answer), audit=audit, deadline=5.0)
    try:
        results = await resolver.resolve_many(leads(), concurrency=50)
        # Every lead resolved or refused for its own reason while the sink was held,
        # each within the resolver's deadline (no decision waited on the sink).
        assert len(results) == LEADS
        assert max(result.elapsed for result in results) < 5.0
        stats = resolver.stats()
        assert stats.resolved + stats.refused == LEADS
        assert set(stats.refusals) <= {"no_number", "unknown_campaign", "invalid_lead"}
        assert entered.wait(30)
        during = audit.stats()
        assert during.written == 0
        # At most the queue and the record in the sink's hands wait; the rest dropped.
        assert during.queued <= 101
        assert during.dropped + during.queued == LEADS
    finally:
        release.set()
        final = audit.close(timeout=30)
        await resolver.close()
    assert final.written == during.queued
    assert final.written + final.dropped == LEADS


async def test_a_failing_sink_fails_no_resolve() -> None:
    def failing(record: dict[str, Any]) -> None:
        raise OSError("the audit store is down")

    audit = AuditLog(failing, key=KEY, max_queue=LEADS)
    resolver = make_resolver(Script(answer=answer), audit=audit)
    try:
        results = await resolver.resolve_many(leads(), concurrency=50)
    finally:
        final = audit.close(timeout=30)
        await resolver.close()
    assert len(results) == LEADS
    assert resolver.stats().resolved + resolver.stats().refused == LEADS
    assert final.sink_errors + final.dropped == LEADS
    assert final.written == 0


async def test_summarize_reproduces_the_resolvers_stats(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, key=KEY, max_queue=LEADS, max_bytes=400_000, backups=100)
    resolver = make_resolver(Script(answer=answer), audit=audit)
    try:
        await resolver.resolve_many(leads(), concurrency=50)
    finally:
        final = audit.close(timeout=60)
        await resolver.close()
    assert final.dropped == 0
    assert final.written == LEADS
    files = sorted(tmp_path.glob("audit.jsonl*"))  # noqa: ASYNC240 (a test, after the run)
    assert len(files) > 1  # rotated: the old files are read too
    summary = summarize_audit(*files)
    assert summary.malformed == 0
    stats = resolver.stats().to_dict()
    assert summary.resolver_counts() == {
        name: stats[name]
        for name in ("resolved", "refused", "stored", "stale", "fallbacks", "refusals")
    }
    # One lead in 20 is of a campaign the resolver does not have.
    assert summary.campaigns == {"cmp": LEADS - LEADS // 20, "other": LEADS // 20}
    # No line holds an external id or a full number.
    text = "".join(file.read_text() for file in files)
    assert VALID_US not in text
    assert '"external_id_hash":null' in text  # the standard-mode leads
    assert all(
        len(json.loads(line)["external_id_hash"] or "0" * 64) == 64 for line in text.splitlines()
    )
