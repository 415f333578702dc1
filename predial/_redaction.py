"""One redaction for text predial did not write: adapter errors, CRM answers, plugin failures.

Adapters are third-party code, and what they raise or return can hold anything: a
customer's phone number, a bearer token quoted from a request, a URL with a password
in it. Before such text reaches a log line, a refusal's `detail` or the CLI, it goes
through `redact`:

- credentials by their shape are replaced with `<redacted>`: `Authorization:` and
  `Bearer …`/`Basic …` values, `token=…`, `password: …`, `"api_key": "…"`,
  `private_key`, `passphrase` and their kin (also JSON-escaped or URL-encoded), the
  user and password of a URL, and long opaque strings (32+ characters mixing letters
  and digits, as API keys and JWTs are; UUIDs are kept, they are record ids);
- secrets predial knows by value (the campaigns' credential settings, the Lupitor
  API key, OAuth tokens: `register_secret`) are replaced wherever they appear;
- phone numbers (7 or more digits, with spaces, dots, dashes, slashes, underscores,
  brackets or invisible separators) are masked as `mask_phone` masks them
  (`+1202***0123`), unless `show_numbers`; dates, times and IPv4 addresses are kept,
  and so is predial's example number (`predial._phone.EXAMPLE_NUMBER`, nobody's), so
  the example in a message survives;
- control characters are escaped (newlines too, unless `keep_newlines`), so a value
  cannot forge a log line of its own;
- the result is at most `limit` characters.

Every pattern is anchored where a run of characters begins and its repeats cannot
backtrack into each other, so the work is linear in the text's length; the text is
cut to a few times `limit` first. `redact` never raises, whatever it is given (an
object whose `__str__` raises is shown by its type's name).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Final
from urllib.parse import quote, quote_plus

from ._faults import safe_text
from ._phone import mask_phone

__all__ = ["DEFAULT_LIMIT", "REDACTED", "redact", "register_secret", "safe_text"]

REDACTED: Final = "<redacted>"
#: The longest redacted text: refusals and log lines stay readable and bounded.
DEFAULT_LIMIT: Final = 500
#: Secrets shorter than this are not replaced by value (too likely to be a word).
MIN_SECRET_LENGTH: Final = 6
#: Secret values remembered at most (the newest are kept: rotated tokens pile up).
MAX_SECRETS: Final = 256

# A separator between a key and its value: `=`, `:`, URL-encoded `%3D`/`%3A`, with
# optional quotes, JSON-escaped (`\"`) or not.
_SEP = r"""(\\?["']?\s*(?:[=:]|%3[dDaA])\s*\\?["']?)"""
# A credential's value: up to a delimiter; a part already redacted is taken along.
_VALUE = r"((?:<redacted>|[^\s\"'&,;}{<>()\[\]\\])+)"
# `Authorization: <scheme> <credential>`: the whole value goes.
_AUTHORIZATION = re.compile(
    r"(?i)(?<![\w-])((?:proxy-)?authorization" + _SEP + r")[^\"'\n\r,;}\\]+"
)
# `Bearer abc…`, `Basic dXNl…` anywhere else: an auth scheme and, after it, something
# shaped like a credential (not the next word of a sentence: "Basic authentication").
_SCHEME_CREDENTIAL = re.compile(
    r"(?<![\w-])((?i:bearer|basic|digest))(\s+)"
    r"(?=[^\s\"',;\\]*(?:\d|[=+/._~-]|[A-Z][^\s\"',;\\]*[a-z]|[a-z][^\s\"',;\\]*[A-Z]))"
    r"[^\s\"',;\\]{8,}"
)
# `token=…`, `access_token: …`, `"client_secret": "…"`, `X-Api-Key: …`: a key whose
# name says credential, then a separator, then its value. The key is a whole run of
# key characters, taken possessively, and its name is judged after: linear time.
_KEY_SEPARATOR = re.compile(r"(?<![\w.-])([\w.-]++)" + _SEP)
_VALUE_AT = re.compile(_VALUE)
_CREDENTIAL_NAME = re.compile(
    r"(?i)token|secret|passw(?:or)?d|passphrase|pwd|api[_-]?key|apikey|private[_-]?key"
    r"|access[_-]?key|client[_-]?key|signing[_-]?key|auth[_-]?key|signature|session[_-]?id"
    r"|cookie|credential|(?:^|[_.-])pass(?:$|[_.-])"
)
# scheme://user:password@host (a password may hold '@': up to the last one).
_URL_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*+://)[^/\s]+@")
# HubSpot private-app tokens: a UUID behind a `pat-<region>` prefix.
_HUBSPOT_TOKEN = re.compile(
    r"(?i)(?<![\w-])pat-[a-z]{2,3}\d-[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}"
)
# Long runs of token characters: API keys, JWTs, session ids, base64 secrets.
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_\-.~+=!/])[A-Za-z0-9_\-.~+=!/]{32,}+")
_PARTS = re.compile(r"[./-]")
_HEX = re.compile(r"[0-9a-fA-F]+")
_DIGIT = re.compile(r"\d")
_UPPER = re.compile(r"[A-Z]")
_LOWER = re.compile(r"[a-z]")
_LETTER = re.compile(r"[A-Za-z]")
# A phone number inside free text (a digit, then digits and separators, then a
# digit), unless the text there is one of the digit-heavy things kept as they are:
# a UUID, a date and time, an IPv4 address. Alternatives are tried left to right at
# each position, so a UUID is taken whole before its digits could look like a number.
_SEPARATORS = r"\s().\-/_\u200b-\u200d\u2060\ufeff"
_NUMBER_LIKE = re.compile(
    r"(?P<keep>[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
    r"|\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?"
    r"|(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![.\d]))"
    rf"|\+?\d[\d{_SEPARATORS}]{{5,}}\d"
)
_LAST_WORD = re.compile(r"\S*$")
# What could end a log line or disguise one: C0 and C1 controls, Unicode line and
# paragraph separators, bidirectional overrides, lone surrogates (which no output
# can even encode).
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_CONTROL = re.compile(f"[\n{_UNSAFE}]")
_CONTROL_BUT_NEWLINE = re.compile(f"[{_UNSAFE}]")

# The secrets, longest first (one holding another is replaced whole), and the order
# they came in (the oldest are forgotten first).
_secrets: tuple[str, ...] = ()
_arrivals: list[str] = []
_secrets_lock = threading.Lock()


def register_secret(value: object) -> None:
    """Remember `value` as a secret: `redact` replaces it wherever it appears, even
    where nothing about its shape says "credential" (a short password, a UUID key),
    also URL-encoded or JSON-escaped. A number is remembered as its text; values
    shorter than `MIN_SECRET_LENGTH` are not remembered."""
    global _secrets
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value.strip()) < MIN_SECRET_LENGTH:
        return
    text = str.__str__(value.strip())
    forms = {text, quote(text, safe=""), quote_plus(text), json.dumps(text)[1:-1]}
    with _secrets_lock:
        for form in forms:
            if form in _arrivals:
                _arrivals.remove(form)
            _arrivals.append(form)
        del _arrivals[:-MAX_SECRETS]
        _secrets = tuple(sorted(_arrivals, key=len, reverse=True))


def _opaque(match: re.Match[str]) -> str:
    """A long run of token characters is a secret when it looks random: one part
    (between `.`, `/`, `-`) of 32+ random characters, or two parts of 16+ (a JWT's
    header and payload). Host names, module paths, file names, UUIDs and URL paths
    are words and short numbers, and are kept."""
    run = match.group()
    if "/" in run and not run.startswith("/") and "//" not in run and len(run) >= 32:
        # Base64 (an AWS secret key) rather than a path: random as a whole.
        if _random(run.replace("/", "")) and _UPPER.search(run) and _LOWER.search(run):
            return REDACTED
    parts = _PARTS.split(run)
    random_parts = [part for part in parts if len(part) >= 16 and _random(part)]
    if any(len(part) >= 32 for part in random_parts) or len(random_parts) >= 2:
        return REDACTED
    return run


def _random(part: str) -> bool:
    """Mixed case and digits (base64, base62), or 32+ hex digits, or as many digits
    as a random base-36 string has: what a generated key looks like, and a word not."""
    digits = len(_DIGIT.findall(part))
    if not digits:
        return False
    if _UPPER.search(part) and _LOWER.search(part):
        return True
    if len(part) >= 32 and _HEX.fullmatch(part) and _LETTER.search(part):
        return True
    return digits >= len(part) / 5 and len(_LETTER.findall(part)) >= len(part) / 5


def _redact_key_values(text: str) -> str:
    """Each credential-named key's value replaced. A key that is not one
    ("RuntimeError: token=…") is passed over at its separator, so its value is
    scanned for keys in turn. Every step moves past a key: linear time."""
    parts: list[str] = []
    position = 0
    while (key := _KEY_SEPARATOR.search(text, position)) is not None:
        value = None
        if _CREDENTIAL_NAME.search(key.group(1)) is not None:
            value = _VALUE_AT.match(text, key.end())
        if value is None:
            parts.append(text[position : key.end()])
            position = key.end()
            continue
        parts.append(f"{text[position : key.end()]}{REDACTED}")
        position = value.end()
    parts.append(text[position:])
    return "".join(parts)


def _number(match: re.Match[str]) -> str:
    text = match.group()
    if match.group("keep") is not None or len(_DIGIT.findall(text)) < 7:
        return text
    return mask_phone(text)


def _control(match: re.Match[str]) -> str:
    char = match.group()
    escaped = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if escaped is not None:
        return escaped
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def redact(
    value: object,
    *,
    show_numbers: bool = False,
    limit: int = DEFAULT_LIMIT,
    keep_newlines: bool = False,
) -> str:
    """`value` as text that is safe to log or show: see the module docstring."""
    text = safe_text(value)
    if len(text) > 4 * limit:
        # Redacting a megabyte to show 500 characters of it is wasted work. The cut
        # word goes too: a credential cut short would no longer look like one.
        text = _LAST_WORD.sub("", text[: 4 * limit]) + " …"
    # Known secrets first, whole (a shape could take only part of one); the shapes
    # then take a value that holds a replaced part along with it.
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _AUTHORIZATION.sub(rf"\1{REDACTED}", text)
    text = _SCHEME_CREDENTIAL.sub(rf"\1\2{REDACTED}", text)
    text = _redact_key_values(text)
    text = _HUBSPOT_TOKEN.sub(REDACTED, text)
    text = _OPAQUE.sub(_opaque, text)
    if not show_numbers:
        text = _NUMBER_LIKE.sub(_number, text)
    text = (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_control, text)
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text
