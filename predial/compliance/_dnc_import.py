"""Importing the FTC National Do Not Call Registry's downloads into a list file.

Full files (one 10-digit number per line, one file per area code; a line may carry
separators: `202-555-0123`, `202,5550123`, `"2025550123"`, a leading 1) replace the
area codes they hold; change lists (comma-delimited records: the number and an
addition/deletion flag, `A`/`D` or `add`/`delete`, in any order, maybe a date) add
and delete numbers, later records winning. Either way only the area codes a file
touches are rebuilt: every other area code's block is copied from the current file
byte for byte. `.gz` and `.zip` downloads are read as they are, and a UTF-8
byte-order mark at the start of a file is passed over.

Memory stays bounded: numbers are bucketed per area code (4 bytes each) and spilled
to temporary files beside the list past `buffer_numbers`; each area code is then
sorted on its own (the registry's largest area codes hold a few million numbers).
A change list's records are held in memory (they are small: a day's changes).
A line that cannot be read is counted, and the first few are reported with their
line numbers; it never stops the import.
"""

from __future__ import annotations

import array
import gzip
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from ..errors import InputFileError
from ._dnc_store import Block, DncStore, write_store

__all__ = [
    "BadLine",
    "DncImportReport",
    "import_files",
    "parse_change",
    "parse_number",
]

#: Bad lines reported one by one (the rest are counted).
SHOWN_BAD_LINES = 5
#: Numbers held in memory before they are spilled to disk (4 bytes each).
BUFFER_NUMBERS = 16_000_000
_BLOCK = 1 << 22
_BOM = b"\xef\xbb\xbf"

_SEPARATORS = str.maketrans("", "", " \t-.()/,\"'\r\n")
_FLAGS = {
    "A": True,
    "ADD": True,
    "ADDITION": True,
    "D": False,
    "DEL": False,
    "DELETE": False,
    "DELETION": False,
}
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}([ T].*)?|\d{1,2}/\d{1,2}/\d{2,4}.*|\d{8}")
#: A block of plain lines (the FTC's own format): parsed in C, not line by line.
_PLAIN = re.compile(rb"(?:[2-9]\d{9}\r?\n)*")


def parse_number(text: str) -> tuple[int, int]:
    """A full file's line → (area code, subscriber); ValueError says what is wrong."""
    digits = text.strip().translate(_SEPARATORS)
    if not digits:
        raise ValueError("no number")
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("not a 10-digit number")
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) != 10:
        raise ValueError(f"{len(digits)} digits, not 10")
    if digits[0] in "01":
        raise ValueError("not a NANP area code (starts with 0 or 1)")
    return int(digits[:3]), int(digits[3:])


def parse_change(text: str) -> tuple[bool, int, int]:
    """A change list's record → (True for an addition, area code, subscriber)."""
    fields = [part.strip().strip("\"'").strip() for part in re.split(r"[,\t|;]", text)]
    flags = [_FLAGS[part.upper()] for part in fields if part.upper() in _FLAGS]
    if len(flags) != 1:
        raise ValueError(
            "no addition/deletion flag (A or D)" if not flags else "more than one A/D flag"
        )
    rest = [part for part in fields if part and part.upper() not in _FLAGS]
    rest = [part for part in rest if not _DATE.fullmatch(part)]
    if not rest:
        raise ValueError("no number")
    number = rest[0]
    if len(number.translate(_SEPARATORS)) == 3 and len(rest) > 1:
        number += rest[1]  # area code and number in two fields
    area, subscriber = parse_number(number)
    return flags[0], area, subscriber


@dataclass(frozen=True)
class BadLine:
    file: str
    line: int
    reason: str


@dataclass
class DncImportReport:
    """What an import did: records read, bad lines (the first few with their line
    numbers), the area codes rebuilt, and the list's size after."""

    kind: str  # "full" or "changes"
    files: list[str]
    records: int = 0
    additions: int = 0
    deletions: int = 0
    bad: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    area_codes: list[int] = field(default_factory=list)
    total: int = 0
    seconds: float = 0.0

    def as_meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "files": [Path(name).name for name in self.files],
            "records": self.records,
            "additions": self.additions,
            "deletions": self.deletions,
            "bad": self.bad,
            "area_codes": len(self.area_codes),
            "total": self.total,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


class _Buckets:
    """Subscriber numbers per area code, spilled to files past `limit` numbers."""

    def __init__(self, spill_dir: Path, limit: int) -> None:
        self.spill_dir = spill_dir
        self.limit = limit
        self.memory: dict[int, array.array[int]] = {}
        self.held = 0
        self.spilled: set[int] = set()

    def extend(self, code: int, subscribers: array.array[int]) -> None:
        bucket = self.memory.get(code)
        if bucket is None:
            self.memory[code] = bucket = array.array("I")
        bucket.extend(subscribers)
        self.held += len(subscribers)
        if self.held >= self.limit:
            self.spill()

    def append(self, code: int, subscriber: int) -> None:
        bucket = self.memory.get(code)
        if bucket is None:
            self.memory[code] = bucket = array.array("I")
        bucket.append(subscriber)
        self.held += 1
        if self.held >= self.limit:
            self.spill()

    def spill(self) -> None:
        for code, bucket in self.memory.items():
            with open(self.spill_dir / f"{code:03d}", "ab") as out:
                bucket.tofile(out)
            self.spilled.add(code)
        self.memory = {}
        self.held = 0

    def codes(self) -> set[int]:
        return set(self.memory) | self.spilled

    def take(self, code: int) -> array.array[int]:
        found = array.array("I")
        if code in self.spilled:
            spilled = self.spill_dir / f"{code:03d}"
            found.frombytes(spilled.read_bytes())
            spilled.unlink()
        found.extend(self.memory.pop(code, array.array("I")))
        return found


def _open_texts(path: Path, stack: ExitStack) -> Iterator[tuple[str, IO[bytes], IO[bytes]]]:
    """(name, binary stream of lines, the raw file whose position is the progress)."""
    try:
        raw = stack.enter_context(open(path, "rb"))  # noqa: SIM115 (closed by the stack)
    except OSError as error:
        raise InputFileError(
            f"{path}: cannot be read ({error.strerror or error}); check the path"
        ) from None
    head = raw.read(4)
    raw.seek(0)
    if head[:2] == b"\x1f\x8b":
        unpacked = gzip.GzipFile(fileobj=raw)
        stack.callback(unpacked.close)
        yield str(path), cast(IO[bytes], unpacked), raw
    elif head == b"PK\x03\x04":
        archive = stack.enter_context(zipfile.ZipFile(raw))
        for member in archive.infolist():
            if not member.is_dir():
                yield f"{path}:{member.filename}", stack.enter_context(archive.open(member)), raw
    else:
        yield str(path), raw, raw


def _blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """Whole lines, ~4 MB at a time, the last one ending with a newline; without the
    UTF-8 byte-order mark a Windows export may start with (else the first number
    would be a bad line)."""
    carry = stream.read(len(_BOM))
    if carry == _BOM:
        carry = b""
    while True:
        chunk = stream.read(_BLOCK)
        if not chunk:
            if carry:
                yield carry if carry.endswith(b"\n") else carry + b"\n"
            return
        chunk = carry + chunk
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:
            carry = chunk
            continue
        carry = chunk[cut:]
        yield chunk[:cut]


def _rebuild_area(
    code: int,
    existing: memoryview | None,
    replacement: array.array[int] | None,
    changes: dict[int, bool] | None,
) -> array.array[int]:
    """An area code's new sorted, distinct numbers: a full file's `replacement`, or
    the `existing` numbers with `changes` (subscriber → added?) applied."""
    if replacement is not None:
        return array.array("I", sorted(set(replacement)))
    numbers = set(existing) if existing is not None else set()
    for subscriber, added in (changes or {}).items():
        if added:
            numbers.add(subscriber)
        else:
            numbers.discard(subscriber)
    return array.array("I", sorted(numbers))


def import_files(
    target: str | os.PathLike[str],
    files: Sequence[str | os.PathLike[str]],
    *,
    changes: bool = False,
    progress: Callable[[int, int], None] | None = None,
    buffer_numbers: int = BUFFER_NUMBERS,
    meta: dict[str, Any] | None = None,
) -> DncImportReport:
    """Import FTC full files (each replaces the area codes it holds) or, with
    `changes`, change lists, into the list file `target` (created if missing),
    atomically. `progress(bytes_read, bytes_total)` is called as files are read.
    The caller holds the list's write lock."""
    started = datetime.now(UTC)
    paths = [Path(name) for name in files]
    for path in paths:
        if path.is_dir():
            raise InputFileError(f"{path} is a directory; give the registry's download files")
    report = DncImportReport("changes" if changes else "full", [str(path) for path in paths])
    target = Path(target)
    total_bytes = sum(path.stat().st_size for path in paths if path.exists())
    done_bytes = 0
    edits: dict[int, dict[int, bool]] = {}
    with tempfile.TemporaryDirectory(prefix=".dnc-import-", dir=target.parent) as spill:
        buckets = _Buckets(Path(spill), buffer_numbers)

        def bad(name: str, line: int, reason: str) -> None:
            report.bad += 1
            if len(report.bad_lines) < SHOWN_BAD_LINES:
                report.bad_lines.append(BadLine(name, line, reason))

        for path in paths:
            with ExitStack() as stack:
                for name, stream, raw in _open_texts(path, stack):
                    line_no = 0
                    for block in _blocks(stream):
                        if not changes and _PLAIN.fullmatch(block):
                            line_no += block.count(b"\n")
                            report.records += _plain_block(block, buckets)
                        else:
                            for text in block.split(b"\n")[:-1]:
                                line_no += 1
                                line = text.decode("latin-1")
                                if not line.strip():
                                    continue
                                if line_no == 1 and not any(c.isdigit() for c in line):
                                    continue  # a header row
                                try:
                                    if changes:
                                        added, code, subscriber = parse_change(line)
                                        edits.setdefault(code, {})[subscriber] = added
                                        report.additions += added
                                        report.deletions += not added
                                    else:
                                        code, subscriber = parse_number(line)
                                        buckets.append(code, subscriber)
                                    report.records += 1
                                except ValueError as error:
                                    why = str(error)
                                    if not changes and _looks_like_change(line):
                                        why = "a change-list record; import those with --changes"
                                    bad(name, line_no, why)
                        if progress is not None:
                            progress(done_bytes + raw.tell(), total_bytes)
            done_bytes += path.stat().st_size

        old = DncStore(target) if target.exists() else None
        try:
            touched = set(edits) if changes else buckets.codes()
            report.area_codes = sorted(touched)

            def block_for(code: int) -> Block:
                if code not in touched:
                    return old.block(code) if old is not None else None
                existing = old.numbers(code) if old is not None else None
                if changes:
                    return _rebuild_area(code, existing, None, edits.pop(code))
                return _rebuild_area(code, existing, buckets.take(code), None)

            def meta_for(total: int) -> dict[str, Any]:
                report.total = total
                record = {**(meta or {}), **report.as_meta()}
                kept = old.meta if old is not None else {}
                return {**kept, "written_at": record["at"], "last_import": record}

            report.total = write_store(
                target,
                block_for,
                generation=(old.generation + 1) if old is not None else 1,
                meta=meta_for,
            )
        finally:
            if old is not None:
                old.close()
    if not changes:
        report.additions = report.records
    report.seconds = (datetime.now(UTC) - started).total_seconds()
    return report


def _looks_like_change(line: str) -> bool:
    return any(part.strip().strip("\"'").upper() in _FLAGS for part in line.split(","))


def _plain_block(block: bytes, buckets: _Buckets) -> int:
    """A block of plain 10-digit lines, parsed in C: the FTC's full files hold one
    area code each, so the block usually splits on its newline-and-area-code."""
    lines = block.count(b"\n")
    if not lines:
        return 0
    code = block[:3]
    if block.count(b"\n" + code) == lines - 1:
        buckets.extend(int(code), array.array("I", map(int, block[3:].split(b"\n" + code))))
        return lines
    for value in map(int, block.split()):
        buckets.append(value // 10_000_000, value % 10_000_000)
    return lines
