"""A do-not-call list at registry scale: ~4 bytes per number, a lookup in microseconds.

The National Do Not Call Registry holds ~250 million 10-digit numbers; a Python set
of ints costs ~70 bytes each. A NANP number is an area code (3 digits) and 7 more
(< 10**7, which fits 32 bits), so a list is stored as one sorted array of unsigned
32-bit subscriber numbers per area code, behind an index of the 1,000 area codes, in
one file read through `mmap` (the page cache holds it; processes share it). Each area
code's array starts with 1,001 positions, where each exchange (the next 3 digits)
starts: a lookup is a binary search over one exchange's numbers (`bisect` on a
memoryview: C speed, ~4 steps instead of ~14).

File (little-endian): `PDNCv3\\0\\0`, generation u64, metadata offset u64, metadata
length u32, reserved u32; then 1,000 × (offset u64, count u32); then per area code
with numbers: 1,001 u32 exchange starts, then its sorted u32 numbers; then the
metadata as JSON (when it was written, by which import). A file is only ever
replaced whole (written beside it, fsynced, renamed), so a reader's mmap always sees
one complete version. It is written read-only (0o444): a file changed in place (`cp`
over it, `> list.pdnc`) would be shorter than a running reader's map, and touching
a page past its end kills that process (SIGBUS); a `cp` over a read-only file fails
instead (for anyone but root), while a rename is allowed.
"""

from __future__ import annotations

import array
import bisect
import json
import mmap
import os
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

from ..errors import ConfigurationError

__all__ = ["AREA_CODES", "Block", "DncStore", "split_nanp", "write_store"]

_MAGIC = b"PDNCv3\0\0"
_PREFIX = struct.Struct("<QQII")  # generation, metadata offset, metadata length, reserved
_EXCHANGES = 1001
_ENTRY = struct.Struct("<QI")
_INDEX = len(_MAGIC) + _PREFIX.size
_HEADER = _INDEX + 1000 * _ENTRY.size
#: Area codes 000-999 (000-199 are never assigned; they stay empty).
AREA_CODES = range(1000)

#: What a writer gives for an area code: nothing (empty), sorted distinct subscriber
#: numbers, or an existing file's raw block (exchange starts + numbers) copied as is.
Block: TypeAlias = "array.array[int] | memoryview | None"


def split_nanp(number: str) -> tuple[int, int] | None:
    """`+12025550123`, `12025550123` or `2025550123` → (202, 5550123); anything else
    (another country, a malformed string) → None."""
    if number.startswith("+"):
        if len(number) != 12 or number[1] != "1":
            return None  # E.164 of another country, or of the wrong length
        digits = number[2:]
    else:
        digits = number[1:] if len(number) == 11 and number[0] == "1" else number
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return None
    return int(digits[:3]), int(digits[3:])


class DncStore:
    """One list, opened read-only from its file (mapped, shared with every other
    process that reads it). A replaced file is not seen: open it again."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            file = open(self.path, "rb")  # noqa: SIM115 (closed just below)
        except OSError as error:
            raise ConfigurationError(
                f"do-not-call list file {self.path} cannot be read "
                f"({error.strerror or error}); check that it is a list file you may read"
            ) from None
        with file:
            size = os.fstat(file.fileno()).st_size
            if size < _HEADER:
                raise ConfigurationError(self._corrupt("too short"))
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        if self._map[: len(_MAGIC)] != _MAGIC:
            self._map.close()
            raise ConfigurationError(self._corrupt("not a predial do-not-call list"))
        self.generation, meta_at, meta_len, _ = _PREFIX.unpack_from(self._map, len(_MAGIC))
        try:
            meta = json.loads(bytes(self._map[meta_at : meta_at + meta_len]) or b"{}")
        except ValueError:
            meta = None
        self.meta: dict[str, Any] = meta if isinstance(meta, dict) else {}
        entries = [
            _ENTRY.unpack_from(self._map, _INDEX + code * _ENTRY.size) for code in AREA_CODES
        ]
        for code, (offset, count) in enumerate(entries):
            if count and (offset < _HEADER or offset + 4 * (_EXCHANGES + count) > size):
                self._map.close()  # checked before any view of it exists
                raise ConfigurationError(self._corrupt(f"area code {code:03d} out of range"))
        view = memoryview(self._map)
        self._slices: list[tuple[memoryview, memoryview] | None] = []
        self._raw: list[tuple[int, int] | None] = []
        self.count = 0
        for code, (offset, count) in enumerate(entries):
            if count:
                end = offset + 4 * (_EXCHANGES + count)
                words = view[offset:end].cast("I")
                starts = words[:_EXCHANGES].tolist()
                # A lookup bisects between two starts: out of order or past the
                # block, it would read another area code's numbers or raise. Checked
                # in C (sorting a sorted list is one pass): ~10 ms for every code.
                if starts[0] != 0 or starts[-1] != count or starts != sorted(starts):
                    del words, view
                    self._slices = []
                    self._map.close()
                    raise ConfigurationError(
                        self._corrupt(f"area code {code:03d}'s exchange index out of order")
                    )
                self._slices.append((words[:_EXCHANGES], words[_EXCHANGES:]))
                self._raw.append((offset, end))
            else:
                self._slices.append(None)
                self._raw.append(None)
            self.count += count

    def _corrupt(self, why: str) -> str:
        return (
            f"do-not-call list file {self.path} is damaged ({why}): re-import it "
            "(predial dnc import) or delete the file"
        )

    def __contains__(self, number: object) -> bool:
        parts = split_nanp(number) if isinstance(number, str) else None
        return parts is not None and self.has(parts[0], parts[1])

    def has(self, area_code: int, subscriber: int) -> bool:
        """Whether (202, 5550123) is listed. Never raises: a block damaged after the
        file was opened (changed in place) answers True, as a refusal fails closed."""
        found = self._slices[area_code] if 0 <= area_code < 1000 else None
        if found is None or not 0 <= subscriber < 10_000_000:
            return False
        exchanges, numbers = found
        exchange = subscriber // 10_000
        end = exchanges[exchange + 1]
        try:
            index = bisect.bisect_left(numbers, subscriber, exchanges[exchange], end)
            return index < end and numbers[index] == subscriber
        except IndexError:  # checked at open: only an in-place change gets here
            return True

    def numbers(self, area_code: int) -> memoryview:
        """The area code's sorted subscriber numbers (a view into the file)."""
        found = self._slices[area_code]
        return found[1] if found is not None else memoryview(array.array("I"))

    def block(self, area_code: int) -> memoryview | None:
        """The area code's raw block, for a writer that copies it unchanged."""
        span = self._raw[area_code]
        return None if span is None else memoryview(self._map)[span[0] : span[1]]

    def counts(self) -> dict[int, int]:
        """Numbers per area code, for the area codes that have any."""
        return {code: len(found[1]) for code, found in enumerate(self._slices) if found}

    def __iter__(self) -> Iterator[str]:
        """Every number as E.164, in order."""
        for code, found in enumerate(self._slices):
            if found is not None:
                for subscriber in found[1]:
                    yield f"+1{code:03d}{subscriber:07d}"

    @property
    def size(self) -> int:
        return len(self._map)

    def close(self) -> None:
        self._slices = []
        self._raw = []
        self._map.close()

    def __enter__(self) -> DncStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def build(
        cls,
        path: str | os.PathLike[str],
        numbers: Iterable[str],
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Write the list of `numbers` (10-digit, any of split_nanp's forms; others
        ignored) to `path` atomically; returns how many distinct numbers it holds.
        Holds every number in memory (4 bytes each): for big files use the
        streaming import (`predial.compliance._dnc_import`)."""
        buckets: dict[int, array.array[int]] = {}
        for number in numbers:
            parts = split_nanp(number.strip())
            if parts is not None:
                buckets.setdefault(parts[0], array.array("I")).append(parts[1])

        def block(code: int) -> Block:
            found = buckets.pop(code, None)
            return None if found is None else array.array("I", sorted(set(found)))

        return write_store(path, block, meta=meta)


def _starts(ordered: array.array[int]) -> array.array[int]:
    """Where each exchange's numbers start in `ordered` (1,001 positions): bisects
    in C rather than a Python loop over the numbers."""
    return array.array(
        "I", (bisect.bisect_left(ordered, exchange * 10_000) for exchange in range(_EXCHANGES))
    )


def write_store(
    path: str | os.PathLike[str],
    block_for: Callable[[int], Block],
    *,
    generation: int = 1,
    meta: dict[str, Any] | Callable[[int], dict[str, Any]] | None = None,
) -> int:
    """Write a list file, asking `block_for(code)` for each area code in order (so a
    caller sorts one area code at a time), atomically (`meta` may be a function of
    the count, written last): a `.partial` file beside it,
    fsynced, renamed over `path`. Returns how many numbers it holds."""
    if sys.byteorder != "little":  # the file is read in place as native words
        raise RuntimeError("predial's do-not-call store needs a little-endian machine")
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    total = 0
    try:
        with open(partial, "wb") as out:
            out.write(bytes(_HEADER))
            entries = []
            for code in AREA_CODES:
                found = block_for(code)
                if found is None or len(found) == 0:
                    entries.append((0, 0))
                    continue
                offset = out.tell()
                if isinstance(found, memoryview):
                    raw = found.cast("B") if found.format != "B" else found
                    count = len(raw) // 4 - _EXCHANGES
                    out.write(raw)
                else:
                    count = len(found)
                    _starts(found).tofile(out)
                    found.tofile(out)
                entries.append((offset, count))
                total += count
            meta_at = out.tell()
            meta = meta(total) if callable(meta) else meta
            body = json.dumps(meta or {}, sort_keys=True).encode()
            out.write(body)
            out.seek(0)
            out.write(_MAGIC + _PREFIX.pack(generation, meta_at, len(body), 0))
            for offset, count in entries:
                out.write(_ENTRY.pack(offset, count))
            out.flush()
            # Read-only, so a `cp` over it fails rather than changing a mapped file
            # in place (see the module's docstring); a rename is still allowed.
            os.fchmod(out.fileno(), 0o444)
            os.fsync(out.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return total
