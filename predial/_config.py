"""`predial.toml`: campaigns, their adapters and policies, and resolver defaults.

```toml
[resolver]
deadline = 3.0
label_preference = ["mobile", "main", "work", "home"]
plugins = ["my_adapters.py"]          # extra plugin modules or files, no packaging needed

[resolver.cache]
positive_ttl = 300
negative_ttl = 30
stale_grace = 3600

[[campaigns]]
id = "cmp_solar"
adapter = "hubspot"
default_region = "US"

[campaigns.settings]
token = "${HUBSPOT_TOKEN}"            # secrets come from the environment, never the file

[campaigns.policy]
allowed_regions = ["US", "CA"]
```

`${VAR}` (or `${VAR:-default}`) anywhere in a string is read from the environment; a
missing variable is an error naming it. Settings that look like secrets (`token`,
`client_secret`, `password`, ...), at any depth of a campaign's settings (`headers =
{X-Api-Key = ...}`), must be written that way, and without a default (a default is
written in the file too). Relative paths in settings
named `path` or `*_path` are read from the config file's directory. Every problem in
the file is found at once (a missing variable does not hide a typo elsewhere), and
each names its key path (`campaigns[2].settings.token`) and what is wrong, in
predial's words (`resolver.deadlin: unknown setting; did you mean 'deadline'?`).
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import importlib
import importlib.util
import inspect
import itertools
import json
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from ._breaker import BreakerSettings
from ._cache import CacheSettings
from ._campaign import Campaign, RetrySettings
from ._phone import DEFAULT_REFUSED_TYPES, PhonePolicy
from ._redaction import redact, register_secret
from ._wording import value_problem
from .compliance._gate import Compliance
from .errors import ConfigurationError, PluginLoadError
from .service._settings import ServiceConfig
from .shared import RedisTier, url_problem

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "CampaignConfig",
    "ConfigCheck",
    "PredialConfig",
    "ResolverConfig",
    "check_config",
    "find_config",
    "is_secret_setting",
    "load_config",
    "problem_order",
    "problems_text",
    "redacted_problem",
    "secret_values",
    "service_problems",
    "validation_problems",
]

DEFAULT_CONFIG = "predial.toml"
CONFIG_ENV = "PREDIAL_CONFIG"

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# A setting's name split into words: snake_case, kebab-case, camelCase, dotted.
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_SECRET_WORDS = frozenset(
    {"token", "secret", "password", "passwd", "pwd", "passphrase", "apikey", "credential"}
    | {"credentials", "cookie"}
)
_SECRET_PAIRS = frozenset(
    {("api", "key"), ("private", "key"), ("access", "key"), ("client", "key")}
    | {("signing", "key"), ("secret", "key")}
)


def is_secret_setting(key: str) -> bool:
    """Whether a setting named `key` holds a secret (`api_token`, `clientSecret`,
    `X-Api-Key`, `private_key`, `passphrase`...); `refresh_token_file` and the like
    name where one is kept, which is not itself secret."""
    if key.lower().endswith(("_file", "_path", "_url")):
        return False
    words = [word.lower() for word in _WORD.findall(key)]
    if any(word in _SECRET_WORDS for word in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def secret_values(settings: Mapping[str, Any]) -> list[object]:
    """Every value held under a secret setting, nested tables (`headers = {X-Api-Key =
    ...}`) included: what `predial._redaction.register_secret` should know."""
    found: list[object] = []

    def walk(value: object, secret: bool) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, secret or is_secret_setting(str(key)))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, secret)
        elif secret:
            found.append(value)

    walk(settings, False)
    return found


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The defaults are the runtime classes' own, defined there once; the bounds are what
# the file may say.
_POLICY, _CACHE, _RETRY = PhonePolicy(), CacheSettings(), RetrySettings()
_BREAKER = BreakerSettings()
_TIER = {name: p.default for name, p in inspect.signature(RedisTier).parameters.items()}


class PolicyConfig(_Strict):
    strictness: Literal["valid", "possible"] = _POLICY.strictness
    allowed_regions: list[str] | None = None
    allowed_types: list[str] | None = None
    refused_types: list[str] = Field(default_factory=lambda: sorted(DEFAULT_REFUSED_TYPES))


class CacheConfig(_Strict):
    positive_ttl: float = Field(default=_CACHE.positive_ttl, ge=0)
    negative_ttl: float = Field(default=_CACHE.negative_ttl, ge=0)
    stale_grace: float = Field(default=_CACHE.stale_grace, ge=0)
    maxsize: int = Field(default=_CACHE.maxsize, ge=1)

    def settings(self) -> CacheSettings:
        return CacheSettings(**self.model_dump())


class RetryConfig(_Strict):
    attempts: int = Field(default=_RETRY.attempts, ge=1)
    initial: float = Field(default=_RETRY.initial, ge=0)
    maximum: float = Field(default=_RETRY.maximum, ge=0)


class BreakerConfig(_Strict):
    failure_threshold: int = Field(default=_BREAKER.failure_threshold, ge=1)
    open_for: float = Field(default=_BREAKER.open_for, gt=0)
    slow_call: float | None = Field(default=_BREAKER.slow_call, gt=0)


class SharedConfig(_Strict):
    """`[resolver.shared]`: the shared tier on Redis or Valkey (`predial.RedisTier`)."""

    url: str = Field(min_length=1)
    prefix: str = _TIER["prefix"]
    timeout: float = Field(default=_TIER["timeout"], gt=0, lt=3600)
    cluster: bool = _TIER["cluster"]
    local_ttl: float = Field(default=_TIER["local_ttl"], gt=0, lt=3600)
    retry_interval: float = Field(default=_TIER["retry_interval"], gt=0, lt=3600)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        # The value may hold a password: the message never quotes it.
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                "is not a Redis URL: use redis://host:6379/0, rediss:// for TLS, "
                "redis://:password@host:6379/0, unix:///path/redis.sock (Valkey "
                "takes the same)"
            )
        problem = url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "{} \n\r"):
            raise ValueError("must be non-empty, without { } or spaces")
        return value

    def tier(self) -> RedisTier:
        return RedisTier(**self.model_dump())


class ResolverComplianceConfig(_Strict):
    """`[resolver.compliance]`: where the do-not-call lists are kept and where every
    decision is audited (docs/compliance.md)."""

    dnc_dir: str | None = Field(default=None, min_length=1)
    #: A file path (rotated), or "-" for standard output.
    audit: str | None = Field(default=None, min_length=1)
    audit_key: str | None = Field(default=None, min_length=16, repr=False)
    audit_max_bytes: int = Field(default=100 * 2**20, ge=4096)
    audit_backups: int = Field(default=10, ge=1, le=1000)
    #: What the frequency caps do while the shared tier's Redis is down.
    caps_on_redis_down: Literal["local", "closed"] = "closed"

    @model_validator(mode="after")
    def _key_with_audit(self) -> ResolverComplianceConfig:
        if self.audit is not None and not self.audit_key:
            raise ValueError(
                "audit_key is required with audit: the external ids are written as an "
                'HMAC under it; set audit_key = "${PREDIAL_AUDIT_KEY}" and export a random '
                "key (python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        return self


class LocationKeysConfig(_Strict):
    """`location_keys`: the lead metadata keys read for the callee's location."""

    postal_code: list[str] | None = Field(default=None, min_length=1)
    state: list[str] | None = Field(default=None, min_length=1)
    timezone: list[str] | None = Field(default=None, min_length=1)


class CampaignComplianceConfig(_Strict):
    """`[campaigns.compliance]`: a campaign's gate (`predial.compliance.Compliance`)."""

    rules: str = "us"
    dnc_lists: list[str] = Field(default_factory=list)
    dnc_sources: list[str] = Field(default_factory=list)
    closing_margin: float = Field(default=60.0, ge=0, lt=3600)
    caps: bool = True
    location_keys: LocationKeysConfig | None = None

    @field_validator("rules")
    @classmethod
    def _known_ruleset(cls, value: str) -> str:
        from .compliance._windows import shipped_rulesets

        known = shipped_rulesets()
        if value not in known:
            raise ValueError(f"no ruleset {value!r}: predial ships {', '.join(sorted(known))}")
        return value

    @field_validator("dnc_lists", "dnc_sources")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        if not all(name.strip() for name in value):
            raise ValueError("names must not be empty")
        return value

    def settings(self) -> Compliance:
        from .compliance import LocationKeys

        chosen = self.location_keys.model_dump(exclude_none=True) if self.location_keys else {}
        keys = LocationKeys(**chosen)
        return Compliance(
            rules=self.rules,
            dnc_lists=tuple(self.dnc_lists),
            dnc_sources=tuple(self.dnc_sources),
            keys=keys,
            closing_margin=self.closing_margin,
            caps=self.caps,
        )


class ResolverConfig(_Strict):
    deadline: float = Field(default=3.0, gt=0, le=60)
    label_preference: list[str] | None = None
    max_adapter_threads: int = Field(default=32, ge=1)
    plugins: list[str] = Field(default_factory=list)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig | None = None
    shared: SharedConfig | None = None
    compliance: ResolverComplianceConfig | None = None


class CampaignConfig(_Strict):
    id: str = Field(min_length=1)
    adapter: str = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    default_region: str | None = None
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    label_preference: list[str] | None = None
    deadline: float | None = Field(default=None, gt=0, le=60)
    cache: CacheConfig | None = None
    #: "us" (a ruleset's name: its defaults), or a table of `CampaignComplianceConfig`.
    compliance: CampaignComplianceConfig | None = None

    @field_validator("compliance", mode="before")
    @classmethod
    def _ruleset_name(cls, value: object) -> object:
        # `compliance = "us"` is `[campaigns.compliance] rules = "us"`: one model, so a
        # mistake is reported once, at its key, not once per spelling.
        if isinstance(value, bool):
            raise ValueError(
                'give a ruleset\'s name (compliance = "us") or a [campaigns.compliance] '
                "table, not true/false"
            )
        return {"rules": value} if isinstance(value, str) else value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None:
            PhonePolicy(default_region=value)  # raises with a clear message if unknown
            return value.upper()
        return value

    def phone_policy(self) -> PhonePolicy:
        policy = self.policy
        return PhonePolicy(
            default_region=self.default_region,
            strictness=policy.strictness,
            allowed_regions=frozenset(policy.allowed_regions) if policy.allowed_regions else None,
            allowed_types=frozenset(policy.allowed_types) if policy.allowed_types else None,
            refused_types=frozenset(policy.refused_types),
        )

    def campaign(self) -> Campaign:
        return Campaign(
            id=self.id,
            adapter=self.adapter,
            settings=self.settings,
            default_region=self.default_region,
            policy=self.phone_policy(),
            label_preference=tuple(self.label_preference) if self.label_preference else None,
            deadline=self.deadline,
            cache=self.cache.settings() if self.cache else None,
            compliance=self.compliance.settings() if self.compliance else None,
        )


class PredialConfig(_Strict):
    """A validated `predial.toml`."""

    resolver: ResolverConfig = Field(default_factory=ResolverConfig)
    campaigns: list[CampaignConfig] = Field(default_factory=list)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    path: Path | None = None
    #: `[service]`'s environment variables that are not set, as problem lines
    #: (`service.keys[0].key: environment variable DIALER_KEY is not set`): an error
    #: for the service only, so other users of the file are not held to them.
    service_unset: tuple[str, ...] = ()

    @field_validator("campaigns")
    @classmethod
    def _unique_ids(cls, campaigns: list[CampaignConfig]) -> list[CampaignConfig]:
        seen: set[str] = set()
        for campaign in campaigns:
            if campaign.id in seen:
                raise PydanticCustomError(
                    "duplicate_campaign", "campaign id {id!r} appears twice", {"id": campaign.id}
                )
            seen.add(campaign.id)
        return campaigns

    def service_problems(self, listening_on: str | None = None) -> list[str]:
        """Every problem of `[service]`, one `key.path: what is wrong` each
        (`service_problems`); `listening_on`: the address it would listen on, for
        the checks `predial serve` makes there."""
        if self.service_unset:  # the rest would judge the stand-ins
            return list(self.service_unset)
        known = [campaign.id for campaign in self.campaigns]
        return service_problems(self.service, known, listening_on=listening_on)

    @property
    def service_error(self) -> str | None:
        """Why `[service]` cannot be used, or None."""
        problems = self.service_problems()
        return problems_text(self.path or DEFAULT_CONFIG, problems) if problems else None

    def checked_service(self) -> ServiceConfig:
        """`[service]`, or `ConfigurationError` naming each of its problems
        (`service_problems`). Only the service asks: other users of the file are not
        held to its settings."""
        error = self.service_error
        if error is not None:
            raise ConfigurationError(error)
        return self.service

    def resolver_options(self) -> dict[str, Any]:
        """Keyword arguments for `Resolver` (besides campaigns and plugins)."""
        resolver = self.resolver
        options: dict[str, Any] = {
            "deadline": resolver.deadline,
            "cache": resolver.cache.settings(),
            "retry": RetrySettings(**resolver.retry.model_dump()),
            "max_adapter_threads": resolver.max_adapter_threads,
        }
        if resolver.breaker is not None:
            options["breaker"] = BreakerSettings(**resolver.breaker.model_dump())
        if resolver.label_preference:
            options["label_preference"] = tuple(resolver.label_preference)
        if resolver.shared is not None:
            options["shared"] = resolver.shared.tier()
        compliance = resolver.compliance
        if compliance is not None:
            if "shared" in options:
                from .compliance import RedisCapCounter

                options["cap_counter"] = RedisCapCounter(
                    options["shared"], on_redis_down=compliance.caps_on_redis_down
                )
            if compliance.dnc_dir is not None:
                options["dnc_dir"] = compliance.dnc_dir
            if compliance.audit is not None:
                from .compliance import AuditLog

                assert compliance.audit_key is not None  # the validator insists
                options["audit"] = AuditLog(
                    compliance.audit,
                    key=compliance.audit_key,
                    max_bytes=compliance.audit_max_bytes,
                    backups=compliance.audit_backups,
                )
        return options

    def plugin_modules(self, failed: dict[int, PluginLoadError] | None = None) -> list[ModuleType]:
        """Import the `resolver.plugins` modules (dotted names or `.py` files).

        A module that cannot be imported raises `PluginLoadError` (a
        `ConfigurationError`) naming its key path, the plugin and why. With `failed`
        given, each such error is put there by its index in `resolver.plugins`
        instead, and the other modules are still imported (`predial plugins` lists
        the failed ones; see `PluginRegistry.add_configured`).
        """
        base = self.path.parent if self.path else Path.cwd()
        modules = []
        # A plugin named twice (`["a/x.py", "./a/x.py"]`) is imported once: the same
        # module, or the same error, for both (`add_configured` registers it once).
        done: dict[str, ModuleType | PluginLoadError] = {}
        for index, spec in enumerate(self.resolver.plugins):
            key = _plugin_key(spec, base)
            result = done.get(key)
            if result is None:
                try:
                    result = _import_plugin(spec, base, self.path, index)
                except PluginLoadError as error:
                    result = error
                done[key] = result
            if isinstance(result, PluginLoadError):
                if failed is None:
                    raise result
                failed[index] = result
            else:
                modules.append(result)
        return modules


def service_problems(
    service: ServiceConfig, campaigns: Iterable[str], *, listening_on: str | None = None
) -> list[str]:
    """Every problem of a valid `[service]`, one `key.path: what is wrong` each: no
    way to authenticate, a key scoped to a campaign that is not configured (that key
    would get 403 on every request) and, with `listening_on` (an address), what
    `predial serve` refuses there (`ServiceConfig.listening_problems`)."""
    problems = []
    credentials = service.credentials_problem()
    if credentials is not None:
        problems.append(credentials)
    known = set(campaigns)
    for index, key in enumerate(service.keys):
        for name in key.campaigns:
            if name != "*" and name not in known:
                problems.append(
                    f"service.keys[{index}].campaigns: {name!r} is not a configured "
                    f"campaign (configured: {', '.join(sorted(known)) or 'none'})"
                )
    if listening_on is not None:
        problems.extend(service.listening_problems(listening_on, credentials=False))
    return problems


_MODULE_CHARACTERS = re.compile(r"\W")


def _plugin_file(spec: str, base: Path) -> Path:
    return Path(spec) if Path(spec).is_absolute() else base / spec


def _plugin_key(spec: str, base: Path) -> str:
    """What a `[resolver] plugins` entry names: a file by its resolved path, a module
    by its name."""
    if not spec.endswith(".py"):
        return f"module:{spec}"
    try:
        return f"file:{_plugin_file(spec, base).resolve()}"
    except (OSError, RuntimeError):  # a symbolic link loop: it fails on import
        return f"file:{_plugin_file(spec, base)}"


def _import_plugin(spec: str, base: Path, config: Path | None, index: int) -> ModuleType:
    where = f"{config or DEFAULT_CONFIG}: resolver.plugins[{index}]"
    if spec.endswith(".py"):
        file = _plugin_file(spec, base)
        if not file.is_file():
            relative = "" if Path(spec).is_absolute() else " (relative to the configuration)"
            raise PluginLoadError(
                spec, f"no such file {str(file)!r}; fix the path{relative} or remove it", where
            )
        # A name of its own for each file (two files named x.py in different folders
        # must not take each other's place in sys.modules): the stem, for
        # tracebacks, and a digest of where the file is.
        digest = hashlib.sha256(_plugin_key(spec, base).encode("utf-8", "surrogatepass"))
        stem = _MODULE_CHARACTERS.sub("_", file.stem)
        name = f"predial_config_plugin_{stem}_{digest.hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, file)
        if module_spec is None or module_spec.loader is None:
            raise PluginLoadError(spec, f"cannot import {str(file)!r}", where)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:  # a syntax error or whatever the file raised
            del sys.modules[name]
            raise PluginLoadError(
                spec, f"importing {str(file)!r} raised {type(error).__name__}: {error}", where
            ) from error
        return module
    try:
        return importlib.import_module(spec)
    except Exception as error:
        raise PluginLoadError(
            spec, f"import failed: {type(error).__name__}: {error}", where
        ) from error


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_path(location: tuple[int | str, ...]) -> str:
    """`campaigns[1].settings.token`; a key TOML would quote is quoted."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            text += f".{name}" if text else name
    return text or "(top level)"


# A key path predial wrote, before the ": " that ends it (`campaigns[0].settings.token:
# must be text`): redaction would take that for a credential's key and its value.
_KEY_PATH = re.compile(
    r"(?<![\w.\]\"-])(?:resolver|campaigns|service)"
    r"(?:\[\d+\]|\.[A-Za-z0-9_-]+|\.\"(?:[^\"\\]|\\.)*\")*(?=: )"
)
# What stands for that ": " while the line is redacted (a private-use character: no
# pattern of the redaction takes it for a separator).
_HELD = "\ue000"


def redacted_problem(text: str, *, limit: int = 4000) -> str:
    """A problem line redacted (`predial._redaction.redact`): numbers masked and
    credentials removed from whatever it quotes (a value, an adapter's message), the
    key paths predial wrote kept readable (`campaigns[0].settings.token: ...` is not
    a credential; a key path's own keys are redacted too: a number written as a key
    is masked)."""
    if _HELD in text:  # the file wrote the stand-in itself: no key path is spared
        return redact(text, limit=limit)
    held = _KEY_PATH.sub(lambda match: match.group() + _HELD, text).replace(_HELD + ": ", _HELD)
    return redact(held, limit=limit).replace(_HELD, ": ")


def problems_text(file: str | os.PathLike[str], problems: list[str]) -> str:
    """A `ConfigurationError`'s text for `problems` of `file`: one line for one, a
    count and a line each for several."""
    if len(problems) == 1:
        return f"{file}: {problems[0]}"
    listed = "".join(f"\n  {problem}" for problem in problems)
    return f"{file}: {len(problems)} problems:{listed}"


_SECTIONS = {"resolver": 0, "campaigns": 1, "service": 2}
_SECTION = re.compile(r"(\w+)(?:\[(\d+)\])?")


def problem_order(problem: str) -> tuple[int, int]:
    """A key that sorts `key.path: ...` problems as the file is laid out: resolver,
    then each campaign in turn, then the service (a stable sort keeps the order of
    one key's problems)."""
    match = _SECTION.match(problem)
    if match is None:
        return (len(_SECTIONS), 0)
    index = match.group(2)
    return (_SECTIONS.get(match.group(1), len(_SECTIONS)), int(index) if index else -1)


def _unwrap(annotation: Any) -> list[Any]:
    """The types a field's annotation may hold (`X | None` -> [X, NoneType])."""
    if get_origin(annotation) in (Union, UnionType):
        return [item for arg in get_args(annotation) for item in _unwrap(arg)]
    return [annotation]


def _known_settings(model: type[BaseModel], location: tuple[int | str, ...]) -> list[str]:
    """The settings allowed at `location` (a table inside `model`), for "did you mean"."""
    current: list[Any] = [model]
    for part in location:
        following: list[Any] = []
        for kind in current:
            if isinstance(part, int):
                if get_origin(kind) in (list, tuple):
                    following.extend(_unwrap(get_args(kind)[0]))
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                info = kind.model_fields.get(part)
                if info is not None:
                    following.extend(_unwrap(info.annotation))
        current = following
    for kind in current:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return list(kind.model_fields)
    return []


def _wording(item: ErrorDetails, model: type[BaseModel] | None) -> str:
    kind = item["type"]
    location = item["loc"]
    if kind == "extra_forbidden" and location:
        known = [
            name
            for name in (_known_settings(model, location[:-1]) if model else [])
            if name not in _INTERNAL_FIELDS
        ]
        close = difflib.get_close_matches(str(location[-1]), known, n=1, cutoff=0.6)
        if close:
            return f"unknown setting; did you mean {close[0]!r}?"
        if known:
            return f"unknown setting; settings here: {', '.join(known)}"
        return "unknown setting"
    if kind == "missing":
        return "missing: this setting is required"
    return value_problem(item)


def validation_problems(
    error: ValidationError,
    model: type[BaseModel] | None = None,
    prefix: tuple[int | str, ...] = (),
) -> list[str]:
    """pydantic's errors in predial's words, one `key.path: what is wrong` each
    (`resolver.deadlin: unknown setting; did you mean 'deadline'?`). `model` (the
    validated model) lets an unknown key be matched against the known ones; `prefix`
    is where the validated table sits. No input value is quoted."""
    return _lines(error, model, prefix)


def _lines(
    error: ValidationError,
    model: type[BaseModel] | None,
    prefix: tuple[int | str, ...] = (),
    skip: Callable[[ErrorDetails], bool] | None = None,
) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        if skip is not None and skip(item):
            continue
        line = f"{_key_path((*prefix, *item['loc']))}: {_wording(item, model)}"
        problems.append(" ".join(line.split()))  # one line, whatever a message held
    return problems


# Fields the loader fills in, never written in the file.
_INTERNAL_FIELDS = frozenset({"path", "service_unset"})


class _Unset:
    """Where `${VAR}`s that are not set were used (each is a problem of its own).

    Indexed, so that asking about a location costs its depth, not the number of
    unset variables: a file of 10,000 campaigns each with an unset variable and a
    typo is checked in linear time (it took minutes when every question walked the
    whole list)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.locations: list[tuple[int | str, ...]] = []
        self._at: set[tuple[int | str, ...]] = set()
        # Every location and each table above it.
        self._within: set[tuple[int | str, ...]] = set()

    def add(self, location: tuple[int | str, ...], problem: str | None = None) -> None:
        if problem is not None:
            self.problems.append(problem)
        self.locations.append(location)
        self._at.add(location)
        for depth in range(len(location), -1, -1):
            prefix = location[:depth]
            if prefix in self._within:
                break  # its own prefixes are in already
            self._within.add(prefix)

    def covers(self, location: tuple[int | str, ...]) -> bool:
        """Whether an error at `location` may come from a missing value: it is at or
        below one, or a table holding one."""
        location = tuple(location)
        if location in self._within:
            return True
        return any(location[:depth] in self._at for depth in range(len(location)))


def _substitute(
    value: Any, location: tuple[int | str, ...], env: Mapping[str, str], unset: _Unset
) -> Any:
    if isinstance(value, dict):
        return {key: _substitute(item, (*location, key), env, unset) for key, item in value.items()}
    if isinstance(value, list):
        return [
            _substitute(item, (*location, index), env, unset) for index, item in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def value_of(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        unset.add(location, f"{_key_path(location)}: environment variable {name} is not set")
        return ""  # a stand-in: errors it causes are left out (`_Unset.covers`)

    return _VARIABLE.sub(value_of, value)


_LITERAL_ADVICE = (
    'secrets are not written in the file; set an environment variable and write "${VARIABLE}"'
)
_DEFAULT_ADVICE = (
    'a default for a secret is a secret written in the file; write "${VARIABLE}" without '
    '":-..." and set the variable'
)


def _literal_secret(value: object) -> str | None:
    """What is wrong with a secret's value as written, or None: written out, or as
    the default of a variable (`${TOKEN:-pat-...}`), it is in the file."""
    if not isinstance(value, str) or not value:
        return None
    variables = list(_VARIABLE.finditer(value))
    if not variables:
        return _LITERAL_ADVICE
    if any(variable.group(2) for variable in variables):
        return _DEFAULT_ADVICE
    return None


def _secret_problems(raw: Mapping[str, Any]) -> list[str]:
    """Secrets written literally in the file: they belong in the environment. A
    campaign's settings are looked into at every depth: a secret in a table
    (`headers = {X-Api-Key = "..."}`) or under a secret's name (`credentials =
    {...}`) is one too."""
    problems = []

    def check(value: object, location: tuple[int | str, ...]) -> None:
        problem = _literal_secret(value)
        if problem is not None:
            problems.append(f"{_key_path(location)}: {problem}")

    service = raw.get("service")
    if isinstance(service, dict):
        keys = service.get("keys") or []
        for index, key in enumerate(keys if isinstance(keys, list) else []):
            if isinstance(key, dict):
                check(key.get("key"), ("service", "keys", index, "key"))
        secrets = service.get("webhook_secrets") or []
        for index, secret in enumerate(secrets if isinstance(secrets, list) else []):
            check(secret, ("service", "webhook_secrets", index))

    def walk(value: object, location: tuple[int | str, ...], secret: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*location, key), secret or is_secret_setting(str(key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*location, index), secret)
        elif secret:
            check(value, location)

    campaigns = raw.get("campaigns") or []
    for index, campaign in enumerate(campaigns if isinstance(campaigns, list) else []):
        settings = campaign.get("settings") if isinstance(campaign, dict) else None
        if isinstance(settings, dict):
            walk(settings, ("campaigns", index, "settings"), False)
    audit_key = _audit_key(raw)
    if audit_key is not None:
        check(audit_key, ("resolver", "compliance", "audit_key"))
    return problems


def _audit_key(raw: Mapping[str, Any]) -> object:
    resolver = raw.get("resolver")
    compliance = resolver.get("compliance") if isinstance(resolver, dict) else None
    return compliance.get("audit_key") if isinstance(compliance, dict) else None


def _file_secrets(text: str, raw: Mapping[str, Any], env: Mapping[str, str]) -> list[object]:
    """The secrets a configuration holds (variables substituted): the values of its
    campaigns' secret settings, `[service]`'s keys and webhook secrets, and the
    values of the variables it names whose names say secret (`${HUBSPOT_TOKEN}`),
    wherever they are used."""
    found: list[object] = [
        env[match.group(1)]
        for match in _VARIABLE.finditer(text)
        if match.group(1) in env and is_secret_setting(match.group(1))
    ]
    campaigns = raw.get("campaigns")
    for campaign in campaigns if isinstance(campaigns, list) else []:
        settings = campaign.get("settings") if isinstance(campaign, dict) else None
        if isinstance(settings, dict):
            found.extend(secret_values(settings))
    service = raw.get("service")
    if isinstance(service, dict):
        keys = service.get("keys")
        for key in keys if isinstance(keys, list) else []:
            if isinstance(key, dict):
                found.append(key.get("key"))
        secrets = service.get("webhook_secrets")
        found.extend(secrets if isinstance(secrets, list) else [])
    audit_key = _audit_key(raw)
    if audit_key is not None:
        found.append(audit_key)
    return found


def _duplicate_ids(raw: Mapping[str, Any]) -> list[str]:
    # Checked on the raw tables: pydantic checks the list as a whole only once every
    # campaign in it is valid, so a typo elsewhere would hide a duplicate.
    campaigns = raw.get("campaigns")
    first: dict[str, int] = {}
    problems = []
    for index, campaign in enumerate(campaigns if isinstance(campaigns, list) else []):
        name = campaign.get("id") if isinstance(campaign, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(
                f"campaigns[{index}].id: campaign id {name!r} appears twice "
                f"(first at campaigns[{first[name]}])"
            )
        else:
            first[name] = index
    return problems


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    resolver = raw.get("resolver")
    compliance = resolver.get("compliance") if isinstance(resolver, dict) else None
    if isinstance(compliance, dict):
        for key in ("dnc_dir", "audit"):
            value = compliance.get(key)
            if isinstance(value, str) and value not in ("", "-") and not Path(value).is_absolute():
                compliance[key] = str(base / value)
    campaigns = raw.get("campaigns")
    for campaign in campaigns if isinstance(campaigns, list) else []:
        settings = campaign.get("settings") if isinstance(campaign, dict) else None
        if not isinstance(settings, dict):
            continue
        for key, value in settings.items():
            is_path = key == "path" or str(key).endswith(("_path", "_file"))
            if is_path and isinstance(value, str) and value and not Path(value).is_absolute():
                settings[key] = str(base / value)


@dataclass(frozen=True)
class ConfigCheck:
    """Everything wrong with a `predial.toml`, found at once (`check_config`)."""

    path: Path
    #: The configuration, when nothing is wrong with it.
    config: PredialConfig | None
    #: One `key.path: what is wrong` each, in the file's order of sections.
    problems: list[str]
    #: `resolver.plugins` as written, when it is a list of strings (the adapters of a
    #: file with problems can still be checked against them).
    plugins: list[str] = field(default_factory=list)
    #: What each campaign's adapter is built from (its id, adapter and settings),
    #: by index, where those are valid, even when the campaign has other problems (a
    #: typo elsewhere must not hide a misspelt setting), with whether its settings
    #: are complete (no unset variable in them: the adapter can be built).
    campaigns: list[tuple[int, CampaignConfig, bool]] = field(default_factory=list)
    #: The adapter named by each campaign that names one as text, by index.
    adapters: dict[int, str] = field(default_factory=dict)
    #: `[service]`'s unset variables, as problem lines: the service's problems only.
    service_unset: list[str] = field(default_factory=list)
    #: `[service]` as written, when it is valid and complete on its own (so that its
    #: own checks are made even when the rest of the file has problems).
    service: ServiceConfig | None = None
    #: The campaign ids written in the file (what `[service]` keys may name).
    campaign_ids: list[str] = field(default_factory=list)
    #: Whether the file was read as TOML (if not, nothing in it could be checked).
    parsed: bool = True


def check_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> ConfigCheck:
    """Read `path` and find every problem in it at once: unreadable or invalid TOML
    (then nothing more can be read), literal secrets, unset variables, unknown or
    invalid settings, duplicate campaign ids. An unset variable does not hide the
    rest: what it feeds is left out, everything else is checked. `[service]`'s unset
    variables are not problems here (`PredialConfig.service_unset`). The file's
    secrets are registered with `predial._redaction.register_secret`, so that no
    message quotes one."""
    file = Path(path)
    env = os.environ if environ is None else environ
    if file.is_dir():
        return ConfigCheck(
            file,
            None,
            ["is a directory; give the predial.toml file (e.g. dir/predial.toml)"],
            parsed=False,
        )
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigCheck(file, None, [_no_such_file(file, env)], parsed=False)
    except OSError as error:
        if error.errno != errno.ELOOP:
            return ConfigCheck(file, None, [f"cannot be read: {error}"], parsed=False)
        return ConfigCheck(file, None, [LINK_LOOP], parsed=False)
    except UnicodeDecodeError as error:
        return ConfigCheck(file, None, [f"cannot be read: {error}"], parsed=False)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return ConfigCheck(file, None, [f"invalid TOML: {error}"], parsed=False)
    except RecursionError:
        # tomllib reads nested tables and arrays by recursion: a few hundred levels
        # (`x = {a = {a = ...}}`) exhaust Python's stack.
        return ConfigCheck(file, None, [_TOO_DEEP], parsed=False)
    if _too_deep(raw):
        # What reads the tables next recurses too (variables, secrets, pydantic):
        # a depth tomllib could still read would exhaust the stack there.
        return ConfigCheck(file, None, [_TOO_DEEP], parsed=False)
    problems = _secret_problems(raw)
    # [service] is read only by the service: a dialer or an operator's CLI sharing the
    # file need not hold the service's keys. Its unset variables are an error when
    # the service starts (`PredialConfig.checked_service`), not here.
    service_raw = raw.pop("service", None)
    unset, service_unset = _Unset(), _Unset()
    raw = _substitute(raw, (), env, unset)
    if service_raw is not None:
        raw["service"] = _substitute(service_raw, ("service",), env, service_unset)
    # Known by value from here on, before any message could quote one: a secret put
    # in another setting too (`default_region = "${HUBSPOT_TOKEN}"`) is redacted
    # from the problem that setting gets.
    for secret in _file_secrets(text, raw, env):
        register_secret(secret)
    problems.extend(unset.problems)
    problems.extend(_duplicate_ids(raw))
    _resolve_paths(raw, file.parent)
    both = _Unset()
    for location in (*unset.locations, *service_unset.locations):
        both.add(location)
    config: PredialConfig | None = None
    try:
        config = PredialConfig.model_validate(raw)
    except ValidationError as error:
        problems.extend(
            _lines(
                error,
                PredialConfig,
                skip=lambda item: item["type"] == "duplicate_campaign" or both.covers(item["loc"]),
            )
        )
    if service_unset.locations and not problems:
        # The stand-ins must not become the service's settings: the service gets
        # none, and refuses to start (`checked_service`); everyone else goes on.
        del raw["service"]
        try:
            config = PredialConfig.model_validate(raw)
        except ValidationError as error:
            problems.extend(_lines(error, PredialConfig))
    problems.sort(key=problem_order)
    # A problem may quote a value of the file (`default_region 'pat-...'`, a key that
    # is a phone number): every user of these lines gets them redacted.
    problems = [redacted_problem(problem) for problem in problems]
    service: ServiceConfig | None = None
    if isinstance(raw.get("service"), dict) and not service_unset.locations:
        try:
            service = ServiceConfig.model_validate(raw["service"])
        except ValidationError:
            service = None  # its problems are among the file's (validated above)
    found = ConfigCheck(
        file, None, problems, *_parts(raw, unset), service_unset.problems, service, _ids(raw)
    )
    if problems or config is None:
        return found
    config = config.model_copy(
        update={"path": file, "service_unset": tuple(service_unset.problems)}
    )
    return replace(found, config=config)


_TOO_DEEP = "nested too deeply to read"
#: A path whose symbolic links lead back to each other, as every command says it
#: (the CLI's file parameters too).
LINK_LOOP = "is a symbolic link loop (its links lead back to each other); give the file itself"
#: Tables and arrays nested deeper than this are refused: predial's own settings go
#: five deep, an adapter's a few more.
_MAX_DEPTH = 64


def _too_deep(raw: Mapping[str, Any]) -> bool:
    """Whether tables and arrays nest deeper than `_MAX_DEPTH` (walked without
    recursion, in linear time)."""
    pending: list[tuple[object, int]] = [(raw, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > _MAX_DEPTH:
            return True
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
    return False


def _no_such_file(file: Path, env: Mapping[str, str]) -> str:
    """What to do about a configuration file that is not there: a new user's first
    command meets this one."""
    named = env.get(CONFIG_ENV)
    if named and Path(named) == file:
        return (
            f"no such configuration file (named by ${CONFIG_ENV}); fix or unset "
            f"{CONFIG_ENV}, or give the file with --config PATH"
        )
    return (
        f"no such configuration file; give one with --config PATH or ${CONFIG_ENV} "
        "(examples/predial.toml in predial's repository is a starting point)"
    )


def _parts(
    raw: Mapping[str, Any], unset: _Unset
) -> tuple[list[str], list[tuple[int, CampaignConfig, bool]], dict[int, str]]:
    resolver = raw.get("resolver")
    listed = resolver.get("plugins") if isinstance(resolver, dict) else None
    plugins = (
        listed if isinstance(listed, list) and all(isinstance(item, str) for item in listed) else []
    )
    campaigns: list[tuple[int, CampaignConfig, bool]] = []
    adapters: dict[int, str] = {}
    entries = raw.get("campaigns")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue
        if unset.covers(("campaigns", index, "adapter")):
            continue  # the adapter's name is a stand-in: nothing can be said of it
        if isinstance(entry.get("adapter"), str) and entry["adapter"]:
            adapters[index] = entry["adapter"]
        # Only what the adapter is built from: the campaign's other problems (a
        # misspelt default_region) are reported already and must not hide its
        # adapter's. A missing or invalid id is one of those: a stand-in names it.
        core = {key: entry[key] for key in ("adapter", "settings") if key in entry}
        identity = entry.get("id")
        core["id"] = identity if isinstance(identity, str) and identity else f"#{index}"
        # The compliance gate too (its lists and sources are checked as the resolver's
        # start-up checks them), unless it is itself wrong: then the adapter alone.
        gated = {**core, "compliance": entry["compliance"]} if "compliance" in entry else core
        try:
            campaign = CampaignConfig.model_validate(gated)
        except ValidationError:
            try:
                campaign = CampaignConfig.model_validate(core)
            except ValidationError:
                continue
        complete = not unset.covers(("campaigns", index, "settings"))
        campaigns.append((index, campaign, complete))
    return plugins, campaigns, adapters


def _ids(raw: Mapping[str, Any]) -> list[str]:
    entries = raw.get("campaigns")
    return [
        entry["id"]
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]
    ]


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> PredialConfig:
    """Read and validate a `predial.toml`; `ConfigurationError` names the file and
    every problem found, each with its key path (`check_config`)."""
    checked = check_config(path, environ)
    if checked.config is None:
        raise ConfigurationError(problems_text(checked.path, checked.problems))
    return checked.config


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config to use: `explicit`, else `$PREDIAL_CONFIG`, else `./predial.toml`."""
    if explicit is not None:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else Path(DEFAULT_CONFIG)
