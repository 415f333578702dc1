"""`predial.redact`: numbers masked, credentials removed, whatever shape they come in."""

from __future__ import annotations

import pytest

from predial import redact
from predial._redaction import REDACTED, register_secret

SECRET = "s3cr3tV4lue"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {SECRET}",
        f'{{"Authorization": "Basic {SECRET}"}}',
        f"sent Bearer {SECRET} to the CRM",
        f"GET /contacts?token={SECRET}&limit=1",
        f'{{"access_token":"{SECRET}","expires_in":3600}}',
        f'{{\\"password\\": \\"{SECRET}\\"}}',  # JSON-escaped inside another string
        f"GET /callback?access_token%3D{SECRET}",  # URL-encoded
        f"private_key={SECRET}",
        f"passphrase: {SECRET}",
        f"X-Api-Key: {SECRET}",
        f"Cookie: session={SECRET}",
        f"https://user:{SECRET}@crm.example/v1",
        f"https://user:p@{SECRET}@crm.example/v1",  # a password holding '@'
        f"password:\n{SECRET}",  # split across lines
        f"Bearer\n{SECRET}",
    ],
)
def test_credentials_are_removed(text: str) -> None:
    """Credentials in every shape an adapter's error text has shown them."""
    assert SECRET not in redact(text)
    assert SECRET not in redact(text, keep_newlines=True, limit=5000)
    assert REDACTED in redact(text)


@pytest.mark.parametrize(
    "key",
    [
        "pat-na1-11111111-2222-3333-4444-555555555555",  # HubSpot private app token
        "sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUv",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # base64 with slashes
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",  # a JWT
    ],
)
def test_long_opaque_strings_are_removed(key: str) -> None:
    """API keys and tokens are removed by their shape alone."""
    assert key not in redact(f"refused key {key} today")


@pytest.mark.parametrize(
    "kept",
    [
        "123e4567-e89b-12d3-a456-426614174000",  # a record id
        "2026-12-01T14:02:11Z",
        "192.168.100.200",
        "predial.adapters.http.HttpAdapter",
        "/crm/v3/objects/contacts/properties",
        "the token endpoint answered 500",
    ],
)
def test_ids_dates_addresses_and_prose_are_kept(kept: str) -> None:
    """What is not a secret or a number stays readable."""
    assert kept in redact(f"at {kept}: failed")


@pytest.mark.parametrize(
    "number",
    [
        "+1 (202) 456-1111",
        "+12024561111",
        "06.12.34.56.78",  # French, dotted: not an IPv4 address
        "202/456/1111",
        "+1_202_456_1111",
        "+1\u200b202\u200b456\u200b1111",  # zero-width separators
        "020 7946 0958",
    ],
)
def test_phone_numbers_are_masked(number: str) -> None:
    """Numbers in any of the ways people and systems write them."""
    shown = redact(f"no answer from {number} today")
    digits = "".join(c for c in number if c.isdigit())
    assert digits not in "".join(c for c in shown if c.isdigit())


def test_numbers_are_kept_when_asked() -> None:
    """show_numbers keeps numbers (still removing credentials)."""
    assert redact(f"+12024561111 token={SECRET}", show_numbers=True) == (
        f"+12024561111 token={REDACTED}"
    )


def test_registered_secrets_are_removed_by_value() -> None:
    """A secret predial knows (a campaign's password, a UUID key) goes, whatever its shape."""
    register_secret("hunter22")
    register_secret("3f2b8c1e-9d4a-4c1a-8b7e-0123456789ab")
    shown = redact("login hunter22 with key 3f2b8c1e-9d4a-4c1a-8b7e-0123456789ab failed")
    assert "hunter22" not in shown
    assert "3f2b8c1e" not in shown


def test_short_values_are_not_registered() -> None:
    """A value too short to be told from a word is not replaced everywhere."""
    register_secret("abc")
    assert redact("abc def") == "abc def"


def test_control_characters_cannot_forge_a_log_line() -> None:
    """Newlines and other controls are escaped, unless newlines are asked for."""
    assert redact("ok\nERROR forged\r\x1b[31m") == "ok\\nERROR forged\\r\\x1b[31m"
    assert redact("a\nb\x00", keep_newlines=True) == "a\nb\\x00"


def test_the_result_is_bounded() -> None:
    """A megabyte becomes at most `limit` characters, and a credential cut short at
    the cut is not shown in part."""
    shown = redact("x " * 1_000_000, limit=100)
    assert len(shown) <= 100
    cut = redact("a " * 999 + "A" * 10 + "b1" * 40, limit=500)
    assert "AAAA" not in cut


def test_never_raises() -> None:
    """An object whose text raises is shown by its type."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert redact(Unprintable()) == "<Unprintable>"


@pytest.mark.parametrize(
    "kept",
    [
        "urllib3.exceptions.MaxRetryError",
        "crm-prod-01.eu-central-1.rds.amazonaws.com",
        "/srv/app/adapter_v2_with_long_module_name.py",
        "Basic authentication failed",
        "Digest auth nonce",
        "api.hubapi.com/crm/v3/objects/contacts/123456/properties",
    ],
)
def test_names_that_only_look_long_are_kept(kept: str) -> None:
    """Error types, host names, file names and prose survive: only random-looking runs go."""
    assert redact(kept) == kept


@pytest.mark.parametrize("char", ["\u202e", "\x9b", "\u2028", "\u2029", "\x85", "\ud800", "\u2066"])
def test_unicode_controls_and_lone_surrogates_are_escaped(char: str) -> None:
    """Bidi overrides, C1 controls, line separators and surrogates cannot reach an output."""
    shown = redact(f"x{char}FAKE LOG LINE")
    assert char not in shown
    shown.encode("utf-8")  # always encodable


def test_a_secret_is_not_cut_in_two_by_a_shape() -> None:
    """A registered secret holding a delimiter is replaced whole, even after `password=`."""
    register_secret("s3cr3t;tail-part")
    assert redact("password=s3cr3t;tail-part") == f"password={REDACTED}"


def test_a_secret_is_found_url_encoded_and_json_escaped() -> None:
    """The URL-encoded and JSON-escaped forms of a registered secret go too."""
    register_secret('p@ss word"x9')
    shown = redact('q=p%40ss%20word%22x9 body={"p": "p@ss word\\"x9"}')
    assert "ss%20word" not in shown
    assert "ss word" not in shown


def test_the_oldest_secrets_are_forgotten_first() -> None:
    """Past MAX_SECRETS, the newest are kept, whatever their length."""
    from predial._redaction import MAX_SECRETS

    register_secret("a long and old secret that stays the longest one")
    for n in range(MAX_SECRETS):
        register_secret(f"short{n:05d}")
    register_secret("the newest long secret of all of them")
    shown = redact("the newest long secret of all of them, and short00000")
    assert "newest" not in shown


@pytest.mark.parametrize(
    "text",
    [
        "x " + "pwd" * 30_000,
        "token" * 20_000,
        "a1" * 50_000,
        'c, "a' * 20_000,
        "x=" * 50_000,
        "a:" * 50_000,  # each key gives way to the next: quadratic if values were re-read
        "a=b=c=d=" * 20_000,
    ],
)
def test_adversarial_runs_are_redacted(text: str) -> None:
    """Long runs built to make patterns backtrack are handled (the patterns are linear:
    each of these took seconds with a lazy key pattern) and cut to the limit."""
    assert len(redact(text, limit=20_000)) <= 20_000


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("RuntimeError: token=supersecretvalue", "RuntimeError: token=<redacted>"),
        ("auth failed: api_key=abcdefghijklmnop", "auth failed: api_key=<redacted>"),
        ("a:b:c:password=hunter2", "a:b:c:password=<redacted>"),
        ("Error: Error: client_secret: 'xyz'", "Error: Error: client_secret: '<redacted>'"),
    ],
)
def test_a_credential_after_another_key_is_redacted(text: str, shown: str) -> None:
    """Exception messages put a word and a colon first ("RuntimeError: token=..."):
    that key is not a credential, and its value must still be read for one."""
    assert redact(text) == shown
