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
  (`+1202***0123`), unless `show_numbers`; dates, times and IPv4 addresses are kept;
- control characters are escaped (newlines too, unless `keep_newlines`), so a value
  cannot forge a log line of its own;
- the result is at most `limit` characters.

Every pattern is anchored where a run of characters begins and its repeats cannot
backtrack into each other, so the work is linear in the text's length; the text is
cut to a few times `limit` first. `redact` never raises, whatever it is given (an
object whose `__str__` raises is shown by its type's name).
"""

from __future__ import annotations

import re
import threading
from typing import Final

from ._faults import is_adapter_fault
from .phone import mask_phone

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
# `Authorization: <scheme> <credential>`: the whole value goes.
_AUTHORIZATION = re.compile(
    r"(?i)(?<![\w-])((?:proxy-)?authorization" + _SEP + r")[^\"'\n\r,;}\\]+"
)
# `Bearer abc…`, `Basic dXNl…` anywhere else: an auth scheme and the credential after it.
_SCHEME_CREDENTIAL = re.compile(r"(?i)(?<![\w-])(bearer|basic|digest)(\s+)[^\s\"',;\\]{4,}")
# `token=…`, `access_token: …`, `"client_secret": "…"`, `X-Api-Key: …`: a key whose
# name says credential, then a separator, then its value. The key starts where a
# run of key characters starts, and its tail is possessive: no backtracking.
_KEY_CREDENTIAL = re.compile(
    r"(?i)(?<![\w.-])([\w.-]*?(?:token|secret|passw(?:or)?d|passphrase|pwd|api[_-]?key|apikey"
    r"|private[_-]?key|access[_-]?key|client[_-]?key|signing[_-]?key|auth[_-]?key"
    r"|signature|session[_-]?id|cookie|credential)s?[\w-]*+)" + _SEP + r"([^\s\"'&,;}{<>()\[\]\\]+)"
)
# scheme://user:password@host (a password may hold '@': up to the last one).
_URL_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*+://)[^/\s]+@")
# Long runs of token characters: API keys, JWTs, session ids, base64 secrets.
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_\-.~+=!/])[A-Za-z0-9_\-.~+=!/]{32,}+")
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_DIGIT = re.compile(r"\d")
_UPPER = re.compile(r"[A-Z]")
_LOWER = re.compile(r"[a-z]")
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
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def register_secret(value: object) -> None:
    """Remember `value` as a secret: `redact` replaces it wherever it appears, even
    where nothing about its shape says "credential" (a short password, a UUID key).
    Values shorter than `MIN_SECRET_LENGTH` are not remembered."""
    global _secrets
    if not isinstance(value, str) or len(value.strip()) < MIN_SECRET_LENGTH:
        return
    text = str.__str__(value.strip())
    with _secrets_lock:
        if text in _secrets:
            return
        # Longest first, so a secret containing another is replaced whole.
        kept = (*_secrets, text)[-MAX_SECRETS:]
        _secrets = tuple(sorted(kept, key=len, reverse=True))


def safe_text(value: object) -> str:
    """`str(value)` as a plain `str`, or the type's name in angle brackets when that
    raises (anything but an interrupt of the main thread: `is_adapter_fault`)."""
    try:
        # A str subclass's own data: its __str__ may lie or raise, and what another
        # __str__ returns may be a subclass whose methods raise.
        text = value if isinstance(value, str) else str(value)
        return str.__str__(text) if isinstance(text, str) else f"<{type(value).__name__}>"
    except BaseException as error:
        if not is_adapter_fault(error):
            raise
        try:
            return f"<{type(value).__name__}>"
        except BaseException:  # a metaclass whose __name__ raises
            return "<?>"


def _opaque(match: re.Match[str]) -> str:
    run = match.group()
    if "/" not in run:
        return _opaque_run(run)
    # A path or a URL is kept; a base64 secret (mixed case and digits, no empty
    # segments) is not; the segments of a path are judged one by one.
    if not run.startswith("/") and "//" not in run and _mixed(run, upper=True):
        return REDACTED
    return "/".join(_opaque_run(segment) for segment in run.split("/"))


def _opaque_run(run: str) -> str:
    if len(run) < 32 or _UUID.fullmatch(run) or not _mixed(run, upper=False):
        return run
    return REDACTED


def _mixed(run: str, *, upper: bool) -> bool:
    if not _DIGIT.search(run):
        return False
    if upper:
        return bool(_UPPER.search(run) and _LOWER.search(run))
    return bool(_UPPER.search(run) or _LOWER.search(run))


def _number(match: re.Match[str]) -> str:
    text = match.group()
    if match.group("keep") is not None or len(_DIGIT.findall(text)) < 7:
        return text
    return mask_phone(text)


def _control(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")


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
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _AUTHORIZATION.sub(rf"\1{REDACTED}", text)
    text = _SCHEME_CREDENTIAL.sub(rf"\1\2{REDACTED}", text)
    text = _KEY_CREDENTIAL.sub(rf"\1\2{REDACTED}", text)
    text = _OPAQUE.sub(_opaque, text)
    # After the shapes (a value they took whole must not be cut in two first), before
    # the numbers (a numeric secret is not a phone number to mask in part).
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if not show_numbers:
        text = _NUMBER_LIKE.sub(_number, text)
    text = (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_control, text)
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text
