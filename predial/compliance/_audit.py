"""The audit record: one JSON line per decision, written off the dial's path.

`AuditLog.decision` is called by the resolver for every `ok`, `skip` and
`retry_later`. It only puts the decision's values on a bounded queue and returns: the
record (its id, hash, masked number, JSON) is built by a writer thread, which hands
it to the sink. A full queue drops the record and counts it; a sink that raises is
counted and logged at most once per `error_log_interval`; a slow sink only fills the
queue. Nothing here ever raises into a dial, and nothing needs an event loop, so the
same log serves async code, threads, the library and the service.

The external id is never written: its HMAC-SHA256 under a key of the operator's is,
so records join with each other and with a CRM export hashed with the same key, and
a leaked audit file is not a dump of CRM ids. The key is held only inside an `hmac`
object: it is not in `repr`, logs or stats.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import logging.handlers
import os
import queue
import secrets
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .._faults import safe_text, type_name
from .._phone import mask_phone
from .._redaction import redact
from ..errors import ConfigurationError

__all__ = ["MIN_KEY_BYTES", "AuditLog", "AuditSink", "AuditStats"]

log = logging.getLogger(__name__)

#: A shorter key is refused: HMAC-SHA256's strength is the key's.
MIN_KEY_BYTES: Final = 16

#: Where records go: a file path (rotated by size), "-" for standard output, or a
#: callable that receives each record as a dict (a new one each time, JSON-ready).
AuditSink = str | os.PathLike[str] | Callable[[dict[str, Any]], object]

_KEY_HINT = (
    "give a secret of at least 16 bytes (in predial.toml: [resolver.compliance] "
    'audit_key = "${PREDIAL_AUDIT_KEY}"), e.g. one made by '
    "`python -c 'import secrets; print(secrets.token_hex(32))'`"
)
# What the writer thread is told to stop by (never a decision).
_STOP: Final = object()


@dataclass(frozen=True, slots=True)
class AuditStats:
    """What an `AuditLog` did with the decisions it was given. Every decision is in
    exactly one of the four counts."""

    #: Records the sink took.
    written: int
    #: Records lost before the sink: the queue was full, or the log was closed.
    dropped: int
    #: Records the sink raised on, or that could not be built (each one lost).
    sink_errors: int
    #: Records waiting for the sink (on the queue, or being written).
    queued: int

    def to_dict(self) -> dict[str, int]:
        return {
            "written": self.written,
            "dropped": self.dropped,
            "sink_errors": self.sink_errors,
            "queued": self.queued,
        }


class _Sink:
    """Takes one record; may raise (the writer counts it). Called from the writer
    thread only."""

    name: str

    def write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sink holds; called once, by `AuditLog.close`."""


def _line(record: dict[str, Any]) -> str:
    # ASCII only: no character of a campaign id can split the line for a reader that
    # splits on Unicode line separators too.
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


class _FileSink(_Sink):
    """A file rotated by size by the standard library's `RotatingFileHandler`:
    `audit.jsonl`, then `audit.jsonl.1` (the newest old one) ... `.N`."""

    class _Handler(logging.handlers.RotatingFileHandler):
        def handleError(self, record: logging.LogRecord) -> None:
            # Called inside the handler's own `except`: the failure goes back to the
            # writer, which counts it, instead of a traceback on stderr.
            raise

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.name = path
        if os.path.isdir(path):
            raise ConfigurationError(
                f"audit sink {path}: is a directory; give a file path (it is rotated "
                "beside itself), '-' for standard output, or a callable"
            )
        try:
            # A new deployment's audit folder is made, as `predial dnc` makes its own.
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._handler = self._Handler(
                path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
        except OSError as error:
            raise ConfigurationError(
                f"audit sink {path}: cannot open it for appending "
                f"({error.strerror or type_name(error)}); give a writable file path, "
                "'-' for standard output, or a callable"
            ) from None
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, record: dict[str, Any]) -> None:
        # A record of its own, not through a logger: the audit line is never
        # filtered, formatted or propagated as a log line would be.
        self._handler.emit(logging.makeLogRecord({"msg": _line(record)}))

    def close(self) -> None:
        self._handler.close()


class _StdoutSink(_Sink):
    name = "-"

    def write(self, record: dict[str, Any]) -> None:
        # sys.stdout read at each write: a test's or an application's redirection holds.
        stream = sys.stdout
        stream.write(_line(record) + "\n")
        stream.flush()


class _CallableSink(_Sink):
    def __init__(self, function: Callable[[dict[str, Any]], object]) -> None:
        self._function = function
        self.name = safe_text(getattr(function, "__qualname__", None) or type_name(function))

    def write(self, record: dict[str, Any]) -> None:
        self._function(record)


def _sink(spec: object, max_bytes: int, backups: int) -> _Sink:
    if isinstance(spec, str) and spec == "-":
        return _StdoutSink()
    if isinstance(spec, str | os.PathLike):
        path = os.fsdecode(spec)
        if not path:
            raise ConfigurationError(
                "audit sink: the path is empty; give a file path, '-' for standard "
                "output, or a callable"
            )
        return _FileSink(path, max_bytes, backups)
    if callable(spec):
        return _CallableSink(spec)
    raise ConfigurationError(
        f"audit sink: got {type_name(spec)}, not a sink; give a file path, '-' for "
        "standard output, or a callable that takes each record (a dict)"
    )


def _key_bytes(key: object) -> bytes:
    if isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
    elif isinstance(key, bytes | bytearray | memoryview):
        data = bytes(key)
    elif key is None:
        data = b""
    else:
        raise ConfigurationError(f"audit key: got {type_name(key)}, not text or bytes; {_KEY_HINT}")
    if not data.strip():
        raise ConfigurationError(f"audit key is empty; {_KEY_HINT}")
    if len(data) < MIN_KEY_BYTES:
        # The length only: the key itself is never shown.
        raise ConfigurationError(f"audit key is {len(data)} bytes, too short; {_KEY_HINT}")
    return data


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    """`2026-05-01T14:03:07.123Z`; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _text(value: object) -> str:
    return "" if value is None else safe_text(value)


def _field(source: object, name: str) -> object:
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def _items(value: object) -> tuple[object, ...]:
    """A verdict's `rules` or `zones` as a tuple; nothing for None (or a lone text,
    which is not a list of rules)."""
    if value is None or isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return ()
    return tuple(value)


def _zone(zone: object) -> dict[str, str | None]:
    state = _field(zone, "state")
    return {
        "zone": _text(_field(zone, "zone")),
        "source": _text(_field(zone, "source")),
        "state": None if state is None else safe_text(state),
    }


class _Throttle:
    """Says whether to log now: at most once per `interval` seconds, and how many
    occurrences went unlogged since."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None
        self.unlogged = 0

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            self.unlogged += 1
            return False
        self._last = now
        return True


# The decision as `decision()` captured it, built into a record by the writer:
# (time, campaign, external_id, number, source, status, reason, latency, verdict,
# origin, dnc_list, decision_id).
_Captured = tuple[
    datetime, object, object, object, object, object, object, float, object, object, object,
    object,
]  # fmt: skip


class AuditLog:
    """Writes one JSON line per decision to `sink` (see `AuditSink`), off the
    caller's thread, through a queue of at most `max_queue` records.

    A file sink is rotated when it would pass `max_bytes` (0: never), keeping
    `backups` old files. `key` (bytes, or text taken as UTF-8, at least 16
    bytes) keys the HMAC of external ids. `clock` gives the decision's time (aware
    UTC; the default is the system's). Close it (`close()`, or use it as a context
    manager); at interpreter exit it is closed with a short timeout if it was not.
    """

    def __init__(
        self,
        sink: AuditSink,
        *,
        key: bytes | str,
        max_queue: int = 10_000,
        max_bytes: int = 100 * 1024 * 1024,
        backups: int = 10,
        error_log_interval: float = 60.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._hmac = hmac.new(_key_bytes(key), digestmod=hashlib.sha256)
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ConfigurationError(
                f"audit max_queue is {safe_text(max_queue)}; give a whole number ≥ 1 "
                "(records held while the sink is busy; 10000 by default)"
            )
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ConfigurationError(
                f"audit max_bytes is {safe_text(max_bytes)}; give a size in bytes (0: never rotate)"
            )
        if isinstance(backups, bool) or not isinstance(backups, int):
            raise ConfigurationError(
                f"audit backups is {safe_text(backups)}; give a whole number ≥ 1"
            )
        if max_bytes > 0 and backups < 1:
            # RotatingFileHandler with no backups never rotates: the file would grow
            # past max_bytes, which is not what was asked for.
            raise ConfigurationError(
                f"audit backups is {backups}; give a whole number ≥ 1 "
                "(old files kept), or max_bytes = 0 to never rotate"
            )
        if not error_log_interval >= 0:  # NaN compares false
            raise ConfigurationError(
                f"audit error_log_interval is {safe_text(error_log_interval)}; give seconds ≥ 0"
            )
        self._sink = _sink(sink, max_bytes, backups)
        self._clock = clock or _utc_now
        self._queue: queue.Queue[object] = queue.Queue(max_queue)
        self._written = 0
        self._sink_errors = 0
        self._dropped = 0
        self._busy = False
        self._closed = False
        self._abandon = False
        self._lock = threading.Lock()
        self._error_throttle = _Throttle(error_log_interval)
        self._drop_throttle = _Throttle(error_log_interval)
        self._drops_logged = 0
        self._last_ms = 0
        self._sequence = 0
        self._thread = threading.Thread(
            target=self._run, name=f"predial-audit({self._sink.name})", daemon=True
        )
        self._thread.start()
        # Daemon threads are stopped without a word at exit: flush first. The
        # registration holds the log weakly, so it does not keep it alive.
        self._at_exit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._at_exit)

    def __repr__(self) -> str:
        stats = self.stats()
        return (
            f"AuditLog(sink={self._sink.name!r}, written={stats.written}, "
            f"dropped={stats.dropped}, sink_errors={stats.sink_errors}, "
            f"queued={stats.queued}, closed={self._closed})"
        )

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the caller's side: never blocks, never raises -----------------------------

    def decision(
        self,
        *,
        campaign: str,
        external_id: str | None,
        number: str | None,
        source: str,
        status: str,
        reason: str,
        latency: float,
        verdict: object | None = None,
        origin: str = "library",
        dnc_list: str | None = None,
        decision_id: str | None = None,
    ) -> None:
        """Record one decision: `status` "ok", "skip" or "retry_later"; `latency` in
        seconds (as `Resolution.elapsed`); `verdict` a `predial.compliance.Verdict`,
        or a mapping with `rules` (ids as "us@2026.12.0:us.fl.hours") and `zones`
        (mappings or objects with `zone`, `source`, `state`), or None; `dnc_list`
        the list that refused the number, if one did; `decision_id` the id the caller
        already gave the decision (the service's `decisionId`), else the log makes one.
        Returns at once; never raises."""
        try:
            captured: _Captured = (
                self._clock(),
                campaign,
                external_id,
                number,
                source,
                status,
                reason,
                latency,
                verdict,
                origin,
                dnc_list,
                decision_id,
            )
            # Under the lock with `close`: no decision lands after the queue's last
            # drain, unwritten and uncounted.
            with self._lock:
                if self._closed:
                    self._dropped += 1
                    return
                self._queue.put_nowait(captured)
        except queue.Full:
            self._drop()
        except Exception as error:  # a clock that raises: the dial goes on, counted
            self._drop()
            log.debug("audit: a decision could not be taken (%s)", type_name(error))

    def _drop(self) -> None:
        with self._lock:
            self._dropped += 1

    # -- the writer's side ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self._busy = True
            try:
                self._write(item)  # type: ignore[arg-type]
            finally:
                self._busy = False
            self._report_drops()
            if self._abandon:
                return

    def _write(self, captured: _Captured) -> None:
        try:
            record = self._record(captured)
            self._sink.write(record)
        except Exception as error:
            self._sink_errors += 1
            if self._error_throttle.due():
                unlogged, self._error_throttle.unlogged = self._error_throttle.unlogged, 0
                log.warning(
                    "audit sink %s failed (%s: %s); %d record(s) lost so far%s",
                    self._sink.name,
                    type_name(error),
                    redact(error, limit=200),
                    self._sink_errors,
                    f", {unlogged} failure(s) not logged since the last line" if unlogged else "",
                )
        else:
            self._written += 1

    def _report_drops(self) -> None:
        dropped = self._dropped
        if dropped > self._drops_logged and self._drop_throttle.due():
            self._drops_logged = dropped
            log.warning(
                "audit: %d record(s) dropped so far: the queue (%d) was full, the sink "
                "%s is slower than the decisions",
                dropped,
                self._queue.maxsize,
                self._sink.name,
            )

    def _record(self, captured: _Captured) -> dict[str, Any]:
        """The JSON-ready record of a captured decision (the writer's work)."""
        (moment, campaign, external_id, number, source, status, reason, latency, verdict,
         origin, dnc_list, decision_id) = captured  # fmt: skip
        rules: list[str] = []
        zones: list[dict[str, str | None]] = []
        next_allowed_at: str | None = None
        if verdict is not None:
            rules = [safe_text(rule) for rule in _items(_field(verdict, "rules"))]
            zones = [_zone(zone) for zone in _items(_field(verdict, "zones"))]
            at = _field(verdict, "next_allowed_at")
            if isinstance(at, datetime):
                next_allowed_at = _iso(at)
        return {
            "id": _text(decision_id) if decision_id is not None else self._next_id(moment),
            "time": _iso(moment),
            "campaign": _text(campaign),
            "external_id_hash": None if external_id is None else self.hash_external_id(external_id),
            "number": None if number is None else mask_phone(number),
            "source": _text(source),
            "status": _text(status),
            "reason": _text(reason),
            "rules": rules,
            "zones": zones,
            "next_allowed_at": next_allowed_at,
            "dnc_list": None if dnc_list is None else safe_text(dnc_list),
            "latency_ms": round(float(latency) * 1000, 3),
            "origin": _text(origin),
        }

    def _next_id(self, moment: datetime) -> str:
        """A UUIDv7 (RFC 9562): the millisecond, then a counter within it, then
        random bits, so ids sort by time across processes and strictly in the order
        this log wrote them."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = max(0, int(moment.timestamp() * 1000)) & ((1 << 48) - 1)
        if ms > self._last_ms:
            self._last_ms = ms
            self._sequence = secrets.randbits(10)  # room to count up within the ms
        else:
            self._sequence += 1
            if self._sequence > 0xFFF:
                self._last_ms += 1
                self._sequence = 0
        value = (
            (self._last_ms << 80)
            | (0x7 << 76)
            | (self._sequence << 64)
            | (0b10 << 62)
            | secrets.randbits(62)
        )
        return str(uuid.UUID(int=value))

    def hash_external_id(self, external_id: object) -> str:
        """HMAC-SHA256 of the external id (its text, UTF-8) under the key, in hex:
        what records carry as `external_id_hash`, to join them with a CRM export
        hashed the same way."""
        digest = self._hmac.copy()
        digest.update(safe_text(external_id).encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    # -- state ---------------------------------------------------------------------------

    def stats(self) -> AuditStats:
        """The counts so far (see `AuditStats`)."""
        with self._lock:
            dropped = self._dropped
        return AuditStats(
            written=self._written,
            dropped=dropped,
            sink_errors=self._sink_errors,
            queued=self._queue.qsize() + (1 if self._busy else 0),
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def _drop_queued(self) -> None:
        """Count what is still queued as dropped (the writer will not get to it)."""
        left = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                left += 1
        with self._lock:
            self._dropped += left

    def close(self, timeout: float = 5.0) -> AuditStats:
        """Stop taking decisions (later ones are dropped, counted), write what is
        queued within `timeout` seconds, and drop, counted, what is still queued
        then (a sink that hangs is left to its thread). Logs a warning when records
        were lost; returns the final counts. Calling it again only returns them."""
        with self._lock:
            already, self._closed = self._closed, True
        if already:
            return self.stats()
        atexit.unregister(self._at_exit)
        deadline = time.monotonic() + max(0.0, timeout)
        # A writer stuck on the sink leaves no room for the stop: what is queued is
        # then dropped below.
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abandon = True
            self._drop_queued()
        else:
            try:
                self._sink.close()
            except Exception as error:
                log.warning(
                    "audit sink %s: closing it failed (%s)",
                    self._sink.name,
                    redact(error, limit=200),
                )
        stats = self.stats()
        if stats.dropped or stats.sink_errors:
            log.warning(
                "audit closed: %d record(s) written, %d dropped (queue full, closed or "
                "not written in time), %d lost to sink errors",
                stats.written,
                stats.dropped,
                stats.sink_errors,
            )
        return stats


def _close_at_exit(reference: weakref.ref[AuditLog]) -> None:
    audit = reference()
    if audit is not None:
        audit.close(timeout=2.0)
