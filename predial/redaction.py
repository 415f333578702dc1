"""One redaction for text predial did not write: adapter errors, CRM answers, plugin failures.

Adapters are third-party code, and what they raise or return can hold anything: a
customer's phone number, a bearer token quoted from a request, a URL with a password
in it. Before such text reaches a log line, a refusal's `detail` or the CLI, it goes
through `redact`:

- phone numbers (7 or more digits, with or without separators) are masked as
  `mask_phone` masks them (`+1202***0123`), unless `show_numbers`;
- credentials are replaced with `<redacted>`: `Bearer …`/`Basic …` values,
  `token=…`, `password: …`, `"api_key": "…"` and their kin, the user and password
  of a URL, and long opaque strings (32+ characters of letters and digits, as API
  keys and JWTs are; UUIDs are kept, they are record ids);
- control characters are escaped, so a value cannot forge a log line of its own;
- the result is at most `limit` characters.

`redact` never raises, whatever it is given (an object whose `__str__` raises is
shown by its type's name).
"""

from __future__ import annotations

import re
from typing import Final

from .phone import mask_phone

__all__ = ["DEFAULT_LIMIT", "REDACTED", "redact", "safe_text"]

REDACTED: Final = "<redacted>"
#: The longest redacted text: refusals and log lines stay readable and bounded.
DEFAULT_LIMIT: Final = 500

# `Authorization: <scheme> <credential>`: the whole value goes.
_AUTHORIZATION = re.compile(r"(?i)(authorization\"?'?\s*[:=]\s*\"?'?)[^\"'\n\r,;}]+")
# `Bearer abc…`, `Basic dXNl…` anywhere else: an auth scheme and the credential after it.
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic|digest)(\s+)[^\s\"',;]{4,}")
# `token=…`, `access_token: …`, `"client_secret": "…"`, `X-Api-Key: …`: a key whose
# name says credential, then `=` or `:`, then its value.
_KEY_CREDENTIAL = re.compile(
    r"(?i)([\w.-]*(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|apikey"
    r"|auth[_-]?key|signature|session[_-]?id|cookie|credential)s?[\w-]*)"
    r"(\"?'?\s*[=:]\s*\"?'?)([^\s\"'&,;}{<>()\[\]]+)"
)
# scheme://user:password@host
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
# Long runs of token characters: API keys, JWTs, session ids.
_OPAQUE = re.compile(r"[A-Za-z0-9_\-.~+=!]{32,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_HAS_DIGIT = re.compile(r"\d")
_HAS_LETTER = re.compile(r"[A-Za-z]")
# A phone number inside free text (a digit, then digits and separators, then a
# digit), unless the text there is one of the digit-heavy things kept as they are:
# a UUID, a date and time, an IPv4 address. Alternatives are tried left to right at
# each position, so a UUID is taken whole before its digits could look like a number.
_NUMBER_LIKE = re.compile(
    r"(?P<keep>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?"
    r"|\b\d{1,3}(?:\.\d{1,3}){3}\b)"
    r"|\+?\d[\d\s().-]{5,}\d"
)
_DIGIT = re.compile(r"\d")
_LAST_WORD = re.compile(r"\S*$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def safe_text(value: object) -> str:
    """`str(value)`, or the type's name in angle brackets when that raises."""
    try:
        if isinstance(value, str):
            # The string's own data: a subclass's __str__ may lie or raise.
            return str.__str__(value)
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _opaque(match: re.Match[str]) -> str:
    run = match.group()
    if _UUID.fullmatch(run) or not (_HAS_DIGIT.search(run) and _HAS_LETTER.search(run)):
        return run
    return REDACTED


def _number(match: re.Match[str]) -> str:
    text = match.group()
    if match.group("keep") is not None or len(_DIGIT.findall(text)) < 7:
        return text
    return mask_phone(text)


def _control(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r"}.get(char, f"\\x{ord(char):02x}")


def redact(value: object, *, show_numbers: bool = False, limit: int = DEFAULT_LIMIT) -> str:
    """`value` as text that is safe to log or show: see the module docstring."""
    text = safe_text(value)
    if len(text) > 4 * limit:
        # Redacting a megabyte to show 500 characters of it is wasted work. The cut
        # word goes too: a credential cut short would no longer look like one.
        text = _LAST_WORD.sub("", text[: 4 * limit]) + " …"
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _AUTHORIZATION.sub(rf"\1{REDACTED}", text)
    text = _SCHEME_CREDENTIAL.sub(rf"\1\2{REDACTED}", text)
    text = _KEY_CREDENTIAL.sub(rf"\1\2{REDACTED}", text)
    text = _OPAQUE.sub(_opaque, text)
    if not show_numbers:
        text = _NUMBER_LIKE.sub(_number, text)
    text = _CONTROL.sub(_control, text)
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text
