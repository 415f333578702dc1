"""predial's one exception tree.

```
PredialError
├── ConfigurationError
│   ├── UnknownAdapter        a campaign names an adapter no plugin registered
│   ├── DuplicateAdapter      two plugins registered the same adapter name
│   └── PluginLoadError       a plugin failed to import or to register
├── AdapterError              raised by adapters, interpreted by the resolver
│   ├── RecordNotFound        the CRM has no such record (permanent)
│   ├── AdapterUnavailable    the CRM cannot answer now (retryable, retry_after)
│   │   ├── AdapterRateLimited      the CRM's rate limit or daily quota (scope, called)
│   │   ├── AdapterRequestRejected  the CRM refused the request itself: not retried
│   │   └── CircuitOpen             the campaign's circuit is open: the CRM was not called
│   └── AdapterAuthError      credentials rejected (retryable once fixed)
├── BadBatchAnswer            also a TypeError: fetch_phones answered no mapping (warm)
├── InvalidPhoneNumber        also a ValueError: the policy refused a number
├── InputFileError            a leads file or CRM export cannot be read as a whole
├── ImportInProgress          another import of the same file or journal is running (owner)
├── JournalError              the import journal is damaged, foreign, or cannot be written
├── Unresolvable              the resolver's verdict: no number to dial
│   ├── InvalidLead           also a ValueError: the lead itself is malformed (skip)
│   └── UnknownCampaign       no campaign with the lead's id is configured (skip)
└── LupitorError              the Lupitor Leads API refused a request (status, message)
    ├── LupitorAuthError      401: missing, invalid or inactive API key
    ├── LupitorForbidden      403: the key lacks the write scope
    ├── LupitorNotFound       404: campaign not found or access denied; lead not found
    ├── LupitorValidationError 400: a documented validation message
    │   └── LeadAlreadyExists   400: "Lead already exists"
    ├── LupitorRateLimited    429 after the client's own waits (retry_after)
    └── LupitorUnavailable    5xx, timeouts, dropped connections after retries
        └── LupitorAnswerLost   a create that may have been committed; not resent
```

A dialer catches `Unresolvable` and reads `retryable` / `retry_after`; an adapter
author raises the `AdapterError` subclasses; everything else is a bug or a
configuration problem that should fail loudly.
"""

from __future__ import annotations

import datetime as _dt
import difflib
from typing import Any, ClassVar

from ._http import retry_after_hint

__all__ = [
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
]


class PredialError(Exception):
    """Base of every exception predial raises on purpose."""


class ConfigurationError(PredialError):
    """The configuration, a campaign or a plugin is wrong; fix it and restart."""


class UnknownAdapter(ConfigurationError):
    """A campaign names an adapter that no loaded plugin registered.

    For an adapter of predial's own plugins (`FIRST_PARTY`), the message says which
    distribution provides it and how to install it, or that it is installed but was
    not loaded; a `suggestion` may be one of those adapters too.
    """

    #: The adapters predial's first-party plugins (plugins/ in its repository)
    #: register, by the distribution that provides each: the one table of them.
    FIRST_PARTY: ClassVar[dict[str, str]] = {
        "gohighlevel": "predial-gohighlevel",
        "http": "predial-http",
        "hubspot": "predial-hubspot",
        "pipedrive": "predial-pipedrive",
        "salesforce": "predial-salesforce",
    }

    def __init__(
        self,
        name: str,
        installed: list[str],
        suggestion: str | None = None,
        context: str | None = None,
        note: str | None = None,
    ) -> None:
        self.name = name
        self.installed = installed
        self.suggestion = suggestion
        #: The distribution that would provide `name` (or the suggestion), if first-party.
        self.distribution = self.FIRST_PARTY.get(name)
        listed = ", ".join(installed) if installed else "none"
        where = f"{context}: " if context else ""
        if self.distribution is not None and name not in installed:
            text = f"{where}unknown adapter {name!r}: {self._missing(self.distribution)}."
        else:
            hint = ""
            if suggestion:
                provider = self.FIRST_PARTY.get(suggestion)
                if provider is not None and suggestion not in installed:
                    hint = f" ({self._missing(provider, short=True)})"
                    self.distribution = provider
            ask = f"; did you mean {suggestion!r}{hint}?" if suggestion else ";"
            text = f"{where}unknown adapter {name!r}{ask}"
        installed_line = "installed adapters" if text.endswith(";") else "Installed adapters"
        text = f"{text} {installed_line}: {listed}"
        super().__init__(f"{text} ({note})" if note else text)

    @staticmethod
    def install_command(distribution: str) -> str:
        """How to install a first-party distribution: from predial's checkout, as the
        README does. Not `pip install <distribution>`: the first-party plugins are not
        on PyPI, and telling people to install an unpublished name from it invites
        someone else to publish it (dependency confusion)."""
        return f"pip install -e plugins/{distribution} in a predial checkout"

    @classmethod
    def _missing(cls, distribution: str, *, short: bool = False) -> str:
        """What to do about a first-party distribution whose adapter is not loaded."""
        from importlib import metadata

        try:
            metadata.version(distribution)
        except metadata.PackageNotFoundError:
            install = cls.install_command(distribution)
            if short:
                return install
            return f"it comes with {distribution}, which is not installed: {install}"
        # Installed, so the environment or the caller kept it out, or it failed.
        if short:
            return f"{distribution} is installed but not loaded: see predial plugins"
        return (
            f"{distribution} is installed but was not loaded (left out by "
            "PREDIAL_LOAD_PLUGINS, PREDIAL_DISABLE_PLUGINS or load_entrypoints=False, or "
            "failed: see predial plugins)"
        )


class DuplicateAdapter(ConfigurationError):
    """Two plugins registered adapters under the same name.

    `hint` says what to do; by default (two installed plugins) to uninstall or
    disable one. A built-in adapter or a class passed in code cannot be disabled:
    the registry then says to rename the newcomer's `name`.
    """

    def __init__(
        self, name: str, first_source: str, second_source: str, hint: str | None = None
    ) -> None:
        self.name = name
        self.sources = (first_source, second_source)
        hint = hint or "uninstall or disable one (PREDIAL_DISABLE_PLUGINS)"
        super().__init__(
            f"adapter name {name!r} is registered twice: by {first_source} and by "
            f"{second_source}; {hint}"
        )


class PluginLoadError(ConfigurationError):
    """A plugin could not be imported or registered.

    `plugin` names it (an entry point, what was passed in code, or the file or module
    as `[resolver] plugins` names it), `reason` says why, and `context`, when the
    plugin was configured, where (`predial.toml: resolver.plugins[0]`). The plugin's
    name and the reason are redacted when the error is built (numbers masked,
    credentials removed): a reason quotes what third-party code raised, and the
    error is printed, logged and shown by `predial plugins` as it is.
    """

    def __init__(self, plugin: str, reason: str, context: str | None = None) -> None:
        # Here, not at the top: predial._redaction imports predial._phone, which
        # imports this module.
        from ._redaction import redact

        self.plugin = redact(plugin, limit=200)
        self.reason = redact(reason, limit=2000)
        self.context = context
        where = f"{context}: " if context else ""
        super().__init__(f"{where}plugin {self.plugin!r} failed to load: {self.reason}")


class AdapterError(PredialError):
    """Base of the errors a CRM adapter raises to tell the resolver what happened."""


class RecordNotFound(AdapterError):
    """The CRM has no record for this external id (or it was deleted)."""


class AdapterUnavailable(AdapterError):
    """The CRM cannot answer now: outage, 5xx, rate limit, timeout.

    `retry_after` (seconds) is the CRM's own word on when to come back, if it said.
    """

    def __init__(self, message: str = "CRM unavailable", *, retry_after: float | None = None):
        # NaN, infinite or negative is no hint; a week is clamped to a day.
        self.retry_after = retry_after_hint(retry_after)
        super().__init__(message)


class AdapterRateLimited(AdapterUnavailable):
    """The CRM's rate limit was hit (a 429 or a provider's own limit signal).

    `scope` is `"burst"` (a short window: seconds), `"daily"` (a daily or rolling
    quota is spent: retrying within a dial is pointless, so the adapter stops calling
    the CRM until `retry_after` has passed) or `"client"` (predial's own budget for
    the tenant is spent). `called` is False when predial refused the call itself
    (its budget spent, or the tenant's daily quota paused): the CRM was not
    called, so the circuit breaker does not count it as the CRM failing, and the
    dial is answered at once with `retry_after` rather than waiting inside it.
    """

    def __init__(
        self,
        message: str = "CRM rate limit",
        *,
        retry_after: float | None = None,
        scope: str = "burst",
        called: bool = True,
    ) -> None:
        self.scope = scope
        self.called = called
        super().__init__(message, retry_after=retry_after)


class AdapterRequestRejected(AdapterUnavailable):
    """The CRM refused the request itself (a 400 or 422 no adapter explained): a bug
    or a misconfiguration, so the resolver does not retry it within the dial (some
    CRMs and proxies block clients that repeat failing requests)."""


class CircuitOpen(AdapterUnavailable):
    """The campaign's circuit is open: the adapter was not called (`Resolver.warm`'s batches)."""


class BadBatchAnswer(PredialError, TypeError):
    """`fetch_phones` returned no readable mapping (a bug in the adapter): the batch fails."""


class AdapterAuthError(AdapterError):
    """The CRM rejected the adapter's credentials (401/403 or a revoked token)."""


class InvalidPhoneNumber(PredialError, ValueError):
    """The phone policy refused a number.

    `reason` is machine-readable (see `predial._phone.REASONS`); `input` is what was
    given. The message masks the number, so it is safe to log.
    """

    def __init__(self, reason: str, input: object, message: str) -> None:
        self.reason = reason
        self.input = input
        super().__init__(message)

    def __reduce__(self) -> tuple[type[InvalidPhoneNumber], tuple[str, object, str]]:
        return (type(self), (self.reason, self.input, str(self)))


class InputFileError(PredialError):
    """A leads file or CRM export cannot be read as a whole (missing, binary, no
    header). Problems with single rows are reported per row instead."""


class ImportInProgress(PredialError):
    """Another import of the same file into the same campaign, or through the same
    journal, is running. `owner` is what that import wrote about itself (`pid`,
    `host`, `started`, `journal`, `source`, `campaign`), or None when it could not
    be read."""

    def __init__(self, message: str, owner: dict[str, Any] | None = None) -> None:
        self.owner = owner
        super().__init__(message)

    def __reduce__(self) -> tuple[type[ImportInProgress], tuple[str, dict[str, Any] | None]]:
        return (type(self), (str(self), self.owner))


class JournalError(PredialError):
    """The import journal cannot be used: damaged, not a journal, a line or status
    it cannot hold, or SQLite could not open, read or write it (permissions, a full
    disk). The message names the journal and what to do."""


class Unresolvable(PredialError):
    """The resolver has no number that may be dialled for this lead.

    `retryable` is the dialer's verdict: False means skip the lead (not found, no
    valid number, do-not-call); True means try again later, no sooner than
    `retry_after` seconds when that is set. A compliance refusal adds
    `next_allowed_at` (`outside_calling_window`: the aware UTC start of the next
    allowed window) or `list_name` (`do_not_call_list`: the list or source that
    holds the number).
    """

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        campaign_id: str | None = None,
        external_id: str | None = None,
        detail: str | None = None,
        elapsed: float = 0.0,
        next_allowed_at: _dt.datetime | None = None,
        list_name: str | None = None,
    ) -> None:
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after = retry_after_hint(retry_after)
        self.campaign_id = campaign_id
        self.external_id = external_id
        self.detail = detail
        self.elapsed = elapsed
        self.next_allowed_at = next_allowed_at
        self.list_name = list_name
        verdict = "retry later" if retryable else "skip"
        if retryable and retry_after is not None:
            verdict = f"retry after {retry_after:g}s"
        text = f"{reason} ({verdict})"
        if detail:
            text = f"{text}: {detail}"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its attributes rather than its constructor's arguments (each
        # subclass takes others): a refusal pickles and copies, e.g. across processes.
        return (_restore, (type(self), self.args, self.__dict__.copy()))


def _restore(cls: type[Unresolvable], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    refusal = cls.__new__(cls)
    Exception.__init__(refusal, *args)
    refusal.__dict__.update(state)
    return refusal


class InvalidLead(Unresolvable, ValueError):
    """A lead that fails validation: no dial is possible, whatever the CRM says.

    Raised by `Resolver.resolve`, and returned in place of a result by
    `Resolver.resolve_many` (so one malformed lead never fails a batch). `field` is
    the first offending field as the Lupitor API spells it (`externalId`), `index`
    the lead's position in a batch (None for a single lead), `problems` every
    `(field, message)` found. Also a `ValueError`, as pydantic's error was.
    """

    def __init__(
        self,
        problems: list[tuple[str | None, str]],
        *,
        index: int | None = None,
        campaign_id: str | None = None,
        external_id: str | None = None,
    ) -> None:
        self.problems = problems or [(None, "not a lead")]
        self.index = index
        self.field = self.problems[0][0]
        where = f"leads[{index}]" if index is not None else "lead"
        detail = "; ".join(
            f"{where}.{field}: {message}" if field else f"{where}: {message}"
            for field, message in self.problems
        )
        super().__init__(
            "invalid_lead",
            retryable=False,
            campaign_id=campaign_id,
            external_id=external_id,
            detail=detail,
        )


_MOST_TO_SUGGEST_FROM = 200


class UnknownCampaign(Unresolvable):
    """No campaign with the lead's `campaignId` is configured in this resolver.

    A configuration mistake that no retry fixes: a permanent verdict (skip), not
    "retry later". `configured` lists the campaign ids the resolver does have.
    """

    def __init__(
        self,
        campaign_id: str,
        configured: list[str],
        *,
        external_id: str | None = None,
        elapsed: float = 0.0,
    ) -> None:
        self.configured = configured
        # A suggestion costs a comparison per configured id: skipped past a few
        # hundred, where a typo is better found in the configuration anyway.
        close = (
            difflib.get_close_matches(campaign_id, configured, n=1)
            if len(configured) <= _MOST_TO_SUGGEST_FROM
            else []
        )
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(configured[:10]) + (", ..." if len(configured) > 10 else "")
        # The id is the caller's input: shown masked and bounded, like any input.
        from ._redaction import redact  # here: redaction imports phone, which imports us

        shown = redact(repr(campaign_id), limit=80)
        super().__init__(
            "unknown_campaign",
            retryable=False,
            campaign_id=campaign_id,
            external_id=external_id,
            detail=f"no campaign {shown} is configured{hint} (configured: {listed or 'none'})",
            elapsed=elapsed,
        )


class LupitorError(PredialError):
    """The Lupitor Leads API answered with an error; `status` and `message` are kept."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status} {message}" if status is not None else message)


class LupitorAuthError(LupitorError):
    """401: "Missing API key" or "Invalid or inactive API key"."""


class LupitorForbidden(LupitorError):
    """403: the API key lacks the scope (write) this call needs."""


class LupitorNotFound(LupitorError):
    """404: "Campaign not found or access denied", or "Lead not found"."""


class LupitorValidationError(LupitorError):
    """400: the request broke a documented rule ("campaignId is required", ...)."""


class LeadAlreadyExists(LupitorValidationError):
    """400 "Lead already exists": the campaign has a lead with this externalId or phone."""


class LupitorRateLimited(LupitorError):
    """429 that outlasted the client's own waiting; `retry_after` in seconds."""

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status)


class LupitorUnavailable(LupitorError):
    """5xx, a timeout or a dropped connection, after the client's retries."""


class LupitorAnswerLost(LupitorUnavailable):
    """A create request may have been committed but its answer was lost, and the
    caller asked not to resend blindly (the server would not deduplicate it)."""
