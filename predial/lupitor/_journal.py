"""The import journal: every row's outcome in SQLite, written as answers arrive, and
the lock that keeps two imports of one file apart.

A killed import resumes from it: rows the server confirmed (created, or already
in the campaign) and rows settled locally (rejected, duplicate in the file) are
not sent again; rows that were in flight are sent again, and the server's dedup
(externalId, then phone) absorbs any that had landed. WAL mode with
`synchronous=NORMAL` survives a killed process (not a power cut) at a fraction of
the cost of a full sync per batch.

What is read back is checked: a file that is not a journal (another SQLite
database is refused before anything is written into it), tables whose columns are
not a journal's (names, types, primary key), an unknown status, a value of the wrong
type, a line number the input file cannot have, a missing stamp. Every SQLite
failure (damage, permissions, a full disk) is a `JournalError` naming the journal
and what to do. Only a file known to be a predial journal (marked with SQLite's
application id, or holding a journal's tables and stamp) is ever called damaged
with the advice to delete it; any other file is "not a predial journal: pass
another --journal".

`ImportLock` is held for an import's whole run, so a second import of the same
file into the same campaign, or through the same journal, stops at once with
`ImportInProgress` naming the process that runs the first (or waits for it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import socket
import sqlite3
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import filelock

from ..errors import (
    ConfigurationError,
    ImportInProgress,
    InputFileError,
    JournalError,
    PredialError,
)

__all__ = ["FINAL", "STATUSES", "ImportLock", "Journal"]

log = logging.getLogger(__name__)

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
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rows (
    line INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    identifier TEXT,
    lead_id TEXT,
    column_name TEXT,
    reason TEXT
);
"""
#: Each table's columns as `PRAGMA table_info` gives them: name, type, not null, pk.
_COLUMNS = {
    "meta": [("key", "TEXT", 0, 1), ("value", "TEXT", 1, 0)],
    "rows": [
        ("line", "INTEGER", 0, 1),
        ("status", "TEXT", 1, 0),
        ("identifier", "TEXT", 0, 0),
        ("lead_id", "TEXT", 0, 0),
        ("column_name", "TEXT", 0, 0),
        ("reason", "TEXT", 0, 0),
    ],
}
_STAMP_KEYS = ("source", "fingerprint", "campaign")
#: SQLite's application id of a predial journal ("pred"), in its file header.
APPLICATION_ID = 0x70726564
_SQLITE_MAGIC = b"SQLite format 3\x00"
_START_OVER = (
    "delete it (with its -wal and -shm files) to start over, as the server skips leads "
    "it already has, or pass another --journal"
)
_NOT_OURS = "nothing was written to it: pass another --journal"


def fingerprint(path: Path) -> str:
    """A hash of the whole file: a row fixed in place is a changed input (~0.1 s for
    a million rows), and resuming with the old journal would lose that row."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.stat().st_size}:{digest.hexdigest()}"


# SQLite's primary result codes (an extended code's low byte is its primary code).
_PRIMARY = {
    "SQLITE_PERM": 3,
    "SQLITE_BUSY": 5,
    "SQLITE_LOCKED": 6,
    "SQLITE_READONLY": 8,
    "SQLITE_CORRUPT": 11,
    "SQLITE_FULL": 13,
    "SQLITE_CANTOPEN": 14,
    "SQLITE_AUTH": 23,
    "SQLITE_NOTADB": 26,
}
_DAMAGED = frozenset({_PRIMARY["SQLITE_NOTADB"], _PRIMARY["SQLITE_CORRUPT"]})
_NOT_WRITABLE = frozenset(
    _PRIMARY[name] for name in ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")
)
_IN_USE = frozenset({_PRIMARY["SQLITE_BUSY"], _PRIMARY["SQLITE_LOCKED"]})


def _primary_code(error: sqlite3.Error) -> int | None:
    """The error's primary result code: SQLITE_READONLY_DIRECTORY (1544, a folder
    the user cannot write) is SQLITE_READONLY (8)."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str):
        for prefix, primary in _PRIMARY.items():
            if name == prefix or name.startswith(prefix + "_"):
                return primary
    return None


def _explain(path: Path, error: sqlite3.Error, ours: bool) -> str:
    """One line: what went wrong with the journal, and what to do. `ours`: the file
    is known to be a predial journal (only then may the advice be to delete it)."""
    code = _primary_code(error)
    text = str(error).lower()
    if code in _DAMAGED:
        if ours:
            return f"{path}: a damaged predial journal ({error}); {_START_OVER}"
        return f"{path}: not a predial journal ({_what_file(path)}); {_NOT_OURS}"
    if code == _PRIMARY["SQLITE_FULL"]:
        return (
            f"{path}: the journal cannot be written: the disk is full; free some space "
            "and rerun the same command (the import resumes), or pass a --journal on "
            "another disk"
        )
    if code in _NOT_WRITABLE or any(
        word in text for word in ("readonly", "read-only", "unable to open", "permission")
    ):
        return (
            f"{path}: the journal cannot be opened for writing ({error}); make the file "
            f"and its folder ({_folder(path)}) writable, or pass another --journal"
        )
    if code in _IN_USE:
        return (
            f"{path}: the journal is locked by another program ({error}); close it, "
            "or pass another --journal"
        )
    if ours:
        return f"{path}: journal error ({error}); {_START_OVER}"
    return f"{path}: journal error ({error}); pass another --journal"


def _folder(path: Path) -> str:
    return str(path.parent.resolve()) if path.parent != Path() else os.getcwd()


def _what_file(path: Path) -> str:
    """What a file that SQLite cannot read as a database is, from its first bytes."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError as error:
        return f"it cannot be read: {error.strerror or error}"
    if head.startswith(_SQLITE_MAGIC):
        return "a damaged SQLite database, not marked as a predial journal"
    return "not an SQLite database"


def _marked(path: Path) -> bool:
    """Whether the file's SQLite header carries the predial journal's application id."""
    try:
        with path.open("rb") as file:
            head = file.read(72)
    except OSError:
        return False
    return head.startswith(_SQLITE_MAGIC) and head[68:72] == APPLICATION_ID.to_bytes(4, "big")


class Journal:
    """Row outcomes of one import of one file into one campaign."""

    def __init__(
        self,
        path: Path,
        *,
        source: Path,
        campaign_id: str,
        memory: bool = False,
        encoding: str | None = None,
        read_only: bool = False,
    ):
        """`memory`: a journal that lives in memory only. `read_only`: what the file
        at `path` records (if it exists), copied into memory and checked as a real
        run would check it; the file is never written, and no file is created."""
        self.path = path
        self._pending: list[tuple[int, str, str | None, str | None, str | None, str | None]] = []
        # A file of S bytes has at most S + 1 lines: a bigger line number is not a
        # row's, and would size the status array past the file.
        self._source = source
        self._size = source.stat().st_size
        self._top_line = self._size + 1
        #: Known to be a predial journal: only such a file is ever called damaged.
        self._ours = not memory and _marked(path)
        self._source_fingerprint = fingerprint(source)
        stamp = {
            "source": str(source.resolve()),
            "fingerprint": self._source_fingerprint,
            "campaign": campaign_id,
        }
        with self._guard():
            if read_only and not memory and path.exists():
                self._db = _copied(path)
            else:
                in_memory = memory or read_only
                self._db = sqlite3.connect(
                    ":memory:" if in_memory else str(path), isolation_level=None
                )
        try:
            with self._guard():
                self.resumed = self._open(stamp, encoding)
        except BaseException:
            self._db.close()
            raise

    def _open(self, stamp: dict[str, str], encoding: str | None) -> bool:
        """Check the file is a journal of this import (or new), set it up; whether it
        holds an earlier run."""
        db = self._db
        path = self.path
        objects = sorted(
            (name, kind)
            for kind, name in db.execute("SELECT type, name FROM sqlite_master")
            if not name.startswith("sqlite_")
        )
        if objects and objects != [("meta", "table"), ("rows", "table")]:
            held = ", ".join(f"{kind} {name}" for name, kind in objects)
            raise JournalError(
                f"{path}: an SQLite database that is not a predial journal (it holds "
                f"{held}); {_NOT_OURS}"
            )
        if objects:
            for table, columns in _COLUMNS.items():
                info = db.execute(f"PRAGMA table_info({table})").fetchall()
                found = [
                    (name, str(kind).upper(), notnull, pk) for _, name, kind, notnull, _, pk in info
                ]
                # A table WITHOUT ROWID has an index for its primary key: there `line
                # INTEGER PRIMARY KEY` is no rowid and could hold text.
                indexed = table == "rows" and db.execute("PRAGMA index_list(rows)").fetchall()
                if found != columns or indexed:
                    shown = ", ".join(f"{name} {kind}".strip() for name, kind, _, _ in found)
                    raise JournalError(
                        f"{path}: its table {table} is not a predial journal's (columns "
                        f"{shown}); {_NOT_OURS}"
                    )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        existing: dict[str, Any] = {}
        has_rows = False
        if objects:
            existing = dict(db.execute("SELECT key, value FROM meta").fetchall())
            has_rows = db.execute("SELECT 1 FROM rows LIMIT 1").fetchone() is not None
        if not existing and not has_rows:
            # Tables and stamp in one transaction: a kill leaves a journal or none.
            db.execute("BEGIN")
            if not objects:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            if encoding is not None:
                stamp = {**stamp, "encoding": encoding}
            db.executemany("INSERT INTO meta VALUES (?, ?)", stamp.items())
            db.execute("COMMIT")
            self._ours = True
            return False
        missing = [key for key in _STAMP_KEYS if not isinstance(existing.get(key), str)]
        if missing:
            raise JournalError(
                f"{path}: the journal has no stamp ({', '.join(missing)} missing): not "
                f"written by predial, or damaged; {_START_OVER}"
            )
        self._ours = True  # a journal's tables, exactly, and its stamp
        # A good journal of another import is never one to delete: the message names
        # the journal to pass instead (the one the default would be for this import).
        if existing["source"] == stamp["source"] and existing["campaign"] != stamp["campaign"]:
            ours = Journal.campaign_path(self._source, stamp["campaign"])
            raise ConfigurationError(
                f"{path}: this journal records the import of {self._source.name} into "
                f"campaign {existing['campaign']!r}, not {stamp['campaign']!r}; pass "
                f"--journal {ours} (that campaign's own), or leave --journal out to use it"
            )
        name = self._source.name
        for key, value in stamp.items():
            if existing[key] != value:
                what = {
                    "source": f"another file ({existing['source']})",
                    "fingerprint": f"another version of {name} (it has changed since)",
                    "campaign": f"campaign {existing['campaign']!r}",
                }[key]
                fresh = self.fresh_path(self._source, self._source_fingerprint)
                raise ConfigurationError(
                    f"{path}: this journal records an import of {what}; to import this "
                    f"file as it is now, pass --journal {fresh} (a new journal: the "
                    "leads the campaign already has are not added twice)"
                )
        if encoding is not None:
            recorded = existing.get("encoding")
            if recorded is not None and not isinstance(recorded, str):
                raise JournalError(
                    f"{path}: its recorded encoding is not text ({_shown(recorded)}): "
                    f"damaged, or written by another program; {_START_OVER}"
                )
            if recorded is None:
                # A journal from before encodings were recorded: this run's is kept.
                db.execute("INSERT INTO meta VALUES ('encoding', ?)", (encoding,))
            elif recorded != encoding:
                fresh = self.fresh_path(self._source, self._source_fingerprint, encoding)
                raise ConfigurationError(
                    f"{path}: this journal records the file read as {recorded}, and this "
                    f"run reads it as {encoding}: the rows would not be the same; rerun "
                    f"with --encoding {recorded}, or pass --journal {fresh} to import it "
                    f"read as {encoding} (a new journal)"
                )
        return True

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's errors as one JournalError saying what to do."""
        try:
            yield
        except sqlite3.Error as error:
            raise JournalError(_explain(self.path, error, self._ours)) from error

    @classmethod
    def default_path(cls, source: Path) -> Path:
        """`leads.csv.journal.sqlite` beside the input: the journal of its first
        campaign (`path_for` gives the one an import uses)."""
        return source.with_name(source.name + ".journal.sqlite")

    @classmethod
    def campaign_path(cls, source: Path, campaign_id: str) -> Path:
        """`leads.csv.cmp_2.journal.sqlite` beside the input: the journal of an
        import of the file into another campaign than the default journal's."""
        return source.with_name(f"{source.name}.{_file_part(campaign_id)}.journal.sqlite")

    @classmethod
    def path_for(cls, source: Path, campaign_id: str) -> Path:
        """The journal an import of `source` into `campaign_id` uses when none is
        given: the default one, unless that records another campaign (the same file
        imported into a second campaign); then the campaign's own. Read without
        writing or creating anything; a default journal that cannot be read is the
        one used (and its error is reported when it is opened)."""
        default = cls.default_path(source)
        recorded = recorded_campaign(default)
        if recorded is None or recorded == campaign_id:
            return default
        return cls.campaign_path(source, campaign_id)

    @classmethod
    def fresh_path(cls, source: Path, digest: str, encoding: str | None = None) -> Path:
        """A journal named for this version of the file (and encoding): the one to
        pass when the default records an earlier version. The same on every run, so
        passing it again resumes."""
        key = digest if encoding is None else f"{digest}:{encoding}"
        short = hashlib.sha256(key.encode()).hexdigest()[:8]
        return source.with_name(f"{source.name}.{short}.journal.sqlite")

    def statuses(self) -> bytearray:
        """Each line's status code (0 = not seen), compact enough for millions of rows."""
        with self._guard():
            low, top = self._db.execute("SELECT MIN(line), MAX(line) FROM rows").fetchone()
            if top is None:
                return bytearray(1)
            self._check_line(low)
            self._check_line(top)
            codes = bytearray(top + 1)
            for line, status in self._db.execute("SELECT line, status FROM rows"):
                self._check_line(line)
                code = _CODES.get(status) if isinstance(status, str) else None
                if code is None:
                    raise JournalError(
                        f"{self.path}: line {line} has the unknown status {_shown(status)}: "
                        f"damaged, or written by another program; {_START_OVER}"
                    )
                codes[line] = code
        return codes

    def _check_line(self, line: object) -> None:
        """A line number read back: an int the input file can have."""
        if type(line) is not int:
            raise JournalError(
                f"{self.path}: records the line number {_shown(line)}, which is not a "
                f"whole number: damaged, or written by another program; {_START_OVER}"
            )
        if not 1 <= line <= self._top_line:
            raise JournalError(
                f"{self.path}: records line {line}, which {self._source.name} cannot "
                f"have (the file is {self._size} bytes long, so no line can be numbered "
                f"over {self._top_line}): damaged; {_START_OVER}"
            )

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
        with self._guard():
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO rows (line, status, identifier, lead_id, column_name, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(line) DO UPDATE SET "
                    "status=excluded.status, identifier=excluded.identifier, "
                    "lead_id=COALESCE(excluded.lead_id, rows.lead_id), "
                    "column_name=excluded.column_name, reason=excluded.reason",
                    self._pending,
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        self._pending.clear()

    def counts(self) -> dict[str, int]:
        self.flush()
        with self._guard():
            counts = dict(
                self._db.execute("SELECT status, COUNT(*) FROM rows GROUP BY status").fetchall()
            )
        for status in counts:
            if not isinstance(status, str) or status not in _CODES:
                raise JournalError(
                    f"{self.path}: a row has the unknown status {_shown(status)}: damaged, "
                    f"or written by another program; {_START_OVER}"
                )
        return counts

    def grouped(self, status: str, by: str = "reason") -> list[tuple[str | None, int]]:
        """How many rows of `status` share each reason (or, `by="column"`, each
        column), most first: the causes a report shows beside a count."""
        field = {"reason": "reason", "column": "column_name"}.get(by)
        if status not in _CODES or field is None:
            raise ValueError(f"cannot group {status!r} rows by {by!r}")
        self.flush()
        with self._guard():
            found = self._db.execute(
                f"SELECT {field}, COUNT(*) FROM rows WHERE status = ? GROUP BY {field} "
                f"ORDER BY COUNT(*) DESC, {field}",
                (status,),
            ).fetchall()
        for value, _ in found:
            if value is not None and not isinstance(value, str):
                raise JournalError(
                    f"{self.path}: a {status} row has a {by} that is not text "
                    f"({_shown(value)}): damaged, or written by another program; {_START_OVER}"
                )
        return [(value, count) for value, count in found]

    def problems(self) -> Iterable[tuple[int, str, str | None, str | None]]:
        """(line, status, column, reason) of every rejected or failed row, in file order."""
        self.flush()
        with self._guard():
            cursor = self._db.execute(
                "SELECT line, status, column_name, reason FROM rows "
                "WHERE status IN ('rejected', 'failed') ORDER BY line"
            )
        while True:
            with self._guard():
                batch = cursor.fetchmany(1000)
            if not batch:
                return
            for line, status, column, reason in batch:
                self._check_line(line)
                for value in (column, reason):
                    if value is not None and not isinstance(value, str):
                        raise JournalError(
                            f"{self.path}: line {line} has a column or reason that is not "
                            f"text ({_shown(value)}): damaged, or written by another "
                            f"program; {_START_OVER}"
                        )
                yield line, status, column, reason

    def note_rejects(self, path: Path) -> None:
        """Record that this (real) run writes its rejects to `path`, before it does:
        a dry run will not overwrite that file (`recorded_rejects`)."""
        with self._guard():
            self._db.execute(
                "INSERT INTO meta VALUES ('rejects', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (os.path.realpath(path),),
            )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()

    def abandon(self) -> None:
        """Close after another error: what is queued is written if it can be; if not,
        a warning says so and the first error stays the one reported."""
        try:
            self.close()
        except JournalError as error:
            log.warning("%s (the outcomes of the last rows were not recorded)", error)


def _shown(value: object) -> str:
    """A value read from a journal, for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _file_part(campaign_id: str) -> str:
    """The campaign id as part of a file name: itself when it is a plain name (as
    Lupitor's ids are), else its safe characters and a digest (no two ids alike)."""
    if _SAFE_NAME.fullmatch(campaign_id):
        return campaign_id
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", campaign_id).strip("-")[:40]
    digest = hashlib.sha256(campaign_id.encode()).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else digest


def _read_only_uri(path: Path) -> str:
    """An SQLite URI reading `path` without writing anything beside it: with its
    WAL when one is there (a killed import's last rows are in it), else as an
    immutable file (read-only mode would leave empty -wal and -shm files behind)."""
    uri = path.resolve().as_uri()
    wal = Path(f"{path}-wal")
    return f"{uri}?mode=ro" if wal.exists() else f"{uri}?immutable=1"


def _copied(path: Path) -> sqlite3.Connection:
    """The journal at `path` copied into memory, read without writing to it."""
    source = sqlite3.connect(_read_only_uri(path), uri=True, isolation_level=None)
    try:
        copy = sqlite3.connect(":memory:", isolation_level=None)
        try:
            source.backup(copy)
        except BaseException:
            copy.close()
            raise
    finally:
        source.close()
    return copy


def recorded_counts(path: Path) -> dict[str, int] | None:
    """How many rows the journal at `path` records in each status, or None: no file,
    not a journal, or unreadable. Reads without writing or creating anything."""
    found = _read_only(path, "SELECT status, COUNT(*) FROM rows GROUP BY status")
    if found is None:
        return None
    return {status: count for status, count in found if status in _CODES}


def recorded_campaign(path: Path) -> str | None:
    """The campaign the journal at `path` records, or None: no file, not a predial
    journal, or unreadable. Reads without writing or creating anything."""
    return _recorded(path, "campaign")


def recorded_rejects(path: Path) -> str | None:
    """The rejects file (its resolved path) a real run of the journal at `path`
    last wrote (`Journal.note_rejects`), or None: none, no file, not a predial
    journal, or unreadable. Reads without writing or creating anything."""
    return _recorded(path, "rejects")


def _recorded(path: Path, key: str) -> str | None:
    rows = _read_only(path, "SELECT value FROM meta WHERE key = ?", key)
    return rows[0][0] if rows and isinstance(rows[0][0], str) else None


def _read_only(path: Path, sql: str, *parameters: str) -> list[Any] | None:
    """The rows `sql` selects from the journal at `path`, or None: no file, not a
    journal, or unreadable. Opened read-only: nothing is written or created."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(_read_only_uri(path), uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        return db.execute(sql, parameters).fetchall()
    except sqlite3.Error:
        return None
    finally:
        db.close()


def holder(owner: dict[str, Any] | None) -> str:
    """`pid 4242 on host dialer-3, started 2026-12-01T14:02:11Z`, or what is known."""
    if owner is None:
        return "in another process, which did not say which"
    return f"pid {owner['pid']} on host {owner['host']}, started {owner['started']}"


#: Why a lock beside the input file may be impossible without anything being wrong
#: with the import: a folder the user cannot write, or a name too long for one more
#: suffix. That lock is then skipped, with a warning.
_BESIDE_SKIPPABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG})


class ImportLock:
    """Three file locks held for an import's whole run (filelock: released by the
    system when the process dies, however it dies):

    - `<journal>.lock`, beside the journal, at its resolved path (a symlink to the
      journal is the same journal): one import per journal;
    - `<input>.<campaign digest>.import.lock`, beside the input file's resolved
      path: the same file into the same campaign through another journal, whatever
      temporary folder each import has (cron and a shell differ). Skipped, with a
      warning, when the input's folder cannot be written;
    - one per input file's device and inode (so a hard link to it too) and
      campaign, in a private folder of the user under the system's temporary folder.

    Who holds a lock is written beside it, in `<lock>.owner` (JSON: pid, host,
    started, journal, source, campaign), for the message of the one refused; the
    details cannot live in the lock file itself, which some versions of filelock
    truncate when they open it. The lock files stay (empty) after the import.

    A lock file that cannot be created is an error naming it, its folder and the
    system's reason (`JournalError` for the journal's, `InputFileError` beside the
    input, `ConfigurationError` in the temporary folder), never "another import is
    running": only a lock another process holds means that.
    """

    def __init__(self, journal: Path, source: Path, campaign_id: str) -> None:
        self.journal = journal
        self.source = source
        self.campaign_id = campaign_id
        self._held: list[tuple[filelock.BaseFileLock, Path]] = []
        self._warned = False

    def _sites(self) -> list[tuple[Path, int | None, str]]:
        """(lock file, its mode or None for filelock's, which lock) in the order taken."""
        journal = Path(os.path.realpath(self.journal))
        source = Path(os.path.realpath(self.source))
        try:
            identity = source.stat()
        except OSError as error:
            raise InputFileError(
                f"{self.source}: cannot be read: {error.strerror or error}"
            ) from None
        campaign = hashlib.sha256(self.campaign_id.encode()).hexdigest()[:8]
        key = f"{identity.st_dev}:{identity.st_ino}:{self.campaign_id}"
        name = hashlib.sha256(key.encode()).hexdigest()[:24]
        return [
            (journal.with_name(journal.name + ".lock"), None, "journal"),
            (source.with_name(f"{source.name}.{campaign}.import.lock"), None, "source"),
            (_private_folder() / f"{name}.lock", 0o600, "temp"),
        ]

    def acquire(self) -> None:
        """Take every lock, or none: `ImportInProgress` naming the holder when another
        import has one."""
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "journal": str(self.journal.resolve()),
            "source": str(self.source.resolve()),
            "campaign": self.campaign_id,
        }
        try:
            for path, mode, which in self._sites():
                try:
                    # Created here, not by filelock: it makes missing folders, and
                    # reports a file it cannot create as a lock it could not get.
                    _create_lock_file(path, 0o644 if mode is None else mode)
                except OSError as error:
                    if which == "source" and error.errno in _BESIDE_SKIPPABLE:
                        self._skip_beside(path, error)
                        continue
                    raise _cannot_lock(which, path, error) from None
                lock = (
                    filelock.FileLock(path, timeout=0)
                    if mode is None
                    else filelock.FileLock(path, timeout=0, mode=mode)
                )
                try:
                    lock.acquire()
                except filelock.Timeout:
                    raise self._busy(path) from None
                except OSError as error:
                    raise _cannot_lock(which, path, error) from None
                sidecar = path.with_name(path.name + ".owner")
                self._held.append((lock, sidecar))
                _write_owner(sidecar, owner)
        except BaseException:
            self.release()
            raise

    def _skip_beside(self, path: Path, error: OSError) -> None:
        if self._warned:
            return  # once per import, not once per try of --wait
        self._warned = True
        log.warning(
            "%s: cannot create the import lock beside the input file (%s); an import of "
            "it through another journal is stopped only if it has the same temporary "
            "folder ($TMPDIR)",
            path,
            error.strerror or error,
        )

    def release(self) -> None:
        """Let go of what is held (the owner files first, while still held)."""
        held, self._held = self._held, []
        for lock, sidecar in reversed(held):
            try:
                sidecar.unlink(missing_ok=True)
            except OSError as error:
                log.warning("%s: could not remove it (%s)", sidecar, error.strerror or error)
            lock.release()

    def _busy(self, path: Path) -> ImportInProgress:
        owner = _read_owner(path.with_name(path.name + ".owner"))
        source = Path(owner["source"]).name if owner else self.source.name
        campaign = owner["campaign"] if owner else self.campaign_id
        return ImportInProgress(
            f"another import of {source} into campaign {campaign} is running: "
            f"{holder(owner)}; wait for it to finish, or rerun with --wait",
            owner,
        )


def _create_lock_file(path: Path, mode: int) -> None:
    """Create the lock file if it is not there (never through a symbolic link)."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    os.close(os.open(path, flags, mode))


def _cannot_lock(which: str, path: Path, error: OSError) -> PredialError:
    """The error for a lock file that cannot be created or locked: its path, its
    folder, the system's reason and what to do."""
    reason = error.strerror or str(error)
    folder = path.parent
    if error.errno == errno.ENOENT and not folder.is_dir():
        problem = f"the folder {folder} does not exist ({reason})"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        problem = f"the folder {folder} cannot be written ({reason})"
    else:
        problem = f"it cannot be created in {folder} ({reason})"
    if which == "journal":
        return JournalError(
            f"{path}: cannot take the journal's lock: {problem}; pass a --journal in a "
            "folder you can write"
        )
    if which == "source":
        return InputFileError(
            f"{path}: cannot take the import lock beside the input file: {problem}"
        )
    return ConfigurationError(
        f"{path}: cannot take the import lock: {problem}; set TMPDIR to a folder you can write"
    )


def _private_folder() -> Path:
    """The user's own folder for input-file locks, created 0700; refused if another
    account could have put it there or can write in it."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"predial-imports-{uid if uid is not None else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError as error:
        raise ConfigurationError(
            f"{folder}: cannot create the folder of import locks ({error.strerror or error}); "
            "set TMPDIR to a writable folder"
        ) from None
    if uid is not None and (
        not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077
    ):
        raise ConfigurationError(
            f"{folder}: the folder of import locks is not private to this user (a link, "
            "another owner, or open to others); remove it, or set TMPDIR to a private folder"
        )
    return folder


def _write_owner(sidecar: Path, owner: dict[str, Any]) -> None:
    """Written aside and renamed, so a reader never sees half of it."""
    partial = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.partial")
    try:
        partial.write_text(json.dumps(owner), encoding="utf-8")
        os.replace(partial, sidecar)
    except OSError as error:
        # The lock holds without it; a refused import then names no process.
        log.warning("%s: could not record who holds the lock (%s)", sidecar, error.strerror)


def _read_owner(sidecar: Path) -> dict[str, Any] | None:
    """What the holder wrote, or None: missing, unreadable, or left by a process of
    this host that is gone (killed before it could remove it)."""
    try:
        with sidecar.open("rb") as file:
            owner = json.loads(file.read(65536))
    except (OSError, ValueError):
        return None
    if not (
        isinstance(owner, dict)
        and isinstance(owner.get("pid"), int)
        and all(isinstance(owner.get(key), str) for key in ("host", "started", "source"))
        and isinstance(owner.get("campaign"), str)
    ):
        return None
    if owner["host"] == socket.gethostname() and not _alive(owner["pid"]):
        return None
    return owner


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill would end the process there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process (EPERM), or no way to tell
    return True
