"""What the shared tier writes to Redis, and the strict reading of it back.

A value read from Redis is input like any other: another version of predial, a
tampered key or a corrupt write may have put anything there. Whatever does not
parse exactly is a miss (`CorruptValue`), never a crash and never a number the
campaign's phone policy has not accepted (the resolver checks that too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .._http import MAX_RETRY_AFTER, retry_after_hint
from .._selection import PERMANENT_REASONS, TRANSIENT_REASONS

__all__ = [
    "CorruptValue",
    "Message",
    "Value",
    "decode_message",
    "decode_value",
    "encode_body",
    "encode_message",
]

#: The longest value or message read back; a longer one is corrupt.
MAX_VALUE_BYTES: Final = 1024

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_ADAPTER = re.compile(r"[\x21-\x7e]{0,200}")
_TOKEN = re.compile(r"[0-9a-f]{32}")


class CorruptValue(ValueError):
    """A value in Redis that predial did not write (or no longer reads)."""


@dataclass(frozen=True, slots=True)
class Value:
    """A cache value: a number (`phone_number`) or a permanent `reason`."""

    fresh_until_ms: int
    phone_number: str | None
    reason: str | None
    adapter: str | None


@dataclass(frozen=True, slots=True)
class Message:
    """What a flight's holder hands its waiters: a number, a permanent reason
    (`transient` False) or a failure to retry later (`transient` True)."""

    token: str
    phone_number: str | None
    reason: str | None
    transient: bool
    retry_after: float | None


def encode_body(phone_number: str | None, reason: str | None, adapter: str | None) -> str:
    """`kind|payload|adapter`, the part of a value the client writes (the server
    puts the freshness in front)."""
    name = adapter if adapter and "|" not in adapter and _ADAPTER.fullmatch(adapter) else ""
    if phone_number is not None:
        return f"p|{phone_number}|{name}"
    return f"n|{reason}|{name}"


def encode_message(
    token: str,
    phone_number: str | None,
    reason: str | None,
    transient: bool,
    retry_after: float | None,
) -> str:
    if phone_number is not None:
        return f"{token}|p|{phone_number}|"
    kind = "t" if transient else "n"
    # Within what the reader takes: a circuit open for longer than a day says a day.
    hint = retry_after_hint(retry_after)
    wait = "" if hint is None else f"{hint:.3f}"
    return f"{token}|{kind}|{reason}|{wait}"


def _text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, bytes):
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise CorruptValue("not ASCII") from None
    else:
        raise CorruptValue(f"a {type(raw).__name__}, not a string")
    if len(text) > MAX_VALUE_BYTES:
        raise CorruptValue("too long")
    return text


def decode_value(raw: bytes | str) -> Value:
    """A cache value read from Redis, or `CorruptValue`."""
    parts = _text(raw).split("|")
    if len(parts) != 4 or not parts[0].isdigit() or len(parts[0]) > 16:
        raise CorruptValue("not a predial cache value")
    fresh, kind, payload, adapter = parts
    if not _ADAPTER.fullmatch(adapter):
        raise CorruptValue("a malformed adapter name")
    if kind == "p" and _E164.fullmatch(payload):
        return Value(int(fresh), payload, None, adapter or None)
    if kind == "n" and payload in PERMANENT_REASONS:
        return Value(int(fresh), None, payload, adapter or None)
    raise CorruptValue("neither a number nor a known reason")


def decode_message(raw: bytes | str) -> Message:
    """A holder's message to its waiters, or `CorruptValue`."""
    parts = _text(raw).split("|")
    if len(parts) != 4 or not _TOKEN.fullmatch(parts[0]):
        raise CorruptValue("not a predial flight message")
    token, kind, payload, extra = parts
    if kind == "p" and _E164.fullmatch(payload) and not extra:
        return Message(token, payload, None, False, None)
    if kind == "n" and payload in PERMANENT_REASONS and not extra:
        return Message(token, None, payload, False, None)
    if kind == "t" and payload in TRANSIENT_REASONS:
        retry_after: float | None = None
        if extra:
            try:
                retry_after = float(extra)
            except ValueError:
                raise CorruptValue("a malformed retry-after") from None
            if not 0 <= retry_after <= MAX_RETRY_AFTER:
                raise CorruptValue("a retry-after out of range")
        return Message(token, None, payload, True, retry_after)
    raise CorruptValue("not a number, a known reason or a known failure")
