"""Reading the files operators actually have: CSV exports and JSON Lines.

Encoding (`detect_encoding`, which every reader uses): an `encoding` the caller
names wins. Otherwise a UTF-8 byte-order mark (Excel) means UTF-8 and is dropped; a
UTF-16 one (Excel's "Unicode text") means UTF-16; else the whole file is scanned:
valid UTF-8 throughout is UTF-8. A file that is not valid UTF-8 but holds at least
one valid multi-byte UTF-8 character is UTF-8 with some bad bytes, and only the rows
holding them are rejected. Only a file with no valid multi-byte UTF-8 character at
all, every non-ASCII byte invalid as UTF-8 (the mark of a single-byte legacy
encoding), is read as cp1252, with a warning. Nothing is ever guessed from a prefix.

Decoding is strict per row: a byte that is not valid in the file's encoding becomes
a lone surrogate (U+DC00 + byte, as the `surrogateescape` handler does, extended to
bytes below 0x80, which UTF-16 or a CJK codec can hold in a bad sequence), reading
goes on, and the row holding it comes back as an error naming its line and the
byte. Such a row is never decoded into something else (no U+FFFD, no mojibake).
A NUL byte (U+0000), which no text holds, makes its row an error the same way,
wherever it is in the file.

Text, not binary: with an ASCII-compatible encoding (UTF-8, cp1252, ...), a file
whose first 64 KB hold a NUL in every other byte is UTF-16 without a byte-order
mark, refused with the `--encoding utf-16-le` (or `-be`) to pass; one whose first
64 KB are more than 1% control bytes (NULs included; tiny files 30%) is refused as
binary. A text file with a few NUL bytes is read, and only their rows are errors.
A U+FEFF left at the start of the first column name (a byte-order mark read with
an explicit `--encoding utf-16-le`, say) is dropped, whatever the encoding.

CSV: the delimiter is one of `, ; TAB |`: the first 20 records of the first 64 KB
are parsed with each, and the one giving the most columns consistently (the
header's count in at least 80% of those records) wins; comma when none gives more
than one column, or on a tie. Quoting is always the csv module's `excel` dialect
(`"` quotes, a doubled quote in a quoted field is one quote). Quoted fields may
hold newlines, and `row.line` is the line the record starts on. A field over 10 MB,
or any other record the csv module cannot read, is one row error; reading resumes
after the record's end. Duplicate column names are refused.
JSONL: one JSON object per line (lines end with `\\n`); blank lines are skipped. A
file whose lines end with a carriage return only is refused as a whole. A line
over 10 MB is consumed without being held and is one row error, as are invalid
JSON, numbers over Python's 4300-digit limit, nesting past the parser's depth, and
`\\uD800`-style escapes of half a character.

A row that cannot be read is `Row(line, {"__error__": reason}, raw)`: `raw` is what
could be read of its values, for a report (a row with a bad or NUL byte: its
fields, each bad byte as its lone surrogate), or None when the record could not be
parsed at all (a 10 MB field, invalid JSON). Problems with the file as a whole
(missing, binary, UTF-16 without a mark, an unreadable header) raise
`InputFileError`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from .errors import InputFileError

__all__ = [
    "FIELD_LIMIT",
    "Row",
    "TableFormat",
    "detect_encoding",
    "read_header",
    "read_rows",
    "table_format",
]

log = logging.getLogger(__name__)

TableFormat = Literal["csv", "jsonl"]

_DELIMITERS = ",;\t|"
_SAMPLE = 64 * 1024
#: Records parsed with each candidate delimiter to choose the file's.
_DETECT_RECORDS = 20
_CHUNK = 1 << 20

#: Characters per CSV field and per JSON Lines line: spreadsheet cells can be large,
#: but a 10 MB "field" is a broken file, not data.
FIELD_LIMIT = 10 * 1024 * 1024
csv.field_size_limit(FIELD_LIMIT)

_BAD_BYTES = "predial.badbytes"


def _escape_bad_bytes(error: UnicodeError) -> tuple[str, int]:
    """`surrogateescape` for every byte: 0x41 in a bad UTF-16 sequence is U+DC41."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), error.end


codecs.register_error(_BAD_BYTES, _escape_bad_bytes)

# A byte the decoder could not take (see _escape_bad_bytes).
_ESCAPED = re.compile("[\udc00-\udcff]")
# What makes a line unreadable: a byte the decoder could not take, or a NUL.
_UNREADABLE = re.compile("[\x00\udc00-\udcff]")
# Control bytes no text file holds (tab, line ends, form feed and escape are text).
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b")
# A character that came from a valid multi-byte UTF-8 sequence.
_DECODED_NON_ASCII = re.compile("[^\x00-\x7f\udc00-\udcff]")
# A JSON escape of half a surrogate pair; json.loads joins whole pairs into one character.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16"}
# Files already warned about (path, size, mtime): a reader run twice warns once.
_warned: set[tuple[str, int, int]] = set()


@dataclass(frozen=True, slots=True)
class Row:
    """One record: its 1-based line number in the file and its fields; for a row
    that cannot be read (`fields == {"__error__": reason}`), `raw` holds what could
    be read of its values (a byte that did not decode as its lone surrogate,
    U+DC00 + byte; CSV values past the header under `__extra__`), or None."""

    line: int
    fields: dict[str, Any]
    raw: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class _Decoding:
    codec: str
    #: Every byte of the file decoded: rows need no check for bad bytes.
    clean: bool
    #: The text holds a NUL somewhere (or may: not known when not clean).
    nul: bool = True

    @property
    def check(self) -> bool:
        """Whether each line must be checked for bad bytes and NULs."""
        return not self.clean or self.nul


def table_format(path: str | os.PathLike[str]) -> TableFormat:
    """`jsonl` for `.jsonl`/`.ndjson`/`.json` files, else `csv`."""
    suffix = Path(path).suffix.lower()
    return "jsonl" if suffix in (".jsonl", ".ndjson", ".json") else "csv"


def detect_encoding(
    path: str | os.PathLike[str],
    encoding: str | None = None,
    *,
    notice: Callable[[str], None] | None = None,
) -> str:
    """The codec the readers use for `path` (see the module docstring): `encoding`
    if given (an unknown name is an `InputFileError` naming `--encoding`), else
    `utf-8-sig` (a UTF-8 byte-order mark), `utf-16` (a UTF-16 one), `utf-8`, or,
    only when no byte of the file is part of a valid multi-byte UTF-8 character,
    `cp1252`. That last choice is announced: `notice(text)` if given, else a
    logging warning from `predial._tabular`."""
    return _detect(Path(path), encoding, notice).codec


def _open_binary(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a file") from None
    except OSError as error:
        raise InputFileError(f"{path}: cannot be read: {error.strerror or error}") from None


def _lookup(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputFileError(
            f"--encoding {encoding}: unknown encoding (try utf-8, cp1252, latin-1 or utf-16)"
        ) from None


def _ascii_compatible(codec: str) -> bool:
    try:
        return b"\x00,a\n".decode(codec) == "\x00,a\n"
    except UnicodeDecodeError:
        return False


def _detect(
    path: Path, encoding: str | None, notice: Callable[[str], None] | None = None
) -> _Decoding:
    with _open_binary(path) as raw:
        try:
            head = raw.read(_SAMPLE)
            codec: str | None = None
            if encoding is not None:
                codec = _lookup(encoding)
                if codec == "utf-8" and head.startswith(codecs.BOM_UTF8):
                    codec = "utf-8-sig"  # a byte-order mark is not data
            elif head.startswith(codecs.BOM_UTF8):
                codec = "utf-8-sig"
            elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                codec = "utf-16"
            if _ascii_compatible(codec or "utf-8"):
                _check_text(path, head, codec)
            raw.seek(0)
            bad, multibyte, nul = _scan(raw, codec or "utf-8", stop_at_bad=codec is not None)
        except OSError as error:
            raise InputFileError(f"{path}: cannot be read: {error.strerror or error}") from None
    if codec is not None:
        return _Decoding(codec, clean=not bad, nul=nul)
    if not bad:
        return _Decoding("utf-8", clean=True, nul=nul)
    if multibyte:
        return _Decoding("utf-8", clean=False)
    _announce(path, notice)
    return _Decoding("cp1252", clean=False)


def _check_text(path: Path, head: bytes, codec: str | None) -> None:
    """Refuse a file an ASCII-compatible encoding cannot read as text: UTF-16 (a NUL
    in every other byte of the first 64 KB), or binary (many control bytes). A few
    NULs are left to the rows holding them."""
    if not head:
        return
    pairs = len(head) // 2
    if pairs >= 2 and b"\x00" in head:
        even, odd = head[0 : pairs * 2 : 2], head[1 : pairs * 2 : 2]
        order = None
        if _utf16_halves(high=odd, low=even):
            order = "le"
        elif _utf16_halves(high=even, low=odd):
            order = "be"
        if order is not None:
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise InputFileError(
                    f"{path}: is UTF-16 (it starts with a UTF-16 byte-order mark), not "
                    f"{codec}: pass --encoding utf-16, or none"
                )
            raise InputFileError(
                f"{path}: looks like UTF-16 without a byte-order mark (every other byte "
                f"is 0); pass --encoding utf-16-{order}"
            )
    controls = len(head) - len(head.translate(None, _CONTROL))
    if controls > len(head) * 0.3 or (controls > 8 and controls > len(head) / 100):
        raise InputFileError(f"{path}: looks like a binary file, not CSV or JSON Lines")


def _utf16_halves(high: bytes, low: bytes) -> bool:
    """Whether these are the high and low bytes of UTF-16 text that is mostly ASCII:
    many high bytes 0, hardly any low byte 0 or another control byte."""
    pairs = len(high)
    controls = len(low) - len(low.translate(None, _CONTROL))
    return high.count(0) >= pairs * 0.3 and controls <= pairs * 0.02


def _scan(raw: BinaryIO, codec: str, *, stop_at_bad: bool) -> tuple[bool, bool, bool]:
    """Decode the whole file once: (a byte was bad, a non-ASCII character decoded,
    a NUL decoded, or may have: True when a byte was bad).

    A strict pass first, at the decoder's own speed; only a file with a bad byte is
    read again to look for a valid multi-byte character (stopping at the first)."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    nul = False
    try:
        while chunk := raw.read(_CHUNK):
            nul = "\x00" in decoder.decode(chunk) or nul
        nul = "\x00" in decoder.decode(b"", True) or nul
        bad = False
    except UnicodeDecodeError:
        bad = True
    if not bad:
        return False, False, nul
    if stop_at_bad:
        return True, False, True
    raw.seek(0)
    decoder = codecs.getincrementaldecoder(codec)(_BAD_BYTES)
    final = False
    while not final:
        chunk = raw.read(_CHUNK)
        final = not chunk
        text = decoder.decode(chunk, final)
        if not text.isascii() and _DECODED_NON_ASCII.search(text):
            return True, True, True
    return True, False, True


def _announce(path: Path, notice: Callable[[str], None] | None) -> None:
    text = (
        f"{path}: read as cp1252: it is not UTF-8 and has no UTF-8 character in it; "
        "pass --encoding if it is in another encoding"
    )
    if notice is not None:
        notice(text)
        return
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = (str(path), -1, -1)
    if key not in _warned:
        if len(_warned) > 1000:
            _warned.clear()
        _warned.add(key)
        log.warning("%s", text)


def _bad_byte(text: str, codec: str, where: str = "") -> str:
    """Why a line holding a byte that did not decode, or a NUL, cannot be read."""
    match = _UNREADABLE.search(text)
    if match is not None and match.group() == "\x00":
        return f"a NUL byte (0x00{where}), which no text holds; remove it from the file"
    byte = ord(match.group()) - 0xDC00 if match else 0
    name = _NAMES.get(codec, codec)
    return (
        f"not valid {name} (byte 0x{byte:02X}{where}); "
        "re-save the file as UTF-8, or pass --encoding"
    )


def _open_text(
    path: Path, encoding: str | None, newline: str
) -> tuple[io.TextIOWrapper, _Decoding]:
    decoding = _detect(path, encoding)
    raw = _open_binary(path)
    text = io.TextIOWrapper(raw, encoding=decoding.codec, errors=_BAD_BYTES, newline=newline)
    return text, decoding


class _Comma(csv.excel):
    delimiter = ","


class _Semicolon(csv.excel):
    delimiter = ";"


class _Tab(csv.excel):
    delimiter = "\t"


class _Pipe(csv.excel):
    delimiter = "|"


#: The dialects a CSV file may have: excel's quoting (a doubled quote in a quoted
#: field is one quote, no escape character), one of four delimiters.
_DIALECTS: dict[str, type[csv.Dialect]] = {
    dialect.delimiter: dialect for dialect in (_Comma, _Semicolon, _Tab, _Pipe)
}


def _dialect(sample: str, truncated: bool) -> type[csv.Dialect]:
    """The dialect of the file whose first characters are `sample` (`truncated`:
    the file goes on past it), in time linear in the sample.

    Each delimiter parses the first `_DETECT_RECORDS` records; it qualifies when the
    header has more than one column and at least 80% of the records have as many.
    The most columns wins; comma on a tie or when none qualifies. (csv.Sniffer took
    seconds on a quoted sample: its quote regexes backtrack.)"""
    best, best_width = ",", 1
    for delimiter in _DELIMITERS:
        widths = _widths(sample, delimiter, truncated)
        if not widths or widths[0] <= best_width:
            continue
        same = sum(1 for width in widths if width == widths[0])
        if same * 5 >= len(widths) * 4:
            best, best_width = delimiter, widths[0]
    return _DIALECTS[best]


def _widths(sample: str, delimiter: str, truncated: bool) -> list[int]:
    """The number of fields of each of the sample's first non-blank records."""
    widths: list[int] = []
    reader = csv.reader(io.StringIO(sample, newline=""), _DIALECTS[delimiter])
    try:
        for record in reader:
            if record:
                widths.append(len(record))
                if len(widths) > _DETECT_RECORDS:
                    return widths[:_DETECT_RECORDS]
    except csv.Error:
        pass  # a record this delimiter cannot parse: judge by those before it
    if truncated and len(widths) > 1:
        widths.pop()  # cut by the sample's end
    return widths


def read_header(path: str | os.PathLike[str], encoding: str | None = None) -> list[str]:
    """The column names of a CSV file (the keys of the first object for JSONL)."""
    file = Path(path)
    if table_format(file) == "csv":
        with _Csv(file, encoding) as table:
            return table.names
    for row in _read_jsonl(file, encoding):
        if "__error__" not in row.fields:
            return list(row.fields)
    return []


def read_rows(
    path: str | os.PathLike[str],
    encoding: str | None = None,
    *,
    on_blank: Callable[[int], None] | None = None,
) -> Iterator[Row]:
    """Yield the file's records one by one (memory stays flat for huge files).

    Blank records (an empty line; a CSV record whose values are all blank, such as
    `,,,`) are skipped; `on_blank(line)` is called for each, so a report can count
    them."""
    file = Path(path)
    if table_format(file) == "jsonl":
        yield from _read_jsonl(file, encoding, on_blank)
    else:
        with _Csv(file, encoding) as table:
            yield from table.rows(on_blank)


class _Lines:
    """The text's lines as csv.reader takes them (`feed()`), counted here (csv's own
    count misses the lines skipped after an error) and the last one kept, so that a
    record the reader gave up on can be followed to its end."""

    __slots__ = ("bad", "check", "count", "last", "text")

    def __init__(self, text: io.TextIOWrapper, check: bool) -> None:
        self.text = text
        self.check = check
        self.count = 0
        self.last = ""
        #: The first line since the last reset holding a byte that did not decode.
        self.bad: str | None = None

    def feed(self) -> Iterator[str]:
        # A generator, not __next__: this runs for every line of every file.
        check = self.check
        for line in self.text:
            self.count += 1
            self.last = line
            if (
                check
                and self.bad is None
                and ("\x00" in line or (not line.isascii() and _ESCAPED.search(line)))
            ):
                self.bad = line
            yield line


class _Csv:
    """An open CSV file: its dialect and header read, its records to come."""

    def __init__(self, path: Path, encoding: str | None) -> None:
        self.path = path
        self.text, self.decoding = _open_text(path, encoding, newline="")
        try:
            sample = self.text.read(_SAMPLE)
            self.text.seek(0)
        except OSError as error:
            self.text.close()
            raise InputFileError(f"{path}: cannot be read: {error.strerror or error}") from None
        self.dialect = _dialect(sample, truncated=len(sample) == _SAMPLE)
        self.lines = _Lines(self.text, check=self.decoding.check)
        self.feed = self.lines.feed()
        self.reader = csv.reader(self.feed, self.dialect)
        try:
            self.names = self._header()
        except BaseException:
            self.text.close()
            raise

    def __enter__(self) -> _Csv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.text.close()

    def _header(self) -> list[str]:
        path = self.path
        try:
            header = next(self.reader, None)
        except csv.Error as error:
            raise InputFileError(f"{path}: unreadable CSV header: {error}") from None
        if header is None:
            return []
        if self.lines.bad is not None:
            reason = _bad_byte(self.lines.bad, self.decoding.codec)
            raise InputFileError(f"{path}: line 1 (the header): {reason}")
        if header:
            # A byte-order mark the codec kept (an explicit utf-16-le, say) is no name.
            header[0] = header[0].removeprefix("\ufeff")
        names = [name.strip() for name in header]
        if not any(names):
            raise InputFileError(f"{path}: the first line must name the columns")
        counts = Counter(names)
        duplicates = sorted(name for name, count in counts.items() if name and count > 1)
        if duplicates:
            raise InputFileError(f"{path}: duplicate column names: {', '.join(duplicates)}")
        return names

    def rows(self, on_blank: Callable[[int], None] | None = None) -> Iterator[Row]:
        names = self.names
        if not names:
            return
        lines = self.lines
        reader = self.reader
        codec = self.decoding.codec
        while True:
            line = lines.count + 1
            lines.bad = None
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                self._skip_record(line)
                yield Row(line, {"__error__": _csv_reason(error)})
                continue
            if lines.bad is not None:
                # The extra values of a row longer than the header have no column.
                found = (n for n, v in zip(names, values, strict=False) if _UNREADABLE.search(v))
                column = next(found, None)
                where = f" in column {column!r}" if column else ""
                reason = _bad_byte(lines.bad, codec, where)
                yield Row(line, {"__error__": reason}, raw=self._fields(values))
                continue
            if not any(value.strip() for value in values):
                if on_blank is not None:
                    on_blank(line)
                continue  # blank line
            yield Row(line, self._fields(values))

    def _fields(self, values: list[str]) -> dict[str, Any]:
        names = self.names
        fields: dict[str, Any] = {
            name: values[i] if i < len(values) else "" for i, name in enumerate(names)
        }
        if len(values) > len(names):
            fields["__extra__"] = values[len(names) :]
        return fields

    def _skip_record(self, start: int) -> None:
        """After a csv.Error, consume the rest of the record that began on line
        `start`: the reader starts afresh on the next line it is given, which may
        still be inside the record (a quoted field holding newlines).

        The record went on past its first line only from inside a quoted field, so
        the line the error came on starts inside one unless it is the first. That
        line is scanned again from its start, then the lines after it, until a line
        ends outside quotes."""
        lines = self.lines
        quoted = _ends_quoted(lines.last, lines.count > start, self.dialect)
        while quoted:
            following = next(self.feed, None)
            if following is None:
                return
            quoted = _ends_quoted(following, True, self.dialect)


def _csv_reason(error: csv.Error) -> str:
    if "field larger than field limit" in str(error):
        return f"a field longer than 10 MB ({FIELD_LIMIT:,} characters)"
    return f"unreadable CSV: {error}"


def _ends_quoted(line: str, quoted: bool, dialect: type[csv.Dialect] | csv.Dialect) -> bool:
    """Whether the csv module, reading `line` from inside a quoted field (`quoted`)
    or from a record's start, is inside a quoted field at the line's end: the
    non-strict state machine of CPython's _csv.c for the dialects `_dialect` gives
    (no escape character), reduced to quotes and delimiters."""
    quote = dialect.quotechar
    if not quote or dialect.quoting == csv.QUOTE_NONE:
        return False
    delimiter = dialect.delimiter
    position = 0
    field_start = not quoted
    while True:
        if quoted:
            found = line.find(quote, position)
            if found < 0:
                return True
            if dialect.doublequote and line.startswith(quote, found + 1):
                position = found + 2  # an escaped quote: still inside
                continue
            # The closing quote: what follows up to the delimiter is kept as text.
            quoted = False
            field_start = False
            position = found + 1
        if field_start:
            if dialect.skipinitialspace:
                while line.startswith(" ", position):
                    position += 1
            if line.startswith(quote, position):
                quoted = True
                position += 1
                continue
        found = line.find(delimiter, position)
        if found < 0:
            return False  # the line's end ends the record
        position = found + 1
        field_start = True


def _read_jsonl(
    path: Path, encoding: str | None, on_blank: Callable[[int], None] | None = None
) -> Iterator[Row]:
    # Lines end with "\n" only (the JSON Lines spec): a "\r" before it is whitespace.
    text, decoding = _open_text(path, encoding, newline="\n")
    check = decoding.check
    with text:
        number = 0
        while True:
            try:
                line = text.readline(FIELD_LIMIT + 1)
            except OSError as error:
                raise InputFileError(f"{path}: cannot be read: {error.strerror or error}") from None
            if not line:
                return
            number += 1
            if number == 1:
                line = line.removeprefix("\ufeff")  # a mark the codec kept is no JSON
                if not line.endswith("\n") and "\r" in line.rstrip():
                    raise InputFileError(
                        f"{path}: its lines end with a carriage return only (CR, as old Mac "
                        "files do): JSON Lines needs each line to end with a line feed (LF); "
                        "re-save it with Unix (LF) or Windows (CRLF) line ends"
                    )
            if len(line) > FIELD_LIMIT and not line.endswith("\n"):
                # Consumed to its end a megabyte at a time, never held whole.
                while (rest := text.readline(_CHUNK)) and not rest.endswith("\n"):
                    continue
                yield Row(number, {"__error__": "a line longer than 10 MB"})
                continue
            if not line.strip():
                if on_blank is not None:
                    on_blank(number)
                continue
            if check and ("\x00" in line or (not line.isascii() and _ESCAPED.search(line))):
                reason = _bad_byte(line, decoding.codec)
                yield Row(number, {"__error__": reason}, raw=_json_values(line))
                continue
            yield Row(number, _json_object(line))


def _json_values(line: str) -> dict[str, Any] | None:
    """What a line that cannot be taken as it is holds, for a report: its object
    (bad bytes as lone surrogates, control characters allowed), or None."""
    try:
        value = json.loads(line, strict=False)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _json_object(line: str) -> dict[str, Any]:
    """The line's object, or `{"__error__": reason}`."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        return {"__error__": f"invalid JSON: {error.msg}"}
    except ValueError as error:  # a number past the int conversion limit (4300 digits)
        return {"__error__": f"invalid JSON: {str(error).split(';')[0]}"}
    except RecursionError:
        return {"__error__": "invalid JSON: nested too deeply"}
    if not isinstance(value, dict):
        return {"__error__": "each line must be a JSON object"}
    if _SURROGATE_ESCAPE.search(line):
        half = _lone_surrogate(value)
        if half is not None:
            return {"__error__": f"invalid JSON: \\u{ord(half):04x} is half a character"}
    return value


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in a parsed JSON value's keys and strings (it
    cannot be sent, stored or written as UTF-8), found without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            match = _SURROGATE.search(item)
            if match:
                return match.group()
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None
