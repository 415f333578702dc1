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
from .breaker import BreakerSettings
from .cache import CacheSettings
from .campaign import Campaign, RetrySettings
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
from .hookspecs import AdapterRegister, hookimpl
from .models import CrmContact, CrmPhone, Lead, Resolution, parse_lead
from .phone import PhonePolicy, mask_phone, normalize
from .plugins import load_plugins
from .redaction import redact
from .resolver import Resolver
from .shared import RedisTier
from .stats import ResolverStats
from .warm import WarmReport


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("predial")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


__version__ = _version()
del _version

__all__ = [
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
    "CrmContact",
    "CrmPhone",
    "DuplicateAdapter",
    "ImportInProgress",
    "InputFileError",
    "InvalidLead",
    "InvalidPhoneNumber",
    "JournalError",
    "Lead",
    "LeadAlreadyExists",
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
    "redact",
]
