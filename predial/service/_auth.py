"""Who is calling: API keys scoped to campaigns, and Standard Webhooks signatures.

API keys arrive as `Authorization: Bearer <key>` or `x-api-key: <key>` (Vapi's
`x-vapi-secret` too). They are looked up by their SHA-256 digest and the digest is
then compared in constant time, so neither the look-up nor the comparison times
how much of a guess was right.

Signed requests follow the Standard Webhooks specification: `webhook-id`,
`webhook-timestamp` and `webhook-signature` headers; HMAC-SHA256 over
`{id}.{timestamp}.{body}`, base64, written `v1,<signature>`, several separated by
spaces while a key rotates. A timestamp outside the tolerance is refused before the
body is read. An id already answered within the window is a replay: with the same
body it gets the same answer again while the service keeps it, or is answered anew
(a resolve is a read); with another body it is refused, 401. Ids are remembered per
process: with several workers, a replay landing on another worker within the window
is not caught (the shared Redis tier is the place for that).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._settings import ServiceConfig, decode_webhook_secret, is_loopback

__all__ = ["AuthFailure", "Authenticator", "Caller", "SignedRequest"]

# Standard Webhooks ids are short (msg_<ksuid>); a longer one is not a real sender's.
_MAX_ID = 256
_MAX_SIGNATURES = 16


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: `name` for logs and metrics, `campaigns` it may ask
    for (None: all), and its own admission allowance."""

    name: str
    campaigns: frozenset[str] | None
    max_in_flight: int
    rate_limit: str | None

    def may_ask(self, campaign_id: str) -> bool:
        return self.campaigns is None or campaign_id in self.campaigns


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The Standard Webhooks headers of one request."""

    message_id: str
    timestamp: int
    signatures: str


class AuthFailure(Exception):
    """401: no credentials, or wrong ones. The message never quotes a credential."""


class Authenticator:
    """Checks the credentials of one request against the service's configuration."""

    def __init__(self, settings: ServiceConfig, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tolerance = settings.signature_tolerance
        self._keys: dict[bytes, tuple[bytes, Caller]] = {}
        for index, item in enumerate(settings.keys):
            digest = hashlib.sha256(item.key.get_secret_value().encode()).digest()
            caller = Caller(
                settings.key_name(index),
                None if item.all_campaigns else frozenset(item.campaigns),
                item.max_in_flight or settings.max_in_flight,
                item.rate_limit or settings.rate_limit,
            )
            self._keys[digest] = (digest, caller)
        self._secrets = [
            decode_webhook_secret(secret.get_secret_value()) for secret in settings.webhook_secrets
        ]
        self.webhook_caller = Caller("webhook", None, settings.max_in_flight, settings.rate_limit)
        self.anonymous = Caller("anonymous", None, settings.max_in_flight, settings.rate_limit)
        self._allow_anonymous = settings.allow_unauthenticated
        self._seen: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def by_key(self, headers: Mapping[str, str]) -> Caller | None:
        """The caller an API key names, None when no key was sent; `AuthFailure`
        for a key that is not configured."""
        key = _presented_key(headers)
        if key is None:
            return None
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found = self._keys.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            raise AuthFailure("the API key is not valid")
        return found[1]

    def is_signed(self, headers: Mapping[str, str]) -> bool:
        return "webhook-signature" in headers

    def anonymous_allowed(self, server_host: str | None, client_host: str | None) -> bool:
        """Unauthenticated requests: only if configured, and only from loopback to a
        service listening on loopback."""
        return (
            self._allow_anonymous
            and server_host is not None
            and client_host is not None
            and is_loopback(server_host)
            and is_loopback(client_host)
        )

    def precheck(self, headers: Mapping[str, str]) -> SignedRequest:
        """What the headers of a signed request say, checked before its body is read:
        signing configured, all three headers, a sane id, a fresh timestamp. A
        request failing these costs the service no body read."""
        if not self._secrets:
            raise AuthFailure("signed requests are not configured on this service")
        message_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "")
        if not message_id or not stamp or not signatures:
            raise AuthFailure(
                "a signed request needs webhook-id, webhook-timestamp and webhook-signature"
            )
        if len(message_id) > _MAX_ID:
            raise AuthFailure("webhook-id is too long")
        try:
            timestamp = int(stamp)
        except ValueError:
            raise AuthFailure("webhook-timestamp must be Unix seconds") from None
        # Whole seconds on both sides: a timestamp of hundreds of digits is a valid
        # int but overflows a float subtraction.
        if abs(int(self._clock()) - timestamp) > self._tolerance:
            raise AuthFailure(
                f"webhook-timestamp is more than {self._tolerance:g} s from the service's "
                "clock (a stale or future request; check the sender's clock)"
            )
        return SignedRequest(message_id, timestamp, signatures)

    def check_signature(self, signed: SignedRequest, body: bytes) -> None:
        """`AuthFailure` unless one of the signatures is ours over id.timestamp.body."""
        content = f"{signed.message_id}.{signed.timestamp}.".encode() + body
        expected = [
            base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
            for key in self._secrets
        ]
        if not _any_matches(signed.signatures, expected):
            raise AuthFailure("the webhook signature does not match")

    def seen(self, message_id: str) -> bytes | None:
        """The body digest of the request with this webhook-id answered within the
        window, or None."""
        seen = self._seen
        # Ids older than twice the tolerance cannot come back with a fresh timestamp.
        horizon = self._clock() - 2 * self._tolerance
        while seen:
            at = next(iter(seen.values()))[0]
            if at >= horizon:
                break
            seen.popitem(last=False)
        found = seen.get(message_id)
        return found[1] if found is not None else None

    def remember(self, message_id: str, digest: bytes) -> None:
        """Record an answered request's webhook-id and body digest. Only answered
        ones: a sender retrying after a 429 or a 503 resends the same id."""
        self._seen[message_id] = (self._clock(), digest)
        self._seen.move_to_end(message_id)


def _presented_key(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        raise AuthFailure("Authorization must be 'Bearer <API key>'")
    for name in ("x-api-key", "x-vapi-secret"):
        value = headers.get(name)
        if value is not None:
            return value.strip()
    return None


def _any_matches(header: str, expected: list[bytes]) -> bool:
    matched = False
    for item in header.split(" ")[:_MAX_SIGNATURES]:
        version, _, signature = item.partition(",")
        if version != "v1" or not signature:
            continue
        presented = signature.encode("ascii", "replace")
        for candidate in expected:
            # Every candidate is compared: no early exit that times which one matched.
            matched |= hmac.compare_digest(presented, candidate)
    return matched
