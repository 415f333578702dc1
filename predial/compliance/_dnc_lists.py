"""A directory of do-not-call lists: one file per list, several per campaign.

`DIR/NAME.pdnc` is the list (see `_dnc_store`); `DIR/NAME.history.jsonl` records
every `add` and `remove` (when, by what, why: the FCC's 10-day rule for a
company-specific request is proven from it), never rewritten; `DIR/NAME.lock` keeps
two writers (two `predial dnc add`, an import) from losing each other's changes.

`DncLists.first_hit` is the resolver's gate: it parses the number once and bisects
each named list's mapped file; it looks at the files (one `stat` each) at most once
per `refresh_seconds` and reopens a list that was replaced, so a `predial dnc add`
in another process is honoured within about a second without a syscall per lookup.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._phone import mask_phone
from ..errors import ConfigurationError
from ._dnc_import import BUFFER_NUMBERS, DncImportReport, _rebuild_area, import_files
from ._dnc_store import Block, DncStore, split_nanp, write_store

__all__ = ["DNC_DIR_ENV", "DncEntry", "DncList", "DncListStats", "DncLists"]

log = logging.getLogger(__name__)

#: The environment variable naming the lists' directory (`predial dnc --dir`).
DNC_DIR_ENV = "PREDIAL_DNC_DIR"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SUFFIX = ".pdnc"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"do-not-call list name {name!r} is not allowed; use letters, digits, "
            "'-' and '_' (at most 64, starting with a letter or digit)"
        )
    return name


def _create_hint(name: str, directory: Path) -> str:
    present = (
        sorted(p.name[: -len(_SUFFIX)] for p in directory.glob(f"*{_SUFFIX}"))
        if directory.is_dir()
        else []
    )
    close = difflib.get_close_matches(name, present, n=1)
    if close:
        return f"did you mean {close[0]!r}? (lists there: {', '.join(present)})"
    return (
        f"create it with 'predial dnc add --dir {directory} --list {name} NUMBER' "
        f"or 'predial dnc import --dir {directory} --list {name} FILE'"
    )


@dataclass(frozen=True)
class DncEntry:
    """One line of a list's history: a number added or removed, when, by what."""

    number: str
    action: str  # "add" or "remove"
    at: datetime
    by: str
    reason: str | None = None

    def as_json(self) -> str:
        return json.dumps(
            {
                "at": self.at.isoformat(timespec="seconds"),
                "action": self.action,
                "number": self.number,
                "by": self.by,
                "reason": self.reason,
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class DncListStats:
    name: str
    numbers: int
    bytes: int
    generation: int
    written_at: str | None
    last_import: dict[str, Any] | None

    @property
    def bytes_per_number(self) -> float | None:
        return self.bytes / self.numbers if self.numbers else None

    @property
    def index_bytes(self) -> int:
        """The bytes that are not numbers (4 bytes each): the area codes' index,
        each used area code's exchange index and the metadata. Mostly fixed, so a
        small list's bytes per number say little."""
        return self.bytes - 4 * self.numbers


class DncList:
    """One list in a directory: reading it, changing it, its history."""

    def __init__(self, directory: str | os.PathLike[str], name: str) -> None:
        self.directory = Path(directory)
        self.name = _check_name(name)
        self.path = self.directory / f"{name}{_SUFFIX}"
        self.history_path = self.directory / f"{name}.history.jsonl"
        self.lock_path = self.directory / f"{name}.lock"

    def exists(self) -> bool:
        return self.path.is_file()

    def _not_a_file(self) -> ConfigurationError:
        return ConfigurationError(
            f"do-not-call list {self.name!r}: {self.path} is not a file (a directory?); "
            "move it out of the lists' directory"
        )

    def open(self) -> DncStore:
        """The list as it is now (close it when done)."""
        if self.path.exists() and not self.path.is_file():
            raise self._not_a_file()
        if not self.exists():
            raise ConfigurationError(
                f"do-not-call list {self.name!r} does not exist in {self.directory} "
                f"(no {self.path.name}); {_create_hint(self.name, self.directory)}"
            )
        return DncStore(self.path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not self.path.is_file():
            raise self._not_a_file()  # else the rename at the end of a write fails
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
            yield

    def add(
        self,
        numbers: Iterable[str],
        *,
        by: str,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> int:
        """List `numbers` (E.164 NANP, `+12025550123`) in one rewrite and record each
        in the history with `at` (default now, UTC), `by` and `reason`. Returns how
        many were not listed before."""
        return self._change(numbers, True, by, reason, at)

    def remove(
        self,
        numbers: Iterable[str],
        *,
        by: str,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> int:
        """Unlist `numbers` in one rewrite, recorded in the history; returns how many
        were listed."""
        return self._change(numbers, False, by, reason, at)

    def _change(
        self,
        numbers: Iterable[str],
        added: bool,
        by: str,
        reason: str | None,
        at: datetime | None,
    ) -> int:
        parsed: dict[str, tuple[int, int]] = {}
        for number in numbers:
            parts = split_nanp(number) if isinstance(number, str) else None
            if parts is None or parts[0] < 200:
                raise ValueError(
                    f"{mask_phone(number)}: not a US/NANP number (+1 and 10 digits); "
                    "only those can be on a do-not-call list here"
                )
            parsed[f"+1{parts[0]:03d}{parts[1]:07d}"] = parts
        when = (at or datetime.now(UTC)).astimezone(UTC)
        with self._locked():
            old = DncStore(self.path) if self.exists() else None
            try:
                changed = [
                    number
                    for number, (code, sub) in parsed.items()
                    if (old is not None and old.has(code, sub)) is not added
                ]
                edits: dict[int, dict[int, bool]] = {}
                for number in changed:
                    code, sub = parsed[number]
                    edits.setdefault(code, {})[sub] = added
                if changed or old is None:
                    self._rewrite(old, edits, when)
            finally:
                if old is not None:
                    old.close()
            # Recorded after the list holds the change: a history line never claims a
            # number that the list does not (a crash between leaves it unrecorded).
            # A repeated add is a new request, recorded; removing a number that was
            # not listed honoured nothing, so it is not.
            action = "add" if added else "remove"
            recorded = parsed if added else changed
            lines = [DncEntry(n, action, when, by, reason).as_json() for n in recorded]
            with open(self.history_path, "a", encoding="utf-8") as history:
                history.write("".join(line + "\n" for line in lines))
                history.flush()
                os.fsync(history.fileno())
        return len(changed)

    def _rewrite(
        self, old: DncStore | None, edits: dict[int, dict[int, bool]], when: datetime
    ) -> None:
        def block_for(code: int) -> Block:
            if code not in edits:
                return old.block(code) if old is not None else None
            existing = old.numbers(code) if old is not None else None
            return _rebuild_area(code, existing, None, edits[code])

        write_store(
            self.path,
            block_for,
            generation=(old.generation + 1) if old is not None else 1,
            meta={
                **(old.meta if old is not None else {}),
                "written_at": when.isoformat(timespec="seconds"),
            },
        )

    def import_files(
        self,
        files: Sequence[str | os.PathLike[str]],
        *,
        changes: bool = False,
        progress: Callable[[int, int], None] | None = None,
        buffer_numbers: int | None = None,
    ) -> DncImportReport:
        """Import FTC downloads (full files, or change lists with `changes`): see
        `predial.compliance._dnc_import.import_files`."""
        with self._locked():
            return import_files(
                self.path,
                files,
                changes=changes,
                progress=progress,
                buffer_numbers=BUFFER_NUMBERS if buffer_numbers is None else buffer_numbers,
            )

    def history(self, number: str | None = None) -> list[DncEntry]:
        """Every add/remove recorded (for `number` only, if given), oldest first."""
        wanted = None
        if number is not None:
            parts = split_nanp(number)
            wanted = None if parts is None else f"+1{parts[0]:03d}{parts[1]:07d}"
            if wanted is None:
                return []
        entries = []
        try:
            with open(self.history_path, encoding="utf-8") as history:
                for line_no, line in enumerate(history, 1):
                    try:
                        record = json.loads(line)
                        entry = DncEntry(
                            record["number"],
                            record["action"],
                            datetime.fromisoformat(record["at"]),
                            record["by"],
                            record.get("reason"),
                        )
                    except (ValueError, KeyError, TypeError):
                        # A torn last line (a crash mid-write) is skipped, not fatal.
                        log.warning("%s line %d: not a history record", self.history_path, line_no)
                        continue
                    if wanted is None or entry.number == wanted:
                        entries.append(entry)
        except FileNotFoundError:
            return []
        return entries

    def entry(self, number: str) -> DncEntry | None:
        """The latest `add` of `number` if that is its latest record, else None."""
        history = self.history(number)
        return history[-1] if history and history[-1].action == "add" else None

    def stats(self) -> DncListStats:
        with self.open() as store:
            return DncListStats(
                self.name,
                store.count,
                store.size,
                store.generation,
                store.meta.get("written_at"),
                store.meta.get("last_import"),
            )


class DncLists:
    """The lists of a directory, for lookups (the resolver's gate) and the CLI."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._stores: dict[str, DncStore] = {}
        self._signatures: dict[str, tuple[int, int, int]] = {}
        self._next_check = clock() + refresh_seconds

    def get(self, name: str) -> DncList:
        """The list `name` of this directory (it may not exist yet)."""
        return DncList(self.directory, name)

    def names(self) -> list[str]:
        """The lists present in the directory, sorted."""
        if not self.directory.is_dir():
            return []
        found = (path.name[: -len(_SUFFIX)] for path in self.directory.glob(f"*{_SUFFIX}"))
        return sorted(name for name in found if _NAME.fullmatch(name))

    def check_names(self, names: Iterable[str]) -> None:
        """At start-up: every named list exists and opens (ConfigurationError naming
        the list, the directory and the command that creates it otherwise)."""
        for name in names:
            self._load(name)

    def _load(self, name: str) -> DncStore:
        store = DncList(self.directory, name).open()
        stat = os.stat(store.path)
        self._stores[name] = store
        self._signatures[name] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        return store

    def first_hit(self, e164: str, names: Sequence[str]) -> str | None:
        """The first of `names` whose list holds `e164`, or None (also for a number
        outside the NANP: no US list holds it)."""
        now = self._clock()
        if now >= self._next_check:
            self.refresh(now)
        digits = e164[2:] if type(e164) is str and len(e164) == 12 else ""
        if digits and e164[:2] == "+1" and digits.isascii() and digits.isdigit():
            # E.164, the gate's case, inline: this runs before every dial.
            code, subscriber = divmod(int(digits), 10_000_000)
        else:
            parts = split_nanp(e164) if isinstance(e164, str) else None
            if parts is None:
                return None
            code, subscriber = parts
        stores = self._stores
        for name in names:
            store = stores.get(name)
            if store is None:
                store = self._load(name)
            if store.has(code, subscriber):
                return name
        return None

    def hits(self, e164: str, names: Sequence[str] | None = None) -> list[str]:
        """Every list (of `names`, default all in the directory) holding `e164`."""
        found = []
        for name in self.names() if names is None else names:
            if self.first_hit(e164, [name]) is not None:
                found.append(name)
        return found

    def refresh(self, now: float | None = None) -> None:
        """Reopen the lists whose files were replaced (one stat per list). A list
        whose file went missing or cannot be read keeps its last good version, and
        says so in the log; unless the file was changed in place and no longer
        opens: then the version loaded is no longer there to keep (its map reads the
        changed file, and past a shorter file's end a read is SIGBUS), so it is
        dropped and the next lookup of the list raises until the file is good."""
        self._next_check = (self._clock() if now is None else now) + self.refresh_seconds
        for name, store in list(self._stores.items()):
            signature = self._signatures[name]
            try:
                stat = os.stat(store.path)
                signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                if signature == self._signatures[name]:
                    continue
                fresh = DncStore(store.path)
            except (OSError, ConfigurationError) as error:
                ino, size, _ = self._signatures[name]
                if signature[0] == ino and signature[1] != size:
                    log.error(
                        "do-not-call list %r was changed in place and cannot be read (%s); "
                        "replace it by rename (predial dnc import, or mv)",
                        name,
                        error,
                    )
                    del self._stores[name], self._signatures[name]
                    continue
                log.warning(
                    "do-not-call list %r: keeping the version loaded before (%s)", name, error
                )
                continue
            self._stores[name] = fresh
            self._signatures[name] = signature
            # The old map is not closed: another thread may be bisecting it; it goes
            # when the last reference does.

    def close(self) -> None:
        stores, self._stores = self._stores, {}
        for store in stores.values():
            store.close()
