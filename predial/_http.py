"""What a server may ask of our waits, and how long we wait between retries: shared
by the Lupitor client, the CRM adapter base, the resolver and the shared tier."""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from typing import SupportsFloat

from ._faults import is_adapter_fault

__all__ = [
    "MAX_RETRY_AFTER",
    "MAX_SLEEP_IN_CALL",
    "backoff",
    "reset_in",
    "retry_after_hint",
    "retry_after_seconds",
]

#: The longest "come back later" a server or an adapter may set (a day: daily quotas
#: reset within one). It is never slept on: it is passed on (a dial's `retry_after`,
#: a flight message) or held as a pause in which calls are refused at once. Longer,
#: infinite or NaN values are clamped, so one bad header cannot stop a client for good.
MAX_RETRY_AFTER = 86_400.0

#: The longest the Lupitor client sleeps inside one call because the server said so
#: (a 429's Retry-After, X-RateLimit-Reset): an hour. Shorter than `MAX_RETRY_AFTER`
#: on purpose: this wait blocks the caller (an import stands still through it), and
#: Lupitor's limits are per minute, so a longer ask is a misconfigured server.
MAX_SLEEP_IN_CALL = 3_600.0


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """The wait before retry number `attempt` (from 1): up to `initial * 2**(attempt-1)`,
    at most `maximum`, with full jitter (uniform from 0), which spreads many clients'
    retries after a shared outage."""
    # A bounded exponent: 2 ** 2000 (an int) overflows a float product; 2.0 ** 1000 does not.
    return random.uniform(0, min(maximum, initial * 2.0 ** min(attempt - 1, 1000)))


def reset_in(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """An `X-RateLimit-Reset` unix time (seconds, or milliseconds as Convex-style
    timestamps are) as seconds from now, negative when past; None when unreadable."""
    try:
        reset = float(value or "")
    except ValueError:
        return None
    return (reset / 1000 if reset > 1e11 else reset) - now()


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
