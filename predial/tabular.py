"""Reading the files operators actually have: CSV exports and JSON Lines.

CSV: a UTF-8 byte-order mark (Excel) is dropped, the delimiter is sniffed among
`, ; TAB |` (comma when the sample is ambiguous), quoted fields may hold newlines,
and `row.line` is the line the record starts on, for error messages. Files that
are not UTF-8 are read as cp1252 (Excel's other export) rather than refused.
JSONL: one JSON object per line; blank lines are skipped.

Problems with the file as a whole raise `InputFileError`; problems with one row are
the caller's to report against `row.line`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import InputFileError

__all__ = ["Row", "TableFormat", "read_header", "read_rows", "table_format"]

TableFormat = Literal["csv", "jsonl"]

_DELIMITERS = ",;\t|"
_SAMPLE = 64 * 1024

# Spreadsheet cells can be large, but a 10 MB "field" is a broken file, not data.
csv.field_size_limit(10 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class Row:
    """One record: its 1-based line number in the file and its fields."""

    line: int
    fields: dict[str, Any]


def table_format(path: str | os.PathLike[str]) -> TableFormat:
    """`jsonl` for `.jsonl`/`.ndjson`/`.json` files, else `csv`."""
    suffix = Path(path).suffix.lower()
    return "jsonl" if suffix in (".jsonl", ".ndjson", ".json") else "csv"


def _open_text(path: Path) -> io.TextIOWrapper:
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a file") from None
    except OSError as error:
        raise InputFileError(f"{path}: cannot be read: {error.strerror or error}") from None
    head = raw.read(_SAMPLE)
    raw.seek(0)
    if b"\x00" in head:
        raw.close()
        raise InputFileError(f"{path}: looks like a binary file, not CSV or JSON Lines")
    encoding = "utf-8-sig"
    try:
        head.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # A cut multi-byte character at the sample's end is not an encoding problem.
        if error.start < len(head) - 4:
            encoding = "cp1252"
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
    except csv.Error:
        return csv.excel


def read_header(path: str | os.PathLike[str]) -> list[str]:
    """The column names of a CSV file (the keys of the first object for JSONL)."""
    for row in read_rows(path):
        return list(row.fields)
    return []


def read_rows(path: str | os.PathLike[str]) -> Iterator[Row]:
    """Yield the file's records one by one (memory stays flat for huge files)."""
    file = Path(path)
    if table_format(file) == "jsonl":
        yield from _read_jsonl(file)
    else:
        yield from _read_csv(file)


def _read_csv(path: Path) -> Iterator[Row]:
    with _open_text(path) as text:
        sample = text.read(_SAMPLE)
        text.seek(0)
        reader = csv.reader(text, _dialect(sample))
        try:
            header = next(reader, None)
        except csv.Error as error:
            raise InputFileError(f"{path}: unreadable CSV header: {error}") from None
        if header is None:
            return
        names = [name.strip() for name in header]
        if not any(names):
            raise InputFileError(f"{path}: the first line must name the columns")
        duplicates = sorted({name for name in names if name and names.count(name) > 1})
        if duplicates:
            raise InputFileError(f"{path}: duplicate column names: {', '.join(duplicates)}")
        while True:
            line = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise InputFileError(f"{path}: line {line}: unreadable CSV: {error}") from None
            if not any(value.strip() for value in values):
                continue  # blank line
            fields: dict[str, Any] = {
                name: values[i] if i < len(values) else "" for i, name in enumerate(names)
            }
            if len(values) > len(names):
                fields["__extra__"] = values[len(names) :]
            yield Row(line, fields)


def _read_jsonl(path: Path) -> Iterator[Row]:
    with _open_text(path) as text:
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                yield Row(number, {"__error__": f"invalid JSON: {error.msg}"})
                continue
            if not isinstance(value, dict):
                yield Row(number, {"__error__": "each line must be a JSON object"})
                continue
            yield Row(number, value)
