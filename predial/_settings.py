"""Why an adapter refused a campaign's settings, said in predial's words.

An adapter takes its settings as keyword arguments (`HubSpotAdapter(token=...)`). A
misspelt or missing setting would otherwise surface as Python's own `TypeError`
(`HttpAdapter.__init__() got an unexpected keyword argument 'tokn'`); the adapter's
signature says which settings exist, so the message can name the key, suggest the
closest one and list what is required.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ._campaign import Campaign
from ._config import validation_problems
from ._faults import safe_text
from ._redaction import redact
from .errors import ConfigurationError

__all__ = ["settings_error"]

# How validation_problems names a rule over a whole table.
_WHOLE = "(top level): "

# Python's own messages when keyword arguments do not fit a signature.
_BINDING = re.compile(r"got an unexpected keyword argument|missing \d+ required")


def settings_error(campaign: Campaign, cls: type[Any], error: Exception) -> ConfigurationError:
    """The `ConfigurationError` for `cls(**campaign.settings)` having raised `error`.

    Never quotes a setting's value (it may be a secret): only keys, and the
    adapter's own message redacted.
    """
    where = f"{campaign.where}.settings"
    if isinstance(error, TypeError) and _BINDING.search(str(error)):
        # Python refused the call itself, somewhere along the chain of __init__s:
        # the signatures can say what is wrong (an adapter's own TypeError cannot).
        problems = _signature_problems(cls, campaign.settings, campaign.adapter)
        if problems:
            return ConfigurationError("; ".join(where + problem for problem in problems))
    if isinstance(error, ValidationError):
        lines = [
            # A rule over the settings as a whole has no key of its own.
            f"{where}: {problem.removeprefix(_WHOLE)}"
            if problem.startswith(_WHOLE)
            else f"{where}.{problem}"
            for problem in validation_problems(error)
        ]
        return ConfigurationError("; ".join(lines))
    if isinstance(error, (TypeError, ValueError)):
        # The adapter's own message, redacted: it may quote the secret it refused.
        text = f"{type(error).__name__}: {redact(safe_text(error))}"
    else:  # an arbitrary exception's text may quote a setting: name the type only
        text = f"{type(error).__name__} (see the adapter's documentation for its settings)"
    return ConfigurationError(
        f"{where}: adapter {campaign.adapter!r} rejected its settings: {text}"
    )


def _signature_problems(cls: type[Any], settings: Mapping[str, Any], adapter: str) -> list[str]:
    """Unknown and missing settings by the adapter's signature (each as a key-path
    suffix and what is wrong), or [] when the signature cannot tell."""
    parameters = _keyword_parameters(cls)
    if parameters is None:
        return []
    known = list(parameters)
    problems = []
    suggested = set()
    for key in settings:
        if key not in parameters:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            suggested.update(close)
            listed = ", ".join(known) or "none"
            problems.append(
                f".{key}: adapter {adapter!r} has no such setting{hint} (its settings: {listed})"
            )
    missing = [
        name
        for name, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty
        and name not in settings
        and name not in suggested  # already said: "did you mean 'path'?"
    ]
    if missing:
        named = " and ".join(repr(name) for name in missing)
        problems.append(f": adapter {adapter!r} requires {named}")
    return problems


def _keyword_parameters(cls: type[Any]) -> dict[str, inspect.Parameter] | None:
    """The settings `cls(**settings)` accepts, following `**kwargs` handed up to the
    base classes (an adapter on HttpAdapter takes its own and the base's), or None
    when they cannot be known (no signature, or `**kwargs` that reach `object`)."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return None
        try:
            parameters = inspect.signature(init).parameters
        except (TypeError, ValueError):  # a builtin or a C class: nothing to read
            return None
        open_ended = False
        for name, parameter in list(parameters.items())[1:]:  # past self
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                open_ended = True
            elif parameter.kind in (
                inspect.Parameter.KEYWORD_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                found.setdefault(name, parameter)
        if not open_ended:
            return found
    return None
