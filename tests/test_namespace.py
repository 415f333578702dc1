"""`import predial` offers its public names and its submodules, nothing else: what a
user sees in `dir(predial)` or a completion list is the API."""

from __future__ import annotations

import subprocess
import sys
import types

import predial

#: The public API. A name added to (or dropped from) `predial.__all__` is a change of
#: the API: change it here on purpose, and in the README.
PUBLIC = [
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


def test_all_is_the_public_api_sorted_and_defined() -> None:
    assert predial.__all__ == PUBLIC
    for name in predial.__all__:
        assert hasattr(predial, name), name
    assert isinstance(predial.__version__, str)
    assert predial.__version__


def _stray(module: types.ModuleType) -> list[str]:
    """Names in `dir(module)` that are neither public, dunder, nor a submodule."""
    return [
        name
        for name in dir(module)
        if name not in module.__all__
        and not (name.startswith("__") and name.endswith("__"))
        and not (
            isinstance(getattr(module, name), types.ModuleType)
            and getattr(module, name).__name__ == f"{module.__name__}.{name}"
        )
    ]


def test_dir_holds_no_stray_names() -> None:
    """No `annotations` (from a __future__ import), no `PackageNotFoundError` or
    `version` (from the version lookup): only the API and the submodules."""
    assert _stray(predial) == []


def test_a_fresh_import_holds_no_stray_names_either() -> None:
    """In a process of its own, before any other test imported submodules."""
    code = (
        "import types, predial\n"
        "print(sorted(n for n in dir(predial) if n not in predial.__all__ "
        "and not (n.startswith('__') and n.endswith('__')) "
        "and not isinstance(getattr(predial, n), types.ModuleType)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
