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
`client_secret`, `password`, ...) must be written that way. Relative paths in settings
named `path` or `*_path` are read from the config file's directory. Every error names
the file, the key path (`campaigns[2].settings.token`) and what is wrong.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from .breaker import BreakerSettings
from .cache import CacheSettings
from .campaign import Campaign, RetrySettings
from .errors import ConfigurationError
from .phone import DEFAULT_REFUSED_TYPES, PhonePolicy
from .service.settings import ServiceConfig

if TYPE_CHECKING:
    from .shared import RedisTier

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "CampaignConfig",
    "PredialConfig",
    "ResolverConfig",
    "find_config",
    "is_secret_setting",
    "load_config",
    "secret_values",
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
    ...}`) included: what `predial.redaction.register_secret` should know."""
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


class PolicyConfig(_Strict):
    strictness: Literal["valid", "possible"] = "valid"
    allowed_regions: list[str] | None = None
    allowed_types: list[str] | None = None
    refused_types: list[str] = Field(default_factory=lambda: sorted(DEFAULT_REFUSED_TYPES))


class CacheConfig(_Strict):
    positive_ttl: float = Field(default=300.0, ge=0)
    negative_ttl: float = Field(default=30.0, ge=0)
    stale_grace: float = Field(default=3600.0, ge=0)
    maxsize: int = Field(default=100_000, ge=1)

    def settings(self) -> CacheSettings:
        return CacheSettings(**self.model_dump())


class RetryConfig(_Strict):
    attempts: int = Field(default=3, ge=1)
    initial: float = Field(default=0.05, ge=0)
    maximum: float = Field(default=1.0, ge=0)


class BreakerConfig(_Strict):
    failure_threshold: int = Field(default=5, ge=1)
    open_for: float = Field(default=5.0, gt=0)
    slow_call: float | None = Field(default=None, gt=0)


class SharedConfig(_Strict):
    """`[resolver.shared]`: the shared tier on Redis or Valkey (`predial.RedisTier`)."""

    url: str = Field(min_length=1)
    prefix: str = "predial"
    timeout: float = Field(default=0.05, gt=0, lt=3600)
    cluster: bool = False
    local_ttl: float = Field(default=1.0, gt=0, lt=3600)
    retry_interval: float = Field(default=1.0, gt=0, lt=3600)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        # The value may hold a password: the message never quotes it.
        from .shared import url_problem

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
        from .shared import RedisTier

        return RedisTier(**self.model_dump())


class ResolverConfig(_Strict):
    deadline: float = Field(default=3.0, gt=0, le=60)
    label_preference: list[str] | None = None
    max_adapter_threads: int = Field(default=32, ge=1)
    plugins: list[str] = Field(default_factory=list)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig | None = None
    shared: SharedConfig | None = None


class CampaignConfig(_Strict):
    id: str = Field(min_length=1)
    adapter: str = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    default_region: str | None = None
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    label_preference: list[str] | None = None
    deadline: float | None = Field(default=None, gt=0, le=60)
    cache: CacheConfig | None = None

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
        )


class PredialConfig(_Strict):
    """A validated `predial.toml`."""

    resolver: ResolverConfig = Field(default_factory=ResolverConfig)
    campaigns: list[CampaignConfig] = Field(default_factory=list)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    path: Path | None = None
    #: Why `[service]` cannot be used (an environment variable it names is not set);
    #: raised by the service only, so other users of the file are not held to it.
    service_error: str | None = None

    @field_validator("campaigns")
    @classmethod
    def _unique_ids(cls, campaigns: list[CampaignConfig]) -> list[CampaignConfig]:
        seen: set[str] = set()
        for campaign in campaigns:
            if campaign.id in seen:
                raise ValueError(f"campaign id {campaign.id!r} appears twice")
            seen.add(campaign.id)
        return campaigns

    def checked_service(self) -> ServiceConfig:
        """`[service]`, or `ConfigurationError` if it names an unset variable or
        scopes a key to a campaign that is not configured (that key would get 403
        on every request). Only the service asks: other users of the file are not
        held to its settings."""
        if self.service_error is not None:
            raise ConfigurationError(self.service_error)
        known = {campaign.id for campaign in self.campaigns}
        for index, key in enumerate(self.service.keys):
            for name in key.campaigns:
                if name != "*" and name not in known:
                    raise ConfigurationError(
                        f"{self.path}: service.keys[{index}].campaigns: {name!r} is not a "
                        f"configured campaign (configured: {', '.join(sorted(known)) or 'none'})"
                    )
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
        return options

    def plugin_modules(self) -> list[ModuleType]:
        """Import the `resolver.plugins` modules (dotted names or `.py` files)."""
        base = self.path.parent if self.path else Path.cwd()
        return [_import_plugin(spec, base, self.path) for spec in self.resolver.plugins]


def _import_plugin(spec: str, base: Path, config: Path | None) -> ModuleType:
    where = f"{config or DEFAULT_CONFIG}: resolver.plugins"
    if spec.endswith(".py"):
        file = Path(spec) if Path(spec).is_absolute() else base / spec
        if not file.is_file():
            raise ConfigurationError(f"{where}: plugin file {str(file)!r} does not exist")
        name = f"predial_config_plugin_{file.stem}"
        module_spec = importlib.util.spec_from_file_location(name, file)
        if module_spec is None or module_spec.loader is None:
            raise ConfigurationError(f"{where}: cannot import {str(file)!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise ConfigurationError(
                f"{where}: importing {str(file)!r} failed: {type(error).__name__}: {error}"
            ) from error
        return module
    try:
        return importlib.import_module(spec)
    except Exception as error:
        raise ConfigurationError(
            f"{where}: importing {spec!r} failed: {type(error).__name__}: {error}"
        ) from error


def _key_path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _substitute(
    value: Any, location: tuple[int | str, ...], env: Mapping[str, str], file: str
) -> Any:
    if isinstance(value, dict):
        return {key: _substitute(item, (*location, key), env, file) for key, item in value.items()}
    if isinstance(value, list):
        return [
            _substitute(item, (*location, index), env, file) for index, item in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigurationError(
            f"{file}: {_key_path(location)}: environment variable {name} is not set"
        )

    return _VARIABLE.sub(replace, value)


def _literal_secret(value: object) -> bool:
    return isinstance(value, str) and bool(value) and not _VARIABLE.search(value)


def _check_secrets(raw: Mapping[str, Any], file: str) -> None:
    """Refuse secrets written literally in the file: they belong in the environment."""
    advice = (
        'secrets are not written in the file; set an environment variable and write "${VARIABLE}"'
    )
    service = raw.get("service")
    if isinstance(service, dict):
        for index, key in enumerate(service.get("keys") or []):
            if isinstance(key, dict) and _literal_secret(key.get("key")):
                raise ConfigurationError(f"{file}: service.keys[{index}].key: {advice}")
        secrets = service.get("webhook_secrets") or []
        for index, secret in enumerate(secrets if isinstance(secrets, list) else []):
            if _literal_secret(secret):
                raise ConfigurationError(f"{file}: service.webhook_secrets[{index}]: {advice}")
    for index, campaign in enumerate(raw.get("campaigns") or []):
        if not isinstance(campaign, dict):
            continue
        settings = campaign.get("settings") or {}
        if not isinstance(settings, dict):
            continue
        for key, value in settings.items():
            if is_secret_setting(str(key)) and isinstance(value, str) and value:
                if not _VARIABLE.search(value):
                    raise ConfigurationError(
                        f"{file}: campaigns[{index}].settings.{key}: secrets are not written "
                        f'in the file; set an environment variable and write "${{VARIABLE}}"'
                    )


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    for campaign in raw.get("campaigns") or []:
        settings = campaign.get("settings") if isinstance(campaign, dict) else None
        if not isinstance(settings, dict):
            continue
        for key, value in settings.items():
            is_path = key == "path" or str(key).endswith(("_path", "_file"))
            if is_path and isinstance(value, str) and value and not Path(value).is_absolute():
                settings[key] = str(base / value)


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> PredialConfig:
    """Read and validate a `predial.toml`; `ConfigurationError` says where and what."""
    file = Path(path)
    env = os.environ if environ is None else environ
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{file}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"{file}: cannot be read: {error}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{file}: invalid TOML: {error}") from None
    _check_secrets(raw, str(file))
    # [service] is read only by the service: a dialer or an operator's CLI sharing the
    # file need not hold the service's keys. Its missing variables are an error when
    # the service starts (`PredialConfig.service_error`), not here.
    service = raw.pop("service", None)
    raw = _substitute(raw, (), env, str(file))
    service_error = None
    if service is not None:
        try:
            raw["service"] = _substitute(service, ("service",), env, str(file))
        except ConfigurationError as error:
            service_error = str(error)
    _resolve_paths(raw, file.parent)
    try:
        config = PredialConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)
        problems = "; ".join(
            f"{_key_path(item['loc'])}: {item['msg'].removeprefix('Value error, ')}"
            for item in first
        )
        raise ConfigurationError(f"{file}: {problems}") from None
    return config.model_copy(update={"path": file, "service_error": service_error})


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config to use: `explicit`, else `$PREDIAL_CONFIG`, else `./predial.toml`."""
    if explicit is not None:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else Path(DEFAULT_CONFIG)
