"""`Resolver.warm`: batch reads where the adapter has them, bounded single fetches else."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from conftest import VALID_US, Script, make_resolver

import predial
from predial import (
    AdapterUnavailable,
    Campaign,
    CrmContact,
    CrmPhone,
    Lead,
    RecordNotFound,
    Resolution,
    Resolver,
    hookimpl,
)
from predial._breaker import BreakerSettings

NUMBERS = {f"id-{index}": f"+1202555{index:04d}" for index in range(250)}


class BatchAdapter:
    """Async single and batch reads over NUMBERS; `fail_batches` makes batches raise."""

    name = "batchy"
    batch_size = 100

    def __init__(self, log: list[list[str]], fail_batches: int = 0, answer: Any = None) -> None:
        self.log = log
        self.fail_batches = fail_batches
        self.answer = answer
        self.singles: list[str] = []

    async def fetch_phone(self, external_id: str) -> str:
        self.singles.append(external_id)
        if external_id not in NUMBERS:
            raise RecordNotFound(external_id)
        return NUMBERS[external_id]

    async def fetch_phones(self, external_ids: Sequence[str]) -> Any:
        self.log.append(list(external_ids))
        await asyncio.sleep(0)
        if self.fail_batches:
            self.fail_batches -= 1
            raise AdapterUnavailable("batch endpoint down", retry_after=5)
        if self.answer is not None:
            return self.answer
        answers: dict[str, Any] = {
            i: CrmContact(phones=[CrmPhone(NUMBERS[i], "main", True)])
            for i in external_ids
            if i in NUMBERS
        }
        # "gone-" ids are ones the CRM says it does not have; others it just leaves out.
        answers.update({i: RecordNotFound(i) for i in external_ids if i.startswith("gone-")})
        return answers


class SyncBatchAdapter(BatchAdapter):
    name = "syncbatch"
    batch_size = 40

    def fetch_phones(self, external_ids: Sequence[str]) -> Any:
        assert threading.current_thread() is not threading.main_thread()  # off the loop
        self.log.append(list(external_ids))
        return {i: NUMBERS[i] for i in external_ids if i in NUMBERS}


class Plugin:
    def __init__(self, *classes: type) -> None:
        self.classes = classes

    @hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        for cls in self.classes:
            register(cls)


def resolver(adapter: str, **settings: Any) -> Resolver:
    return Resolver(
        [Campaign("c", adapter, settings, default_region="US")],
        plugins=[Plugin(BatchAdapter, SyncBatchAdapter)],
        load_entrypoints=False,
        breaker=settings.pop("breaker", None),
    )


def leads(count: int, *extra: str) -> list[Lead]:
    return [Lead(campaign_id="c", external_id=f"id-{i}") for i in range(count)] + [
        Lead(campaign_id="c", external_id=e) for e in extra
    ]


async def test_batches_by_the_adapters_size_and_caches_everything() -> None:
    log: list[list[str]] = []
    async with resolver("batchy", log=log) as r:
        report = await r.warm(leads(250, "missing-1", "missing-2"))
        assert [len(batch) for batch in log] == [100, 100, 52]
        assert (report.requested, report.warmed, report.refused, report.failed, report.batches) == (
            252,
            250,
            2,
            0,
            3,
        )
        adapter = r.campaigns["c"].adapter
        results = await r.resolve_many(leads(250))
        assert all(isinstance(r, Resolution) and r.source == "cache" for r in results)
        with pytest.raises(predial.Unresolvable) as refused:
            await r.resolve(Lead(campaign_id="c", external_id="missing-1"))
        assert refused.value.reason == "not_found"
        # Ids a batch leaves out are asked alone (absence is not proof), then cached.
        assert adapter.singles == ["missing-1", "missing-2"]


async def test_a_not_found_value_is_cached_without_a_single_fetch() -> None:
    async with resolver("batchy", log=[]) as r:
        report = await r.warm(leads(2, "gone-1"))
        assert (report.warmed, report.refused) == (2, 1)
        assert r.campaigns["c"].adapter.singles == []
        with pytest.raises(predial.Unresolvable) as refused:
            await r.resolve(Lead(campaign_id="c", external_id="gone-1"))
        assert refused.value.reason == "not_found"


async def test_a_batch_that_crashes_loses_only_its_own_leads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Crashing(BatchAdapter):
        name = "crashing"

        async def fetch_phones(self, external_ids: Sequence[str]) -> Any:
            raise KeyError("phones")  # an adapter bug, not an AdapterError

    r = Resolver(
        [
            Campaign("bad", "crashing", {"log": []}),
            Campaign("c", "batchy", {"log": []}, default_region="US"),
        ],
        plugins=[Plugin(Crashing, BatchAdapter)],
        load_entrypoints=False,
    )
    async with r:
        batch = [Lead(campaign_id="bad", external_id=f"id-{i}") for i in range(5)] + leads(5)
        report = await r.warm(batch)
        assert (report.failed, report.warmed) == (5, 5)
    assert "KeyError (a bug in the adapter's fetch_phones?)" in caplog.text


async def test_sync_batch_runs_off_the_event_loop() -> None:
    log: list[list[str]] = []
    async with resolver("syncbatch", log=log) as r:
        report = await r.warm(leads(100))
        assert [len(batch) for batch in log] == [40, 40, 20]
        assert report.warmed == 100


async def test_duplicates_fresh_and_standard_leads_are_not_fetched() -> None:
    log: list[list[str]] = []
    async with resolver("batchy", log=log) as r:
        await r.resolve(Lead(campaign_id="c", external_id="id-1"))
        batch = [
            *leads(3),
            *leads(3),
            Lead(campaign_id="c", phone_number=VALID_US),
            Lead(campaign_id="elsewhere", external_id="id-2"),
        ]
        report = await r.warm(batch)
        assert (report.requested, report.fresh, report.skipped, report.warmed) == (3, 1, 2, 2)
        assert log == [["id-0", "id-2"]]


async def test_a_failed_batch_loses_only_its_own_leads() -> None:
    log: list[list[str]] = []
    async with resolver("batchy", log=log, fail_batches=1) as r:
        report = await r.warm(leads(250), concurrency=1)
        assert (report.warmed, report.failed, report.batches) == (150, 100, 3)
        # The failed ones are fetched just in time later, as if never warmed.
        assert not r.is_fresh("c", "id-0")
        assert (await r.resolve(Lead(campaign_id="c", external_id="id-0"))).source == "crm"


async def test_a_batch_answer_that_is_not_a_mapping_fails_that_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with resolver("batchy", log=[], answer=["+12024561111"]) as r:
        report = await r.warm(leads(5))
        assert (report.failed, report.warmed) == (5, 0)
    assert "fetch_phones must return a mapping" in caplog.text


async def test_batches_respect_the_open_circuit() -> None:
    log: list[list[str]] = []
    breaker = BreakerSettings(failure_threshold=1, open_for=60)
    async with resolver("batchy", log=log, fail_batches=5, breaker=breaker) as r:
        report = await r.warm(leads(300), concurrency=1)
        assert len(log) == 1  # the first failure opened the circuit; no more calls
        assert (report.failed, report.batches) == (300, 1)


async def test_a_slow_batch_is_cut_at_batch_timeout() -> None:
    class Slow(BatchAdapter):
        name = "slow"

        async def fetch_phones(self, external_ids: Sequence[str]) -> Any:
            await asyncio.sleep(30)

    r = Resolver(
        [Campaign("c", "slow", {"log": []})], plugins=[Plugin(Slow)], load_entrypoints=False
    )
    async with r:
        report = await r.warm(leads(10), batch_timeout=0.05)
        assert report.failed == 10


async def test_without_a_batch_read_single_fetches_are_bounded() -> None:
    script = Script(
        answer=lambda external_id: VALID_US if external_id != "id-3" else None, delay=0.01
    )
    progress: list[tuple[int, int]] = []
    async with make_resolver(script, campaign_id="c") as r:
        report = await r.warm(leads(30), concurrency=4, on_progress=lambda *p: progress.append(p))
        assert script.max_in_flight == 4
        assert (report.warmed, report.refused, report.batches) == (29, 1, 0)
        assert progress[-1] == (30, 30)
        assert len(script.calls) == 30
        await r.resolve_many(leads(30))
        assert len(script.calls) == 30  # all from the cache


async def test_single_fetch_failures_are_counted_as_failed() -> None:
    script = Script(answer=AdapterUnavailable("down"))
    async with make_resolver(script, campaign_id="c") as r:
        report = await r.warm(leads(5))
        assert report.failed == 5


def test_concurrency_must_be_positive() -> None:
    async def run() -> None:
        async with make_resolver(campaign_id="c") as r:
            await r.warm(leads(1), concurrency=0)

    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(run())


@pytest.mark.parametrize("raised", [GeneratorExit(), asyncio.CancelledError()])
async def test_a_batch_raising_a_base_exception_loses_only_its_own_leads(
    raised: BaseException,
) -> None:
    """GeneratorExit or a stray CancelledError from fetch_phones fails that batch only."""

    class Odd(BatchAdapter):
        name = "odd"

        async def fetch_phones(self, external_ids: Sequence[str]) -> Any:
            raise raised

    r = Resolver(
        [Campaign("c", "odd", {"log": []}, default_region="US")],
        plugins=[Plugin(Odd)],
        load_entrypoints=False,
    )
    async with r:
        report = await asyncio.wait_for(r.warm(leads(5)), 5)
    assert (report.failed, report.warmed) == (5, 0)


async def test_a_failed_batch_is_logged_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """A batch error quoting a token and a number is logged without either."""
    secret = "sk_live_" + "0123456789abcdef" * 3

    class Leaky(BatchAdapter):
        name = "leaky"

        async def fetch_phones(self, external_ids: Sequence[str]) -> Any:
            raise AdapterUnavailable(f"token={secret} refused for +12024561111")

    r = Resolver(
        [Campaign("c", "leaky", {"log": []}, default_region="US")],
        plugins=[Plugin(Leaky)],
        load_entrypoints=False,
    )
    async with r:
        await r.warm(leads(3))
    assert "could not be warmed" in caplog.text
    assert secret not in caplog.text
    assert "2024561111" not in caplog.text


async def test_a_batch_answer_that_cannot_be_read_loses_only_its_leads() -> None:
    """A mapping whose look-ups raise fails its batch; warm() itself does not raise."""

    class Broken(dict[str, Any]):
        def __contains__(self, key: object) -> bool:
            raise RuntimeError("no look-ups")

    class OddMap(BatchAdapter):
        name = "oddmap"

        async def fetch_phones(self, external_ids: Sequence[str]) -> Any:
            return Broken()

    r = Resolver(
        [Campaign("c", "oddmap", {"log": []}, default_region="US")],
        plugins=[Plugin(OddMap)],
        load_entrypoints=False,
    )
    async with r:
        report = await r.warm(leads(4))
    assert (report.failed, report.warmed) == (4, 0)
