"""Presenting results: masking, consoles, summaries."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rich.console import Console

from ..errors import Unresolvable
from ..models import CrmContact, CrmPhone, Resolution
from ..phone import mask_phone
from ..redaction import redact

__all__ = [
    "Masker",
    "err_console",
    "json_line",
    "out_console",
    "percentile_ms",
    "summary_text",
]


def out_console() -> Console:
    # Piped output keeps whole rows (rich would wrap at 80 columns).
    width = None if sys.stdout.isatty() else 200
    return Console(soft_wrap=False, highlight=False, width=width)


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


class Masker:
    """Masks phone numbers in everything shown, unless `--show-numbers`."""

    def __init__(self, show_numbers: bool) -> None:
        self.show = show_numbers

    def number(self, value: object) -> str:
        if value is None:
            return ""
        return str(value) if self.show else mask_phone(value)

    def text(self, value: object) -> str:
        """Free text from an adapter or a CRM: credentials always redacted, numbers
        masked unless `--show-numbers` (`predial.redaction.redact`)."""
        return redact(value, show_numbers=self.show, limit=1000)

    def raw(self, value: object) -> str:
        """An adapter's raw answer, described with its numbers masked."""
        if isinstance(value, CrmContact):
            phones = ", ".join(self._phone(phone) for phone in value.phones) or "no phones"
            flags = []
            if value.do_not_call:
                flags.append("do-not-call")
            if value.state != "active":
                flags.append(value.state)
            suffix = f" [{', '.join(flags)}]" if flags else ""
            return f"CrmContact: {phones}{suffix}"
        if isinstance(value, str):
            return repr(self.number(value))
        if value is None:
            return "None"
        try:
            shown = repr(value)
        except Exception:
            shown = "<repr failed>"
        return self.text(f"{type(value).__name__}: {shown[:200]}")

    def _phone(self, phone: CrmPhone) -> str:
        label = f"{phone.label}: " if phone.label else ""
        primary = " (primary)" if phone.primary else ""
        return f"{label}{self.number(phone.value)}{primary}"


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
