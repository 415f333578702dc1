"""Small HTTP helpers shared by the Lupitor client and the CRM adapter base."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

__all__ = ["retry_after_seconds"]


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """A `Retry-After` header as seconds: delta-seconds or an HTTP date; None when
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # not a number: try the HTTP-date form
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())
