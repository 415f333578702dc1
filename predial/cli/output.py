"""Presenting results: masking, consoles, summaries."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._faults import is_adapter_fault, safe_flag, safe_repr, safe_text, type_name
from ..errors import Unresolvable
from ..models import CrmContact, CrmPhone, Resolution
from ..phone import mask_phone
from ..redaction import redact

__all__ = [
    "FitColumn",
    "Masker",
    "err_console",
    "fitted_table",
    "json_line",
    "out_console",
    "percentile_ms",
    "reported_by_the_command",
    "summary_text",
    "table_width",
]


def out_console() -> Console:
    # Piped output keeps whole rows (rich would wrap at 80 columns), unless COLUMNS
    # says how wide the reader is.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(soft_wrap=False, highlight=False, width=width)


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


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
        masked unless `--show-numbers` (`predial.redaction.redact`)."""
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
    one line each; a cell wider than the column ends in an ellipsis."""

    header: str
    cells: list[Text] = field(default_factory=list)
    justify: Literal["left", "right"] = "left"
    #: The narrowest the column may be cut to; None: never cut (a masked number, a
    #: reason code). Never narrower than its header.
    floor: int | None = None
    #: The width worth making room for (by leaving other columns out); past it, the
    #: column's cells may as well be cut. None: all of it.
    wanted: int | None = None

    @property
    def natural(self) -> int:
        return max([len(self.header), *(cell.cell_len for cell in self.cells)])

    @property
    def comfortable(self) -> int:
        if self.wanted is None or self.floor is None:
            return self.natural
        return min(self.natural, max(self.wanted, self.floor, len(self.header)))


def table_width(columns: list[FitColumn], widths: list[int] | None = None) -> int:
    """The width `fitted_table` draws `columns` in (`widths`, or the width each
    column is worth, `FitColumn.comfortable`): a space either side of each cell, a
    rule between columns, no outer edge."""
    chosen = widths if widths is not None else [column.comfortable for column in columns]
    return sum(chosen) + 3 * len(chosen) - 1


def fitted_table(
    columns: list[FitColumn], width: int, title: str | None = None
) -> tuple[Table, bool]:
    """A table of `columns` at most `width` wide if their floors allow, and whether a
    cell had to be cut. Columns that may be cut give up width widest first, down to
    their floors; no cell wraps, so a row is one line."""
    widths = [column.natural for column in columns]
    floors = [
        widths[index] if column.floor is None else max(len(column.header), column.floor)
        for index, column in enumerate(columns)
    ]
    excess = table_width(columns, widths) - width
    while excess > 0:
        cuttable = [i for i in range(len(columns)) if widths[i] > floors[i]]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: widths[i] - floors[i])
        widths[widest] -= 1
        excess -= 1
    table = Table(title=title, show_edge=False, header_style="bold")
    for column, column_width in zip(columns, widths, strict=True):
        table.add_column(
            column.header,
            justify=column.justify,
            width=column_width,
            no_wrap=True,
            overflow="ellipsis",
        )
    for cells in zip(*(column.cells for column in columns), strict=True):
        table.add_row(*cells)
    cut = any(
        cell.cell_len > column_width
        for column, column_width in zip(columns, widths, strict=True)
        for cell in column.cells
    )
    return table, cut


def json_line(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")


def percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index] * 1000


def summary_text(results: Iterable[Resolution | Unresolvable | str]) -> str:
    """`resolved 9 (crm 5, cache 1, stored 3) · refused 6 (do_not_call 2, ...) · p50 ...`.

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
    parts = [f"resolved {resolved}" + (f" ({counts(sources)})" if sources else "")]
    parts.append(f"refused {refused}" + (f" ({counts(reasons)})" if reasons else ""))
    parts.append(
        f"latency p50 {percentile_ms(latencies, 0.5):.1f} ms, "
        f"p99 {percentile_ms(latencies, 0.99):.1f} ms"
    )
    return " · ".join(parts)


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
