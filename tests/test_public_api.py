"""Which modules are predial's API, and what each one offers.

As in httpx and stamina, a module whose name starts with `_` is internal: it may
change in any release. The public modules are listed here with their `__all__`; a
name added to or dropped from one of them is a change of the API — change it here
on purpose (and in the docs). `predial.__all__` itself is locked in test_namespace.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import predial

#: The public modules besides `predial`, each with its `__all__`.
PUBLIC_MODULES = {
    "predial.adapters": [
        "ADAPTER_NAME",
        "Adapter",
        "FetchResult",
        "adapter_problems",
        "close_adapter",
    ],
    "predial.adapters.http": [
        "HttpAdapter",
        "OAuth2",
        "Params",
        "RateLimitScope",
        "RefreshTokenFile",
        "environment_proxy",
        "retry_after_seconds",
        "safe_path",
    ],
    "predial.cli": ["main"],
    "predial.compliance": [
        "AuditLog",
        "AuditStats",
        "AuditSummary",
        "Compliance",
        "DncEntry",
        "DncImportReport",
        "DncList",
        "DncListStats",
        "DncLists",
        "DncSourceAnswer",
        "DncSources",
        "LocationKeys",
        "MemoryCapCounter",
        "RedisCapCounter",
        "Rule",
        "Ruleset",
        "Verdict",
        "ZoneSource",
        "evaluate",
        "load_ruleset",
        "summarize_audit",
    ],
    "predial.errors": [
        "AdapterAuthError",
        "AdapterError",
        "AdapterRateLimited",
        "AdapterRequestRejected",
        "AdapterUnavailable",
        "BadBatchAnswer",
        "CircuitOpen",
        "ConfigurationError",
        "DuplicateAdapter",
        "ImportInProgress",
        "InputFileError",
        "InvalidLead",
        "InvalidPhoneNumber",
        "JournalError",
        "LeadAlreadyExists",
        "LupitorAnswerLost",
        "LupitorAuthError",
        "LupitorError",
        "LupitorForbidden",
        "LupitorNotFound",
        "LupitorRateLimited",
        "LupitorUnavailable",
        "LupitorValidationError",
        "PluginLoadError",
        "PredialError",
        "RecordNotFound",
        "UnknownAdapter",
        "UnknownCampaign",
        "Unresolvable",
    ],
    "predial.hookspecs": [
        "AdapterRegister",
        "DncSourceRegister",
        "hookimpl",
        "hookspec",
        "register_adapters",
        "register_dnc_sources",
    ],
    "predial.lupitor": [
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
    ],
    "predial.metrics": [
        "BREAKER_STATES",
        "LATENCY_BUCKETS",
        "ResolverMetrics",
        "instrument",
        "multiprocess_mode",
    ],
    "predial.service": ["ApiKeyConfig", "Caller", "PredialService", "ServiceConfig", "create_app"],
    "predial.shared": ["Lookup", "RedisTier", "TierState", "redacted_url", "url_problem"],
    "predial.testing": [
        "HOSTILE_IDS",
        "AdapterContract",
        "ApiKey",
        "CheckRun",
        "FakeCrm",
        "FakeLupitor",
        "FakeOAuth",
        "Faults",
        "OAuthAdapterContract",
        "OpenApiSpec",
        "RateLimitContract",
        "RecordingTransport",
        "RedisServer",
        "RequestRecord",
        "body_json",
        "json_response",
        "serve",
        "served_check",
    ],
}

#: Module paths that were documented before they became internal: each keeps working
#: until predial 0.3, with a DeprecationWarning naming the import to use instead.
DEPRECATED_PATHS = {
    "predial.leadfile": ("predial._leadfile", "from predial"),
    "predial.models": ("predial._models", "from predial"),
    "predial.redaction": ("predial._redaction", "predial.redact"),
    "predial.selection": ("predial._selection", "from predial"),
    "predial.service.auth": ("predial.service._auth", "from predial.service"),
    "predial.testing.fake_crm": ("predial.testing._fake_crm", "from predial.testing"),
    "predial.testing.redis_server": ("predial.testing._redis_server", "from predial.testing"),
}


def _every_module() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(predial.__path__, "predial.")
        if not info.name.endswith("__main__")
    )


def test_every_module_is_public_internal_or_a_deprecated_path() -> None:
    """A new module is internal (`_name`) unless it is added here as API."""
    unexplained = [
        name
        for name in _every_module()
        if not any(part.startswith("_") for part in name.split("."))
        and name not in PUBLIC_MODULES
        and name not in DEPRECATED_PATHS
    ]
    assert unexplained == []


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_a_public_module_offers_exactly_its_api(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == PUBLIC_MODULES[name]
    for attribute in module.__all__:
        assert getattr(module, attribute) is not None, f"{name}.{attribute}"


@pytest.mark.parametrize("old", sorted(DEPRECATED_PATHS))
def test_a_documented_old_path_still_works_and_says_what_to_use(old: str) -> None:
    new, instead = DEPRECATED_PATHS[old]
    # In a fresh interpreter: the warning comes on the first import only.
    program = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({new!r})\n"
        "assert old is new, (old, new)\n"
        "print(*[f'{w.category.__name__}: {w.message}' for w in caught], sep='\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"DeprecationWarning: {old} is internal since predial 0.2")
    assert instead in lines[0]


def test_the_packages_own_code_imports_no_deprecated_path() -> None:
    """predial's own modules import the new paths: importing every one of them in a
    fresh interpreter raises no DeprecationWarning."""
    names = [name for name in _every_module() if name not in DEPRECATED_PATHS]
    program = f"import importlib\nfor name in {names!r}:\n    importlib.import_module(name)\n"
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", program],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
