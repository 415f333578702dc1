"""Small HTTP helpers shared by the Lupitor client and the CRM adapter base."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from typing import SupportsFloat

from ._faults import is_adapter_fault

__all__ = ["MAX_RETRY_AFTER", "retry_after_hint", "retry_after_seconds"]

#: The longest wait a server may ask for (a day: daily quotas reset within one).
#: Longer, infinite or NaN values are clamped, so one bad header cannot stop a
#: client for good.
MAX_RETRY_AFTER = 86_400.0


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """A `Retry-After` header as seconds: delta-seconds or an HTTP date; None when
    absent or unreadable; at most `MAX_RETRY_AFTER`."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass  # not a number: try the HTTP-date form
    else:
        if math.isnan(seconds):
            return None
        return min(max(0.0, seconds), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - now()), MAX_RETRY_AFTER)


def retry_after_hint(value: object) -> float | None:
    """An adapter's or a server's "come back in N seconds" as a usable hint.

    Anything that is not a finite number of seconds >= 0 (NaN, infinity, a negative
    number, a bool, an object that is not a number) is no hint at all: None. Longer
    waits are clamped to `MAX_RETRY_AFTER`, as `retry_after_seconds` clamps headers.
    """
    try:
        if isinstance(value, bool) or not isinstance(value, str | SupportsFloat):
            return None
        seconds = float(value)
    except BaseException as error:
        if not is_adapter_fault(error):
            raise
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)
