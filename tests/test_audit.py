"""The audit record (issue 15, part 5): one JSON line per decision, off the dial's
path. The record's every field, the HMAC of the external id, masked numbers only;
the sinks (a rotated file, stdout, a callable); and that a slow or failing sink
never holds up or fails `decision()`: its records are dropped or counted instead."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from predial.compliance import AuditLog, AuditStats, ZoneSource, evaluate
from predial.errors import ConfigurationError

KEY = b"k3y-for-the-audit-tests-0123456789"
NUMBER = "+12025550123"
EXTERNAL_ID = "crm-0042-zebra"
NOW = datetime(2026, 5, 1, 14, 3, 7, 123456, tzinfo=UTC)
FIELDS = {
    "id",
    "time",
    "campaign",
    "external_id_hash",
    "number",
    "source",
    "status",
    "reason",
    "rules",
    "zones",
    "next_allowed_at",
    "dnc_list",
    "latency_ms",
    "origin",
}


def decide(audit: AuditLog, **overrides: Any) -> None:
    values: dict[str, Any] = {
        "campaign": "spring",
        "external_id": EXTERNAL_ID,
        "number": NUMBER,
        "source": "crm",
        "status": "ok",
        "reason": "",
        "latency": 0.0125,
    }
    values.update(overrides)
    audit.decision(**values)


class Collect:
    """A callable sink that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)


class Blocked:
    """A sink that holds the writer until `release` is set; `entered` says it has a
    record in hand."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.records: list[dict[str, Any]] = []

    def __call__(self, record: dict[str, Any]) -> None:
        self.entered.set()
        assert self.release.wait(30), "the test never released the sink"
        self.records.append(record)


@pytest.fixture
def audit_warnings() -> Iterator[list[logging.LogRecord]]:
    """The audit module's log records, caught on its own logger (whatever the CLI
    tests did to the propagation of `predial`'s)."""
    caught: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record)

    logger = logging.getLogger("predial.compliance._audit")
    handler = Catch(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield caught
    finally:
        logger.removeHandler(handler)


# -- the record ----------------------------------------------------------------------


def test_a_record_has_every_field_and_nothing_raw(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    verdict = evaluate(NUMBER, datetime(2026, 5, 1, 3, 0, tzinfo=UTC))  # 11 p.m. in DC
    assert not verdict.allowed
    with AuditLog(str(path), key=KEY, clock=lambda: NOW) as audit:
        decide(
            audit,
            status="retry_later",
            reason="outside_calling_window",
            verdict=verdict,
            origin="service",
        )
    line = path.read_text().strip()
    record = json.loads(line)
    assert set(record) == FIELDS
    assert uuid.UUID(record["id"]).version == 7
    assert record["time"] == "2026-05-01T14:03:07.123Z"
    assert record["campaign"] == "spring"
    assert (
        record["external_id_hash"]
        == hmac.new(KEY, EXTERNAL_ID.encode(), hashlib.sha256).hexdigest()
    )
    assert record["number"] == "+1202***0123"
    assert record["source"] == "crm"
    assert record["status"] == "retry_later"
    assert record["reason"] == "outside_calling_window"
    assert record["rules"] == list(verdict.rules)
    assert record["rules"]
    assert all(rule.startswith("us@") for rule in record["rules"])
    assert record["zones"] == [
        {"zone": zone.zone, "source": zone.source, "state": zone.state} for zone in verdict.zones
    ]
    assert verdict.next_allowed_at is not None
    assert datetime.fromisoformat(record["next_allowed_at"]) == verdict.next_allowed_at
    assert record["dnc_list"] is None
    assert record["latency_ms"] == 12.5
    assert record["origin"] == "service"
    # Neither the CRM id nor the number, in any form, is in the line.
    assert EXTERNAL_ID not in line
    assert "5550123" not in line
    assert "2025550" not in line


def test_a_verdict_as_plain_data_and_a_dnc_list() -> None:
    sink = Collect()
    with AuditLog(sink, key=KEY) as audit:
        decide(
            audit,
            status="skip",
            reason="do_not_call_list",
            dnc_list="internal",
            verdict={
                "rules": ["us@2026.12.0:us.federal.hours", "dnc:internal"],
                "zones": [
                    {"zone": "America/Chicago", "source": "area-code", "state": "TX"},
                    ZoneSource("America/Denver", "area-code", "TX"),
                ],
            },
        )
    (record,) = sink.records
    assert record["rules"] == ["us@2026.12.0:us.federal.hours", "dnc:internal"]
    assert record["zones"] == [
        {"zone": "America/Chicago", "source": "area-code", "state": "TX"},
        {"zone": "America/Denver", "source": "area-code", "state": "TX"},
    ]
    assert record["dnc_list"] == "internal"
    assert record["next_allowed_at"] is None
    assert record["origin"] == "library"


def test_a_lead_without_external_id_or_number() -> None:
    sink = Collect()
    with AuditLog(sink, key=KEY) as audit:
        decide(
            audit, external_id=None, number=None, source="", status="skip", reason="invalid_lead"
        )
    (record,) = sink.records
    assert record["external_id_hash"] is None
    assert record["number"] is None
    assert record["rules"] == []
    assert record["zones"] == []


def test_hashes_join_under_one_key_and_not_across_keys() -> None:
    first, second, other = Collect(), Collect(), Collect()
    for sink, key in ((first, KEY), (second, KEY.decode()), (other, b"another-key-of-16+bytes")):
        with AuditLog(sink, key=key) as audit:
            decide(audit)
        assert audit.hash_external_id(EXTERNAL_ID) == sink.records[0]["external_id_hash"]
    assert first.records[0]["external_id_hash"] == second.records[0]["external_id_hash"]
    assert first.records[0]["external_id_hash"] != other.records[0]["external_id_hash"]


def test_ids_are_unique_and_sort_in_the_order_written() -> None:
    sink = Collect()
    # One clock reading for all: the counter within the millisecond orders them.
    with AuditLog(sink, key=KEY, clock=lambda: NOW) as audit:
        for _ in range(3000):
            decide(audit)
    ids = [record["id"] for record in sink.records]
    assert len(ids) == 3000
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    later = Collect()
    with AuditLog(later, key=KEY, clock=lambda: NOW + timedelta(seconds=1)) as audit:
        decide(audit)
    assert later.records[0]["id"] > ids[-1]


# -- the key and the settings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (None, "audit key is empty"),
        ("", "audit key is empty"),
        (b"   ", "audit key is empty"),
        ("short-secret", "audit key is 12 bytes, too short"),
        (12345678901234567890, "audit key: got int, not text or bytes"),
    ],
)
def test_a_missing_or_weak_key_says_how_to_set_one(key: Any, expected: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        AuditLog(Collect(), key=key)
    message = str(raised.value)
    assert message.startswith(expected)
    assert "audit_key" in message
    assert "secrets.token_hex" in message
    assert "\n" not in message
    if isinstance(key, str) and key:
        assert key not in message


def test_the_key_is_not_in_repr_or_stats() -> None:
    secret = "do-not-show-this-key-anywhere"
    with AuditLog(Collect(), key=secret) as audit:
        decide(audit)
        shown = repr(audit) + repr(audit.stats()) + repr(vars(audit))
    assert secret not in shown
    assert "written=" in repr(audit)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"max_queue": 0}, "audit max_queue is 0"),
        ({"max_bytes": -1}, "audit max_bytes is -1"),
        ({"backups": 0}, "audit backups is 0"),
        ({"error_log_interval": float("nan")}, "audit error_log_interval is nan"),
    ],
)
def test_wrong_settings_are_one_line(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{re.escape(expected)};"):
        AuditLog(Collect(), key=KEY, **options)


def test_a_sink_that_is_no_sink(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^audit sink: got int, not a sink; give"):
        AuditLog(42, key=KEY)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"is a directory; give a file path"):
        AuditLog(str(tmp_path), key=KEY)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigurationError, match=r"cannot open it for appending \("):
        AuditLog(str(tmp_path / "a-file" / "audit.jsonl"), key=KEY)
    # A missing folder is made (a new deployment's audit/).
    AuditLog(str(tmp_path / "missing" / "audit.jsonl"), key=KEY).close()
    assert (tmp_path / "missing" / "audit.jsonl").exists()


# -- the sinks ----------------------------------------------------------------------------


def test_a_file_is_rotated_by_size_keeping_n_old_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, key=KEY, max_bytes=2000, backups=2) as audit:
        for index in range(40):
            decide(audit, campaign=f"c{index}")
    assert audit.stats() == AuditStats(written=40, dropped=0, sink_errors=0, queued=0)
    files = sorted(tmp_path.iterdir())
    assert [file.name for file in files] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    campaigns = []
    for file in files:
        assert file.stat().st_size <= 2000
        campaigns += [json.loads(line)["campaign"] for line in file.read_text().splitlines()]
    # The newest records are kept; the oldest went with the file rotated out.
    assert 0 < len(campaigns) < 40
    assert set(campaigns) <= {f"c{index}" for index in range(40)}
    assert "c39" in campaigns
    assert "c0" not in campaigns


def test_a_file_is_appended_to_across_logs(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for _ in range(2):
        with AuditLog(path, key=KEY) as audit:
            decide(audit)
    assert len(path.read_text().splitlines()) == 2


def test_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with AuditLog("-", key=KEY) as audit:
        decide(audit)
        decide(audit, status="skip", reason="do_not_call")
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["ok", "skip"]


def test_a_callable_gets_a_json_ready_dict_of_its_own() -> None:
    sink = Collect()
    with AuditLog(sink, key=KEY) as audit:
        decide(audit)
        decide(audit)
    first, second = sink.records
    assert first is not second
    assert json.loads(json.dumps(first)) == first


# -- never blocking, never failing -------------------------------------------------------


def test_a_blocked_sink_fills_the_queue_then_drops_are_counted() -> None:
    sink = Blocked()
    audit = AuditLog(sink, key=KEY, max_queue=3)
    try:
        decide(audit, campaign="first")
        assert sink.entered.wait(10)
        # The writer holds "first"; these return while it is blocked.
        for index in range(10):
            decide(audit, campaign=f"next{index}")
        assert audit.stats() == AuditStats(written=0, dropped=7, sink_errors=0, queued=4)
    finally:
        sink.release.set()
        stats = audit.close()
    assert stats == AuditStats(written=4, dropped=7, sink_errors=0, queued=0)
    assert [record["campaign"] for record in sink.records] == ["first", "next0", "next1", "next2"]


def test_close_gives_up_on_a_hung_sink_and_counts_what_it_drops(
    audit_warnings: list[logging.LogRecord],
) -> None:
    sink = Blocked()
    audit = AuditLog(sink, key=KEY, max_queue=5)
    decide(audit)
    assert sink.entered.wait(10)
    for _ in range(5):
        decide(audit)
    stats = audit.close(timeout=0.05)
    assert stats == AuditStats(written=0, dropped=5, sink_errors=0, queued=1)
    decide(audit)  # after close: dropped, counted, no error
    assert audit.stats().dropped == 6
    sink.release.set()
    audit._thread.join(10)
    assert audit.stats() == AuditStats(written=1, dropped=6, sink_errors=0, queued=0)
    assert any("audit closed" in record.getMessage() for record in audit_warnings)


def test_a_failing_sink_is_counted_and_logged_once_per_interval(
    audit_warnings: list[logging.LogRecord],
) -> None:
    def fail(record: dict[str, Any]) -> None:
        raise OSError(f"disk full while writing for {NUMBER}")

    with AuditLog(fail, key=KEY, error_log_interval=3600) as audit:
        for _ in range(50):
            decide(audit)  # never raises
    assert audit.stats() == AuditStats(written=0, dropped=0, sink_errors=50, queued=0)
    failures = [r.getMessage() for r in audit_warnings if "failed" in r.getMessage()]
    assert len(failures) == 1
    assert "OSError" in failures[0]
    assert "+1202***0123" in failures[0]
    assert NUMBER not in "".join(r.getMessage() for r in audit_warnings)


def test_every_failure_is_logged_with_no_interval(audit_warnings: list[logging.LogRecord]) -> None:
    def fail(record: dict[str, Any]) -> None:
        raise RuntimeError("no")

    with AuditLog(fail, key=KEY, error_log_interval=0) as audit:
        for _ in range(3):
            decide(audit)
    assert len([r for r in audit_warnings if "failed" in r.getMessage()]) == 3


def test_a_record_that_cannot_be_built_is_counted_not_raised() -> None:
    sink = Collect()
    with AuditLog(sink, key=KEY) as audit:
        decide(audit, latency="not a number")
        decide(audit)
    assert audit.stats() == AuditStats(written=1, dropped=0, sink_errors=1, queued=0)


def test_a_clock_that_raises_drops_the_record_not_the_dial() -> None:
    def broken() -> datetime:
        raise RuntimeError("clock")

    with AuditLog(Collect(), key=KEY, clock=broken) as audit:
        decide(audit)
    assert audit.stats().dropped == 1


def test_from_threads_and_async_code_every_decision_is_accounted_for() -> None:
    sink = Collect()
    audit = AuditLog(sink, key=KEY, max_queue=50)

    def many() -> None:
        for _ in range(500):
            decide(audit)

    async def concurrently() -> None:
        async def one() -> None:
            decide(audit, origin="service")

        await asyncio.gather(*(one() for _ in range(500)))

    threads = [threading.Thread(target=many) for _ in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(concurrently())
    for thread in threads:
        thread.join()
    stats = audit.close()
    assert stats.written + stats.dropped == 2500
    assert stats.written == len(sink.records)
    assert stats.sink_errors == 0
    assert stats.queued == 0
