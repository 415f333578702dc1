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

A CSV or JSONL file is read into memory (in a worker thread) on first use and again
whenever it changes on disk; SQLite is queried per lookup, read-only.
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
from typing import Any

from ..errors import RecordNotFound
from ..models import CrmContact, CrmPhone
from ..tabular import read_header, read_rows

__all__ = ["FileAdapter"]

log = logging.getLogger("predial.adapters.file")

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_ID_COLUMNS = ("id", "external_id", "externalid", "crm_id", "crm id", "record_id", "contact_id")
_DNC_COLUMNS = ("do_not_call", "donotcall", "dnc", "do not call")
_PHONE_HINT = re.compile(r"phone|mobile|cell", re.IGNORECASE)
_TRUE = frozenset({"1", "true", "yes", "y", "x", "t", "dnc"})

Record = tuple[tuple[CrmPhone, ...], bool]


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
        self.reload_interval = reload_interval
        self._records: dict[str, Record] | None = None
        self._loaded_mtime: float | None = None
        self._checked_at = 0.0
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
        return await asyncio.to_thread(self._reload_if_changed)

    def _reload_if_changed(self) -> dict[str, Record]:
        with self._reload_lock:  # one reload at a time, however many callers
            records = self._records
            if records is None or time.monotonic() - self._checked_at >= self.reload_interval:
                mtime = self.path.stat().st_mtime
                if records is None or mtime != self._loaded_mtime:
                    records = self._records = self._load()
                    self._loaded_mtime = mtime
                self._checked_at = time.monotonic()
            return records

    def _load(self) -> dict[str, Record]:
        records: dict[str, Record] = {}
        duplicates = 0
        for row in read_rows(self.path):
            key = str(row.fields.get(self.id_column) or "").strip()
            if not key:
                continue
            if key in records:
                duplicates += 1
            records[key] = self._record(row.fields)  # the last row of an id wins
        if duplicates:
            log.warning(
                "%s: %d ids appear more than once; the last row wins", self.path, duplicates
            )
        log.info("%s: loaded %d records", self.path, len(records))
        return records

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
