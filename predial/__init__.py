"""predial: the right phone number for a lead, just before the dialer dials it.

```python
import predial

resolver = predial.Resolver(
    campaigns=[predial.Campaign("cmp_1", adapter="hubspot", settings={"token": token})],
)
try:
    resolution = await resolver.resolve(lead)      # Resolution(phone_number="+1...", source="crm")
except predial.Unresolvable as refusal:
    ...                                            # refusal.retryable: skip or retry later
```
"""

# No `from __future__ import annotations` here (it would leave `annotations` in the
# namespace) and no module-level import that is not predial's: `dir(predial)` is the
# public names and the submodules, nothing else (tests/test_namespace.py).
from ._breaker import BreakerSettings
from ._cache import CacheSettings
from ._campaign import Campaign, RetrySettings
from ._leadfile import LeadRow, read_leads
from ._models import ContactState, CrmContact, CrmPhone, Lead, Resolution, parse_lead
from ._phone import PhonePolicy, mask_phone, normalize
from ._plugins import load_plugins
from ._redaction import redact
from ._resolver import Resolver
from ._selection import COMPLIANCE_REASONS, PERMANENT_REASONS, TRANSIENT_REASONS
from ._stats import ResolverStats
from ._warm import WarmReport
from .errors import (
    AdapterAuthError,
    AdapterError,
    AdapterRateLimited,
    AdapterRequestRejected,
    AdapterUnavailable,
    ConfigurationError,
    DuplicateAdapter,
    ImportInProgress,
    InputFileError,
    InvalidLead,
    InvalidPhoneNumber,
    JournalError,
    LeadAlreadyExists,
    LupitorAnswerLost,
    LupitorAuthError,
    LupitorError,
    LupitorForbidden,
    LupitorNotFound,
    LupitorRateLimited,
    LupitorUnavailable,
    LupitorValidationError,
    PluginLoadError,
    PredialError,
    RecordNotFound,
    UnknownAdapter,
    UnknownCampaign,
    Unresolvable,
)
from .hookspecs import AdapterRegister, DncSourceRegister, hookimpl
from .shared import RedisTier


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("predial")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


__version__ = _version()
del _version

__all__ = [
    "COMPLIANCE_REASONS",
    "PERMANENT_REASONS",
    "TRANSIENT_REASONS",
    "AdapterAuthError",
    "AdapterError",
    "AdapterRateLimited",
    "AdapterRegister",
    "AdapterRequestRejected",
    "AdapterUnavailable",
    "BreakerSettings",
    "CacheSettings",
    "Campaign",
    "ConfigurationError",
    "ContactState",
    "CrmContact",
    "CrmPhone",
    "DncSourceRegister",
    "DuplicateAdapter",
    "ImportInProgress",
    "InputFileError",
    "InvalidLead",
    "InvalidPhoneNumber",
    "JournalError",
    "Lead",
    "LeadAlreadyExists",
    "LeadRow",
    "LupitorAnswerLost",
    "LupitorAuthError",
    "LupitorError",
    "LupitorForbidden",
    "LupitorNotFound",
    "LupitorRateLimited",
    "LupitorUnavailable",
    "LupitorValidationError",
    "PhonePolicy",
    "PluginLoadError",
    "PredialError",
    "RecordNotFound",
    "RedisTier",
    "Resolution",
    "Resolver",
    "ResolverStats",
    "RetrySettings",
    "UnknownAdapter",
    "UnknownCampaign",
    "Unresolvable",
    "WarmReport",
    "__version__",
    "hookimpl",
    "load_plugins",
    "mask_phone",
    "normalize",
    "parse_lead",
    "read_leads",
    "redact",
]
