"""Presenting results: masking, consoles, summaries."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._faults import is_adapter_fault, safe_flag, safe_repr, safe_text, type_name
from .._models import CrmContact, CrmPhone, Resolution
from .._phone import mask_phone
from .._redaction import redact
from ..errors import Unresolvable

__all__ = [
    "FitColumn",
    "Masker",
    "err_console",
    "fitted_table",
    "json_line",
    "least_width",
    "out_console",
    "percentile_ms",
    "print_records",
    "print_summary",
    "print_words",
    "reported_by_the_command",
    "summary_phrases",
    "summary_text",
    "table_width",
    "wrapped_phrases",
    "wrapped_words",
]


# No emoji codes: what is printed quotes files, keys and adapters' messages, where
# `:x:` (a TOML key, `root:x:0` of /etc/passwd) is text, not ❌.


def out_console() -> Console:
    # Piped output keeps whole rows (rich would wrap at 80 columns), unless COLUMNS
    # says how wide the reader is.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(soft_wrap=False, highlight=False, emoji=False, width=width)


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)


class Masker:
    """Masks phone numbers in everything shown, unless `--show-numbers`; redacts
    credentials always. Never raises on what an adapter returned."""

    #: Phones of one contact listed in a description; the rest are counted.
    shown_phones = 10

    def __init__(self, show_numbers: bool) -> None:
        self.show = show_numbers

    def number(self, value: object) -> str:
        if value is None:
            return ""
        if self.show:
            return redact(value, show_numbers=True, limit=200)
        return mask_phone(value)

    def text(self, value: object) -> str:
        """Free text from an adapter or a CRM: credentials always redacted, numbers
        masked unless `--show-numbers` (`predial._redaction.redact`)."""
        return redact(value, show_numbers=self.show, limit=1000)

    def raw(self, value: object) -> str:
        """An adapter's raw answer, described with its numbers masked."""
        try:
            return self._raw(value)
        except BaseException as error:
            if not is_adapter_fault(error):
                raise
            return f"{type_name(value)} (cannot be shown: {type(error).__name__})"

    def _raw(self, value: object) -> str:
        if isinstance(value, CrmContact):
            return f"CrmContact: {self._phones(value.phones)}{self._flags(value)}"
        if isinstance(value, str):
            return repr(self.number(value))
        if value is None:
            return "None"
        shown = redact(safe_repr(value), show_numbers=self.show, limit=200)
        return self.text(f"{type_name(value)}: {shown}")

    def _phones(self, phones: object) -> str:
        try:
            if not isinstance(phones, Iterable):
                raise TypeError
            listed = list(islice(phones, self.shown_phones + 1))
        except BaseException as error:
            if not is_adapter_fault(error):
                raise
            return f"phones: {type_name(phones)} (not a list of phones)"
        if not listed:
            return "no phones"
        described = ", ".join(self._phone(phone) for phone in listed[: self.shown_phones])
        if len(listed) > self.shown_phones:
            described += ", and more"
        return described

    def _phone(self, phone: object) -> str:
        if not isinstance(phone, CrmPhone):
            return f"{type_name(phone)} (not a CrmPhone)"
        label = f"{self.text(phone.label)}: " if phone.label is not None else ""
        primary = " (primary)" if safe_flag(phone.primary) else ""
        return f"{label}{self.number(phone.value)}{primary}"

    def _flags(self, contact: CrmContact) -> str:
        flags = []
        do_not_call = safe_flag(contact.do_not_call)
        if do_not_call is None:
            flags.append("do-not-call unreadable")
        elif do_not_call:
            flags.append("do-not-call")
        state = safe_text(contact.state)
        if state != "active":
            flags.append(self.text(state))
        return f" [{', '.join(flags)}]" if flags else ""


@dataclass
class FitColumn:
    """A column of a table fitted to the terminal (`fitted_table`): its cells stay on
    one line each (a wrapping column's break between words); a cell wider than a
    column that may be cut ends in an ellipsis."""

    header: str
    cells: list[Text] = field(default_factory=list)
    justify: Literal["left", "right"] = "left"
    #: The narrowest the column may be cut to; None: never cut (a masked number, a
    #: reason code). Never narrower than its header.
    floor: int | None = None
    #: The width worth making room for (by leaving other columns out); past it, the
    #: column's cells may as well be cut. None: all of it.
    wanted: int | None = None
    #: Cells wrap between words instead (never inside one, so never cut): free text
    #: such as a list of adapters or an adapter's answer.
    wrap: bool = False

    @property
    def natural(self) -> int:
        return max([cell_len(self.header), *(cell.cell_len for cell in self.cells)])

    @property
    def least(self) -> int:
        """The narrowest the column can be drawn in: its longest word if it wraps,
        its floor if it may be cut, else all of it."""
        if self.wrap:
            words = (word for cell in self.cells for word in cell.plain.split())
            return max([cell_len(self.header), *(cell_len(word) for word in words)])
        if self.floor is None:
            return self.natural
        return min(self.natural, max(self.floor, cell_len(self.header)))

    @property
    def comfortable(self) -> int:
        if self.wanted is None or self.floor is None or self.wrap:
            return self.natural
        return min(self.natural, max(self.wanted, self.floor, cell_len(self.header)))


def table_width(columns: list[FitColumn], widths: list[int] | None = None) -> int:
    """The width `fitted_table` draws `columns` in (`widths`, or the width each
    column is worth, `FitColumn.comfortable`): a space either side of each cell, a
    rule between columns, no outer edge."""
    chosen = widths if widths is not None else [column.comfortable for column in columns]
    return sum(chosen) + 3 * len(chosen) - 1


def least_width(columns: list[FitColumn]) -> int:
    """The narrowest `fitted_table` can draw `columns` in without cutting what must
    stay whole (`FitColumn.least`)."""
    return table_width(columns, [column.least for column in columns])


def fitted_table(
    columns: list[FitColumn], width: int, title: str | None = None
) -> tuple[Table, bool] | None:
    """A table of `columns` at most `width` wide, and whether a cell had to be cut;
    None when even their least widths do not fit (`least_width`: show them another
    way, `print_records`, rather than cut a masked number). Columns that may be cut
    or wrapped give up width widest first, down to their least; no cell wraps
    unless its column does, so a row is one line."""
    least = [column.least for column in columns]
    if table_width(columns, least) > width:
        return None
    widths = [column.natural for column in columns]
    excess = table_width(columns, widths) - width
    while excess > 0:
        # Not empty: the least widths fit, so some column is still wider than its least.
        widest = max(range(len(columns)), key=lambda i: widths[i] - least[i])
        widths[widest] -= 1
        excess -= 1
    table = Table(title=title, show_edge=False, header_style="bold")
    for column, column_width in zip(columns, widths, strict=True):
        table.add_column(
            column.header,
            justify=column.justify,
            width=column_width,
            no_wrap=not column.wrap,
            overflow="fold" if column.wrap else "ellipsis",
        )
    for cells in zip(*(column.cells for column in columns), strict=True):
        table.add_row(*cells)
    cut = any(
        cell.cell_len > column_width
        for column, column_width in zip(columns, widths, strict=True)
        if not column.wrap
        for cell in column.cells
    )
    return table, cut


def print_records(console: Console, columns: list[FitColumn], title: str | None = None) -> None:
    """`columns` as a block of lines per row, for a terminal too narrow for the
    table: the first column's header and value, then `header: value` for each other
    column with something in it. Nothing is cut (`print_words`)."""
    if title:
        print_words(console, Text(title, style="bold"))
    for cells in zip(*(column.cells for column in columns), strict=True):
        print_words(console, Text.assemble((columns[0].header, "bold"), " ", cells[0]))
        for column, cell in zip(columns[1:], cells[1:], strict=True):
            if cell.plain:
                line = Text.assemble("  ", (column.header, "bold"), ": ", cell)
                print_words(console, line, hang=2)


def wrapped_words(text: Text, width: int, hang: int = 0) -> list[Text]:
    """`text` in lines at most `width` wide, broken between words, never inside one:
    a word wider than `width` (a masked number on a very narrow terminal) has a line
    of its own, left for the terminal to fold, where rich would cut it. A line that
    goes on is indented as its paragraph is, and `hang` more."""
    lines: list[Text] = []
    for paragraph in text.split("\n"):
        plain = paragraph.plain
        indent = " " * (len(plain) - len(plain.lstrip(" ")) + hang)
        start = 0  # where the line being filled begins: a first line keeps its indent
        end = 0  # where its last word ends
        prefix = ""
        for word in re.finditer(r"\S+", plain):
            if end and cell_len(prefix + plain[start : word.end()]) > width:
                lines.append(Text(prefix) + paragraph[start:end])
                start, prefix = word.start(), indent
            end = word.end()
        lines.append(Text(prefix) + paragraph[start:end])
    return lines


def print_words(console: Console, text: Text | str, hang: int = 0) -> None:
    """Print `text` (a str is rich markup) wrapped between words, never inside one
    (`wrapped_words`)."""
    rendered = console.render_str(text) if isinstance(text, str) else text
    for line in wrapped_words(rendered, console.width, hang):
        console.print(line, soft_wrap=True)


def wrapped_phrases(
    phrases: list[str], width: int, separator: str = " · ", hang: int = 0
) -> list[str]:
    """`phrases` joined by `separator` in lines at most `width` wide, broken at the
    separators (the lines after the first indented by `hang`): a phrase too long for
    a line of its own breaks after its commas, its next lines indented 2 more; one
    wider than `width` anyway (a reason code on a very narrow terminal) is left whole
    for the terminal to fold."""
    lines: list[str] = []
    current = ""
    for phrase in phrases:
        joined = f"{current}{separator}{phrase}" if current else phrase
        if cell_len(joined) <= width:
            current = joined
            continue
        if current:
            lines.append(current)
        indent = " " * hang if lines else ""
        if cell_len(indent + phrase) <= width:
            current = indent + phrase
            continue
        # Each piece but the last keeps its comma: a line ends with it.
        pieces = phrase.split(", ")
        pieces = [f"{piece}," for piece in pieces[:-1]] + pieces[-1:]
        current = indent + pieces[0]
        for piece in pieces[1:]:
            if cell_len(f"{current} {piece}") <= width:
                current = f"{current} {piece}"
            else:
                lines.append(current)
                current = f"{' ' * hang}  {piece}"
        # What follows a phrase that had to break starts a line of its own.
        lines.append(current)
        current = ""
    if current:
        lines.append(current)
    return lines


def json_line(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")


def percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index] * 1000


def summary_phrases(results: Iterable[Resolution | Unresolvable | str]) -> list[str]:
    """`resolved 9 (crm 5, ...)`, `refused 6 (do_not_call 2, ...)`, `latency p50 ...`.

    A plain string in `results` is a lead that could not even be read (its reason).
    """
    sources: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    latencies: list[float] = []
    for result in results:
        if isinstance(result, Resolution):
            sources[result.source] += 1
            latencies.append(result.elapsed)
        elif isinstance(result, Unresolvable):
            reasons[result.reason] += 1
            latencies.append(result.elapsed)
        else:
            reasons[result] += 1

    def counts(counter: Counter[str]) -> str:
        return ", ".join(f"{key} {value}" for key, value in counter.most_common())

    resolved = sum(sources.values())
    refused = sum(reasons.values())
    return [
        f"resolved {resolved}" + (f" ({counts(sources)})" if sources else ""),
        f"refused {refused}" + (f" ({counts(reasons)})" if reasons else ""),
        f"latency p50 {percentile_ms(latencies, 0.5):.1f} ms, "
        f"p99 {percentile_ms(latencies, 0.99):.1f} ms",
    ]


def summary_text(results: Iterable[Resolution | Unresolvable | str]) -> str:
    """`resolved 9 (crm 5, cache 1, stored 3) · refused 6 (do_not_call 2, ...) · p50 ...`."""
    return " · ".join(summary_phrases(results))


def print_summary(console: Console, results: Iterable[Resolution | Unresolvable | str]) -> None:
    """`summary_text` wrapped to the console at its ` · ` (a count and its reason code
    stay together)."""
    for line in wrapped_phrases(summary_phrases(results), console.width):
        console.print(line, soft_wrap=True, markup=False)


@contextmanager
def reported_by_the_command(*logger_names: str) -> Iterator[None]:
    """For problems the command itself reports (a failed plugin listed in a table, a
    misconfigured campaign's exit-2 line): the loggers' own warnings and errors
    would say each twice. -v keeps them."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() >= logging.WARNING:
            logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
