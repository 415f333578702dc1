"""`[service]` in `predial.toml`: how `predial serve` listens, authenticates and admits.

```toml
[service]
host = "127.0.0.1"
port = 8000
webhook_secrets = ["${PREDIAL_WEBHOOK_SECRET}"]   # whsec_…; several while rotating
rate_limit = "200/second"                         # per caller; limits' notation

[[service.keys]]
name = "dialer-eu"                                # shown in logs instead of the key
key = "${DIALER_KEY}"
campaigns = ["cmp_1", "cmp_2"]                    # or ["*"]
```

Nothing here needs the `server` extra: `predial.toml` is validated the same way
whether or not the service is installed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "ApiKeyConfig",
    "ServiceConfig",
    "decode_webhook_secret",
    "is_loopback",
]

# limits' rate notation: "100/second", "10 per 1 minute", "5/2 seconds".
_RATE = re.compile(
    r"\s*\d+\s*(/|per)\s*(\d+\s*)?(second|seconds|minute|minutes|hour|hours|day|days)\s*",
    re.IGNORECASE,
)


def decode_webhook_secret(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks secret (`whsec_` + base64, 24–64 bytes)."""
    text = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "a webhook secret is 'whsec_' followed by base64 (Standard Webhooks); "
            "this one is not valid base64"
        ) from None
    if not 24 <= len(key) <= 64:
        raise ValueError(
            f"a webhook secret must decode to 24–64 bytes (Standard Webhooks); this one has "
            f'{len(key)}. Generate one with: python -c "import base64,os;'
            f"print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
        )
    return key


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or `localhost`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# How signed and unauthenticated callers appear in logs and admission counters.
_RESERVED_NAMES = frozenset({"webhook", "anonymous"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_rate(value: str | None) -> str | None:
    if value is not None and not _RATE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a rate: write it as '100/second', '6000 per minute' or "
            "'10/5 seconds'"
        )
    return value


class ApiKeyConfig(_Strict):
    """One API key: who it is (`name`, for logs and metrics) and what it may ask."""

    key: SecretStr
    campaigns: list[str] = Field(min_length=1)
    name: str | None = Field(default=None, min_length=1, max_length=64)
    max_in_flight: int | None = Field(default=None, ge=1)
    rate_limit: str | None = None

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("an API key must be at least 16 characters (use a random token)")
        return value

    @field_validator("campaigns")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not item for item in value):
            raise ValueError('a campaign id cannot be empty; use ["*"] for every campaign')
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        return _check_rate(value)

    @property
    def all_campaigns(self) -> bool:
        return "*" in self.campaigns


class ServiceConfig(_Strict):
    """Settings of `predial serve` and `predial.service.create_app`."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    #: Only honoured on a loopback address; anywhere else requests need credentials.
    allow_unauthenticated: bool = False
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    #: Seconds a signed request's `webhook-timestamp` may differ from our clock.
    signature_tolerance: float = Field(default=300.0, gt=0, le=3600)
    #: Largest request body accepted, in bytes (413 above).
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    #: Most leads in one `POST /v1/resolve/batch`.
    max_batch: int = Field(default=1000, ge=1, le=10_000)
    #: Seconds a request body may take to arrive (408 after).
    body_timeout: float = Field(default=10.0, gt=0, le=300)
    #: Bytes of signed requests' bodies held at once before their signatures are
    #: checked (503 `busy` above): what an unauthenticated sender can make the
    #: service hold. Idle connections hold none; each such body gets at most 5 s.
    max_unverified_bytes: int = Field(default=64 * 1_048_576, ge=65_536)
    #: Open connections and requests uvicorn serves at once (503 above), per worker.
    max_connections: int = Field(default=2048, ge=1)
    #: uvicorn's HTTP/1.1 implementation: h11 caps a request's headers (16 KB);
    #: httptools is faster but caps nothing, so use it behind a proxy that does.
    http: Literal["h11", "httptools"] = "h11"
    #: Leads of one batch resolved at once: a 1,000-lead batch of misses must not
    #: become 1,000 simultaneous CRM calls.
    batch_concurrency: int = Field(default=100, ge=1, le=10_000)
    #: Requests one caller may have in flight at once (429 above); per worker.
    max_in_flight: int = Field(default=512, ge=1)
    #: Requests per caller, in limits' notation ("200/second"); none by default.
    rate_limit: str | None = None
    #: Seconds between SIGTERM and closing the listener, answering 503 meanwhile, so
    #: a load balancer sees /readyz fail before connections are refused.
    drain_delay: float = Field(default=0.0, ge=0, le=300)
    #: Seconds in-flight requests get after SIGTERM; default: the longest deadline + 5.
    shutdown_timeout: float | None = Field(default=None, gt=0, le=600)
    #: Seconds a 503 (draining) tells the caller to wait.
    retry_after: int = Field(default=1, ge=1, le=3600)
    access_log: Literal["text", "json", "off"] = "text"
    #: Addresses of reverse proxies whose X-Forwarded-For is trusted (uvicorn's).
    forwarded_allow_ips: list[str] = Field(default_factory=list)

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        return _check_rate(value)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(char.isspace() for char in value):
            raise ValueError("host must be an address such as 127.0.0.1 or 0.0.0.0")
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, secret in enumerate(value):
            try:
                decode_webhook_secret(secret.get_secret_value())
            except ValueError as error:
                raise ValueError(f"webhook_secrets[{index}]: {error}") from None
        return value

    @model_validator(mode="after")
    def _distinct_keys(self) -> ServiceConfig:
        seen: set[str] = set()
        names: set[str] = set()
        for index, item in enumerate(self.keys):
            key = item.key.get_secret_value()
            if key in seen:
                raise ValueError(f"keys[{index}]: the same key is configured twice")
            seen.add(key)
            if not key.isascii() or not key.isprintable():
                raise ValueError(
                    f"keys[{index}]: an API key must be printable ASCII (HTTP headers "
                    "carry nothing else reliably)"
                )
            name = self.key_name(index)
            if name in _RESERVED_NAMES:
                raise ValueError(
                    f"keys[{index}]: the name {name!r} is reserved for "
                    f"{'signed' if name == 'webhook' else 'unauthenticated'} callers"
                )
            if name in names:
                raise ValueError(f"keys[{index}]: the name {name!r} is used twice")
            names.add(name)
        return self

    def key_name(self, index: int) -> str:
        """How key `index` appears in logs and metrics: its name, else `key-<n>`."""
        return self.keys[index].name or f"key-{index + 1}"

    def credentials_problem(self) -> str | None:
        """Why these settings cannot authenticate anyone safely, wherever they listen."""
        if self.allow_unauthenticated and self.forwarded_allow_ips:
            return (
                "service.allow_unauthenticated with forwarded_allow_ips: a proxy forwards "
                "requests from elsewhere, which must authenticate; add [[service.keys]] "
                "or webhook_secrets"
            )
        if not (self.allow_unauthenticated or self.keys or self.webhook_secrets):
            return (
                "service: no credentials are configured; add [[service.keys]] or "
                "webhook_secrets (or, on 127.0.0.1 only, allow_unauthenticated = true)"
            )
        return None

    def listening_problems(self, host: str, *, credentials: bool = True) -> list[str]:
        """What `predial serve` refuses about listening on `host` with these settings,
        one `key.path: what is wrong` each (`config validate` reports the same):
        `credentials_problem` (unless `credentials=False`) and unauthenticated
        callers anywhere but on a loopback address."""
        problems = []
        problem = self.credentials_problem() if credentials else None
        if problem is not None:
            problems.append(problem)
        if self.allow_unauthenticated and not is_loopback(host):
            problems.append(
                f"service.allow_unauthenticated: allowed on a loopback address only, not "
                f"{host}: add [[service.keys]] or webhook_secrets, or listen on 127.0.0.1"
            )
        return problems

    def check_listening(self, host: str) -> None:
        """Refuse to listen on `host` without a way to authenticate
        (`listening_problems`, as one line)."""
        problems = self.listening_problems(host)
        if problems:
            raise ValueError("; ".join(problems))
