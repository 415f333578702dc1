"""`file`: a CRM held in a local CSV, JSON Lines or SQLite file.

For teams whose CRM exports its contacts nightly, and for trying predial without a
CRM account. Settings:

- `path` (required): the export, `.csv`, `.jsonl`, or `.db` / `.sqlite` / `.sqlite3`.
- `id_column`: the column of external ids; default the first of `id`, `external_id`,
  `externalId`, `crm_id`, `CRM ID`, `record_id`, `contact_id` that exists.
- `phone_columns`: `{label = "column"}` or a list of columns (labelled by name:
  `mobile_phone` is `mobile`); default every column named with phone, mobile or cell.
- `primary`: the label of the primary phone; default none.
- `dnc_column`: a do-not-call flag (`1`, `true`, `yes`, `y`, `x` are set); default
  `do_not_call` or `dnc` if present.
- `table`: the SQLite table; default the only one.
- `reload_interval`: seconds between checks that a CSV or JSONL file changed; default 5.
- `settle_time`: seconds a changed CSV or JSONL file must stay unchanged before it
  is read; default 1.

A CSV or JSONL file is read into memory (in a worker thread) on first use and again
whenever it changes on disk; SQLite is queried per lookup, read-only.

An export is only ever swapped in whole. A file that changed less than
`settle_time` ago (by its modification time, or as this process has watched it) is
still being written: the previous snapshot keeps being served meanwhile. A first
load, with nothing to serve, takes a file that ends a line at once and waits for
one that does not (up to three settle times, then the lookup is "unavailable").
A file that changes while it is read is not used either. Settling is judged
against this machine's clock: on a file server with a skewed clock, publish by
rename. A reload
that fails (the file vanished, became unreadable, lost its id or phone columns)
makes lookups "unavailable" (retry later), never "not found". Rows that cannot be
read (bytes invalid in the file's encoding, an oversized field) are skipped with a
warning.

The safe way to publish an export is to write it to a temporary file in the same
folder and rename it over the old one (`mv`, `os.replace`): a rename is atomic, so
a reader sees the old file or the new one, never half of one. Writing in place
(`export > crm.csv` from cron) works, but a writer that pauses longer than
`settle_time` midway can still be read half-written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .._models import CrmContact, CrmPhone
from .._redaction import redact, safe_text
from .._tabular import read_header, read_rows, table_format
from ..errors import AdapterUnavailable, InputFileError, RecordNotFound

__all__ = ["FileAdapter"]

log = logging.getLogger(__name__)

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_ID_COLUMNS = ("id", "external_id", "externalid", "crm_id", "crm id", "record_id", "contact_id")
_DNC_COLUMNS = ("do_not_call", "donotcall", "dnc", "do not call")
_PHONE_HINT = re.compile(r"phone|mobile|cell", re.IGNORECASE)
_TRUE = frozenset({"1", "true", "yes", "y", "x", "t", "dnc"})

Record = tuple[tuple[CrmPhone, ...], bool]


class _Version(NamedTuple):
    """What tells one version of a file from another: a rename changes the inode,
    any write the size or the times (nanoseconds, not the float seconds that two
    writes within one clock tick would share)."""

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


def _label(column: str) -> str:
    """`mobile_phone` -> `mobile`, `Home Phone` -> `home`, `phone` -> `phone`."""
    words = re.sub(r"(phone|number|_|-)", " ", column.lower()).split()
    return words[0] if words else "phone"


def _find(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    lowered = {column.lower(): column for column in columns}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    return None


class FileAdapter:
    """Looks numbers up in a local CRM export."""

    name = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        id_column: str | None = None,
        phone_columns: Mapping[str, str] | Sequence[str] | None = None,
        primary: str | None = None,
        dnc_column: str | None = None,
        table: str | None = None,
        reload_interval: float = 5.0,
        settle_time: float = 1.0,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"path: {str(self.path)!r} does not exist or is not a file")
        self.sqlite = self.path.suffix.lower() in _SQLITE_SUFFIXES
        self.table = table
        self._local = threading.local()  # one SQLite connection per worker thread
        columns = self._sqlite_columns() if self.sqlite else read_header(self.path)
        if not columns:
            raise ValueError(f"path: {str(self.path)!r} has no header line naming its columns")

        found_id = id_column or _find(columns, _ID_COLUMNS)
        if found_id is None or found_id not in columns:
            raise ValueError(
                f"id_column: {id_column or 'an id column'!r} is not among the columns of "
                f"{self.path.name} ({', '.join(columns)}); set id_column"
            )
        self.id_column: str = found_id
        if phone_columns is None:
            found = [c for c in columns if _PHONE_HINT.search(c) and c != dnc_column]
            self.phone_columns = {_label(column): column for column in found}
        elif isinstance(phone_columns, Mapping):
            self.phone_columns = dict(phone_columns)
        else:
            self.phone_columns = {_label(column): column for column in phone_columns}
        missing = [c for c in self.phone_columns.values() if c not in columns]
        if missing or not self.phone_columns:
            raise ValueError(
                f"phone_columns: {', '.join(missing) or 'no phone column found'} not among the "
                f"columns of {self.path.name} ({', '.join(columns)})"
            )
        self.dnc_column = dnc_column or _find(columns, _DNC_COLUMNS)
        if self.dnc_column is not None and self.dnc_column not in columns:
            raise ValueError(
                f"dnc_column: {self.dnc_column!r} is not among the columns of "
                f"{self.path.name} ({', '.join(columns)})"
            )
        self.primary = primary
        self.reload_interval = _seconds("reload_interval", reload_interval)
        self.settle_time = _seconds("settle_time", settle_time)
        self._records: dict[str, Record] | None = None
        self._loaded: _Version | None = None  # the file version the records came from
        self._seen: _Version | None = None  # the newest version seen, since `_seen_at`
        self._seen_at = 0.0
        self._checked_at = 0.0
        self._failed: tuple[str, float] | None = None  # a failed reload, and when
        # A thread lock, not an asyncio one: the adapter may serve several event
        # loops (resolve_sync runs its own), and the reload runs in a thread anyway.
        self._reload_lock = threading.Lock()

    # -- lookups -----------------------------------------------------------------

    async def fetch_phone(self, external_id: str) -> CrmContact:
        if self.sqlite:
            record = await asyncio.to_thread(self._query, external_id)
        else:
            records = await self._current_records()
            record = records.get(external_id)
        if record is None:
            raise RecordNotFound(external_id)
        phones, do_not_call = record
        return CrmContact(phones=phones, do_not_call=do_not_call)

    def _record(self, fields: Mapping[str, Any]) -> Record:
        phones = []
        for label, column in self.phone_columns.items():
            value = fields.get(column)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            phones.append(CrmPhone(str(value), label, label == self.primary))
        flag = fields.get(self.dnc_column) if self.dnc_column else None
        do_not_call = str(flag).strip().lower() in _TRUE if flag is not None else False
        return tuple(phones), do_not_call

    # -- CSV / JSONL -------------------------------------------------------------

    async def _current_records(self) -> dict[str, Record]:
        records = self._records
        if records is not None and time.monotonic() - self._checked_at < self.reload_interval:
            return records
        give_up = time.monotonic() + 3 * self.settle_time
        while True:
            found = await asyncio.to_thread(self._reload_if_changed)
            if not isinstance(found, float):
                return found
            # A first load of an export still being written: waited for here, on the
            # event loop, not in the (shared) worker thread, which would hold it.
            if time.monotonic() + found > give_up:
                raise AdapterUnavailable(
                    f"{self.path}: the export is still being written; "
                    "publish it with a rename to make it appear at once"
                )
            await asyncio.sleep(found)

    def _reload_if_changed(self) -> dict[str, Record] | float:
        """The records to serve, or (a first load only) how long to wait for the
        export to settle before asking again."""
        with self._reload_lock:  # one reload at a time, however many callers
            now = time.monotonic()
            records = self._records
            if records is not None and now - self._checked_at < self.reload_interval:
                return records
            if self._failed is not None and now - self._failed[1] < self.reload_interval:
                raise AdapterUnavailable(self._failed[0])  # not read again at every lookup
            try:
                snapshot = self._snapshot(first=records is None)
            except AdapterUnavailable as error:
                self._failed = (str(error), now)
                log.warning("%s", error)
                raise
            self._failed = None
            if isinstance(snapshot, float):
                return snapshot
            if snapshot is not None:
                self._records = records = snapshot
            self._checked_at = time.monotonic()
            assert records is not None  # a first load returns a snapshot or a wait
            return records

    def _snapshot(self, first: bool) -> dict[str, Record] | float | None:
        """The export's records if it changed and has settled; None to keep the
        current ones (unchanged, or still being written); for a first load, which has
        nothing to keep, the seconds to wait before asking again."""
        version = self._version()
        if version == self._loaded:
            return None
        if version != self._seen:
            self._seen, self._seen_at = version, time.monotonic()
        wait = self._unsettled(version)
        # Nothing to serve yet: a file that ends a line is taken without waiting to
        # settle (a writer cut off mid-write rarely stops at a line's end), still only
        # if it does not change while it is read.
        if wait <= 0 or (first and self._ends_a_line()):
            records = self._load()
            if self._version() == version:  # nothing changed while it was read
                self._loaded = version
                return records
            wait = self.settle_time
        if first:
            return max(wait, 0.01)
        log.info("%s is being written: the previous export is served", self.path)
        return None

    def _version(self) -> _Version:
        try:
            stat = os.stat(self.path)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise AdapterUnavailable(f"{self.path}: cannot be read: {reason}") from None
        return _Version(stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)

    def _ends_a_line(self) -> bool:
        try:
            with self.path.open("rb") as file:
                if file.seek(0, os.SEEK_END) == 0:
                    return False
                file.seek(-1, os.SEEK_END)
                return file.read(1) == b"\n"
        except OSError:
            return False

    def _unsettled(self, version: _Version) -> float:
        """Seconds until `version` counts as settled (0: it does)."""
        age = time.time() - version.mtime_ns / 1e9
        if age >= self.settle_time:
            return 0.0
        # A time in the future is a `touch -d` or a file server whose clock runs
        # ahead: its age says nothing. A file ending a line is taken (a writer cut
        # off mid-write rarely stops at a line's end); else it is watched.
        if age < -1.0 and self._ends_a_line():
            return 0.0
        # Watched unchanged long enough (a coarse or skewed clock on the file's side).
        watched = time.monotonic() - self._seen_at
        if watched >= self.settle_time:
            return 0.0
        return min(self.settle_time - age, self.settle_time - watched)

    def _load(self) -> dict[str, Record]:
        records: dict[str, Record] = {}
        duplicates = unreadable = 0
        try:
            if table_format(self.path) == "csv":
                self._check_columns(read_header(self.path))
            for row in read_rows(self.path):
                if "__error__" in row.fields:
                    unreadable += 1
                    continue
                key = str(row.fields.get(self.id_column) or "").strip()
                if not key:
                    continue
                if key in records:
                    duplicates += 1
                records[key] = self._record(row.fields)  # the last row of an id wins
        except (InputFileError, OSError, ValueError) as error:
            reason = redact(safe_text(error))
            raise AdapterUnavailable(f"{self.path}: cannot be read: {reason}") from None
        if duplicates:
            log.warning(
                "%s: %d ids appear more than once; the last row wins", self.path, duplicates
            )
        if unreadable:
            log.warning("%s: %d rows could not be read and were skipped", self.path, unreadable)
        if not records:
            # An export of no contacts is a failed export job, not a CRM emptied
            # overnight: every lead would be "not found".
            raise AdapterUnavailable(f"{self.path}: the export holds no records")
        log.info("%s: loaded %d records", self.path, len(records))
        return records

    def _check_columns(self, columns: Sequence[str]) -> None:
        """A new export without the id column, or without any of the phone columns,
        would make every lookup "not found" or "no number": it is refused."""
        phones = [column for column in self.phone_columns.values() if column in columns]
        if self.id_column not in columns or not phones:
            lost = self.id_column if self.id_column not in columns else "phone"
            raise AdapterUnavailable(
                f"{self.path}: the export has no {lost} column any more "
                f"(columns: {', '.join(columns) or 'none'}); fix the export or the campaign"
            )
        if len(phones) < len(self.phone_columns):
            absent = [c for c in self.phone_columns.values() if c not in columns]
            log.warning("%s: the export has no column %s any more", self.path, ", ".join(absent))

    # -- SQLite ------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            connection = sqlite3.connect(uri, uri=True, check_same_thread=True)
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
        return connection

    def _sqlite_columns(self) -> list[str]:
        connection = self._connection()
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        if self.table is None:
            if len(tables) != 1:
                raise ValueError(f"table: {self.path.name} has tables {tables}; name one in table")
            self.table = tables[0]
        elif self.table not in tables:
            raise ValueError(f"table: {self.table!r} is not a table of {self.path.name} {tables}")
        quoted = self.table.replace('"', '""')
        return [row[1] for row in connection.execute(f'PRAGMA table_info("{quoted}")')]

    def _query(self, external_id: str) -> Record | None:
        def quote(name: str) -> str:  # identifiers come from the schema, never from input
            return '"' + name.replace('"', '""') + '"'

        assert self.table is not None  # set by _sqlite_columns at construction
        wanted = [*self.phone_columns.values(), *([self.dnc_column] if self.dnc_column else [])]
        sql = (
            f"SELECT {', '.join(quote(c) for c in wanted)} FROM {quote(self.table)} "
            f"WHERE {quote(self.id_column)} = ? LIMIT 1"
        )
        row = self._connection().execute(sql, (external_id,)).fetchone()
        return None if row is None else self._record(dict(row))

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def _seconds(name: str, value: object) -> float:
    """A setting in seconds: a number from 0 to a day."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if not 0 <= value <= 86_400:  # NaN compares false
        raise ValueError(f"{name} must be a number of seconds from 0 to 86400, not {value!r}")
    return float(value)
