"""The Lupitor Leads API: a client (sync and async) and the lead importer."""

from __future__ import annotations

from .._ratelimit import SlidingWindowLimiter
from ._client import (
    API_KEY_ENV,
    API_URL_ENV,
    DEFAULT_API_URL,
    MAX_BULK,
    AsyncLupitorClient,
    LupitorClient,
    RequestStats,
    RetryPolicy,
    Waiting,
)
from ._importer import ImportProgress, ImportReport, import_leads, import_leads_async
from ._models import BulkCreateResult, BulkDeleteResult, CreatedLead, StoredLead

__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "MAX_BULK",
    "AsyncLupitorClient",
    "BulkCreateResult",
    "BulkDeleteResult",
    "CreatedLead",
    "ImportProgress",
    "ImportReport",
    "LupitorClient",
    "RequestStats",
    "RetryPolicy",
    "SlidingWindowLimiter",
    "StoredLead",
    "Waiting",
    "import_leads",
    "import_leads_async",
]
