"""The import journal: every row's outcome in SQLite, written as answers arrive.

A killed import resumes from it: rows the server confirmed (created, or already
in the campaign) and rows settled locally (rejected, duplicate in the file) are
not sent again; rows that were in flight are sent again, and the server's dedup
(externalId, then phone) absorbs any that had landed. WAL mode with
`synchronous=NORMAL` survives a killed process (not a power cut) at a fraction of
the cost of a full sync per batch.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["FINAL", "STATUSES", "Journal"]

#: Row statuses. `sending` rows were in a request whose answer is not recorded yet.
STATUSES = (
    "rejected",
    "duplicate_in_file",
    "sending",
    "created",
    "already_present",
    "failed",
)
#: Statuses that need nothing more: a rerun does not send these rows again.
FINAL = frozenset({"rejected", "duplicate_in_file", "created", "already_present"})

_CODES = {status: code for code, status in enumerate(STATUSES, start=1)}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    line INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    identifier TEXT,
    lead_id TEXT,
    column_name TEXT,
    reason TEXT
);
"""


def fingerprint(path: Path) -> str:
    """A hash of the whole file: a row fixed in place is a changed input (~0.1 s for
    a million rows), and resuming with the old journal would lose that row."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.stat().st_size}:{digest.hexdigest()}"


class Journal:
    """Row outcomes of one import of one file into one campaign."""

    def __init__(self, path: Path, *, source: Path, campaign_id: str, memory: bool = False):
        self.path = path
        self._db = sqlite3.connect(":memory:" if memory else str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        stamp = {
            "source": str(source.resolve()),
            "fingerprint": fingerprint(source),
            "campaign": campaign_id,
        }
        existing = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if existing:
            for key, value in stamp.items():
                if existing.get(key) != value:
                    what = {
                        "source": "another file",
                        "fingerprint": "a different version of the file",
                        "campaign": f"campaign {existing.get('campaign')!r}",
                    }[key]
                    raise ConfigurationError(
                        f"{path}: this journal records an import of {what}; "
                        "pass another --journal, or delete this one to start over"
                    )
        else:
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", stamp.items())
        self.resumed = bool(existing)
        self._pending: list[tuple[int, str, str | None, str | None, str | None, str | None]] = []

    @classmethod
    def default_path(cls, source: Path) -> Path:
        return source.with_name(source.name + ".journal.sqlite")

    def statuses(self) -> bytearray:
        """Each line's status code (0 = not seen), compact enough for millions of rows."""
        top = self._db.execute("SELECT COALESCE(MAX(line), 0) FROM rows").fetchone()[0]
        codes = bytearray(top + 1)
        for line, status in self._db.execute("SELECT line, status FROM rows"):
            codes[line] = _CODES[status]
        return codes

    @staticmethod
    def is_final(code: int) -> bool:
        return code != 0 and STATUSES[code - 1] in FINAL

    def record(
        self,
        line: int,
        status: str,
        *,
        identifier: str | None = None,
        lead_id: str | None = None,
        column: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Queue an outcome; `flush()` writes the queue in one transaction."""
        self._pending.append((line, status, identifier, lead_id, column, reason))
        if len(self._pending) >= 5000:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO rows (line, status, identifier, lead_id, column_name, reason) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(line) DO UPDATE SET status=excluded.status, "
                "identifier=excluded.identifier, lead_id=COALESCE(excluded.lead_id, rows.lead_id), "
                "column_name=excluded.column_name, reason=excluded.reason",
                self._pending,
            )
        self._pending.clear()

    def counts(self) -> dict[str, int]:
        self.flush()
        return dict(
            self._db.execute("SELECT status, COUNT(*) FROM rows GROUP BY status").fetchall()
        )

    def problems(self) -> Iterable[tuple[int, str, str | None, str | None]]:
        """(line, status, column, reason) of every rejected or failed row, in file order."""
        self.flush()
        yield from self._db.execute(
            "SELECT line, status, column_name, reason FROM rows "
            "WHERE status IN ('rejected', 'failed') ORDER BY line"
        )

    def close(self) -> None:
        self.flush()
        self._db.close()


def remove_journal(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            os.remove(candidate)
