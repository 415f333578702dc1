"""Properties that hold for any input (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import phonenumbers
from conftest import Script, make_resolver
from hypothesis import given, settings
from hypothesis import strategies as st

from predial import (
    AdapterAuthError,
    AdapterUnavailable,
    BreakerSettings,
    CrmContact,
    CrmPhone,
    InvalidPhoneNumber,
    Lead,
    PhonePolicy,
    RecordNotFound,
    Resolution,
    Resolver,
    Unresolvable,
)
from predial._selection import PERMANENT_REASONS, TRANSIENT_REASONS

REGIONS = ["US", "GB", "FR", "DE", "IN", "BR", "AU", "JP", "MX", "ZA"]
FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


@st.composite
def formatted_numbers(draw: st.DrawFn) -> str:
    """Real numbers of several countries, written the ways people write them."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(
        st.sampled_from(
            [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
        )
    )
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    text = phonenumbers.format_number(example, draw(st.sampled_from(FORMATS)))
    separator = draw(st.sampled_from([" ", "-", ".", ""]))
    text = text.replace(" ", separator) if not text.startswith("tel:") else text
    return (
        draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " ", " ext. 12"]))
    )


phone_like = st.one_of(
    formatted_numbers(),
    st.text(alphabet="0123456789+()-. ext:", max_size=30),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(raw=phone_like, region=st.sampled_from([None, *REGIONS]))
def test_normalisation_is_idempotent(raw: str, region: str | None) -> None:
    """What the policy returns, the policy returns unchanged."""
    policy = PhonePolicy(default_region=region)
    try:
        once = policy.normalize(raw)
    except InvalidPhoneNumber:
        return
    assert once.startswith("+")
    assert policy.normalize(once) == once
    assert PhonePolicy().normalize(once) == once  # E.164 needs no region


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20)
)
metadata = st.dictionaries(
    st.text(max_size=10), st.one_of(json_scalars, st.lists(json_scalars, max_size=3)), max_size=4
)
e164 = formatted_numbers().map(
    lambda raw: phonenumbers.format_number(
        phonenumbers.parse(raw.replace(" ext. 12", ""), "US"), phonenumbers.PhoneNumberFormat.E164
    )
)
identifier = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda s: s.strip() == s and s
)


@st.composite
def leads(draw: st.DrawFn) -> Lead:
    phone = draw(st.one_of(st.none(), e164))
    external_id = draw(st.one_of(st.none(), identifier)) if phone else draw(identifier)
    when = draw(
        st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.just(UTC),
            ),
        )
    )
    if when is not None:
        when = when.replace(
            microsecond=when.microsecond // 1000 * 1000
        )  # the API keeps milliseconds
    return Lead(
        campaign_id=draw(identifier),
        phone_number=phone,
        external_id=external_id,
        metadata=draw(st.one_of(st.none(), metadata)),
        scheduled_for=when,
        priority=draw(st.integers(0, 100)),
    )


@settings(max_examples=200, deadline=None)
@given(lead=leads())
def test_lead_round_trips_through_the_api_json(lead: Lead) -> None:
    """Lead -> API JSON -> Lead is the identity."""
    assert Lead.model_validate(lead.to_api()) == lead


crm_phones = st.builds(
    CrmPhone,
    value=st.one_of(phone_like, st.integers(), st.none()),
    label=st.one_of(
        st.none(),
        st.sampled_from(["mobile", "home", "work", "Main", "fax"]),
        st.text(max_size=8),
        st.integers(),
    ),
    primary=st.booleans(),
)
adapter_answers = st.one_of(
    st.none(),
    phone_like,
    st.integers(),
    st.lists(phone_like, max_size=2),
    st.builds(
        CrmContact,
        phones=st.lists(crm_phones, max_size=4),
        do_not_call=st.booleans(),
        state=st.sampled_from(["active", "archived", "deleted", "merged"]),
    ),
    st.sampled_from(
        [
            RecordNotFound("x"),
            AdapterUnavailable("x"),
            AdapterAuthError("x"),
            AdapterUnavailable("x", retry_after=99),
            ValueError("x"),
            KeyError("x"),
        ]
    ),
)


_SCRIPT = Script()
_RESOLVER = None


def _shared_resolver() -> Resolver:
    # One resolver for every example (a fresh one costs a thread start); the cache is
    # cleared and the breaker never opens, so each example sees the adapter's answer.
    global _RESOLVER
    if _RESOLVER is None:
        _RESOLVER = make_resolver(
            _SCRIPT, deadline=1.0, breaker=BreakerSettings(failure_threshold=10**9)
        )
    return _RESOLVER


@settings(max_examples=400, deadline=None)
@given(
    answer=adapter_answers,
    stored=st.one_of(st.none(), st.just("+12024561414"), st.just("+15555551234")),
)
def test_resolve_returns_an_accepted_number_or_refuses(answer: Any, stored: str | None) -> None:
    """Whatever an adapter returns, the number is one the policy accepts, or Unresolvable."""
    resolver = _shared_resolver()
    resolver.clear_cache()
    _SCRIPT.answer = answer
    policy = resolver.campaigns["cmp"].policy
    lead = Lead(campaign_id="cmp", external_id="ext", phone_number=stored)
    outcome: Resolution | Unresolvable
    try:
        outcome = resolver.resolve_sync(lead)
    except Unresolvable as refusal:
        outcome = refusal
    if isinstance(outcome, Resolution):
        assert policy.normalize(outcome.phone_number) == outcome.phone_number
        assert outcome.source in ("crm", "stored")
    else:
        assert outcome.reason in PERMANENT_REASONS or outcome.reason in TRANSIENT_REASONS


def teardown_module() -> None:
    if _RESOLVER is not None:
        _RESOLVER.close_sync()


@settings(max_examples=500, deadline=None)
@given(
    country_code=st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    national=st.integers(min_value=1, max_value=10**14),
)
def test_valid_means_a_known_number_type(country_code: int, national: int) -> None:
    """The policy's shortcut holds: is_valid_number(n) == (number_type(n) != UNKNOWN)."""
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=national)
    known = phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.UNKNOWN
    assert phonenumbers.is_valid_number(number) == known


# -- the importer: hostile files give per-row rejections or one clear error ---------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_HOSTILE_CELLS = [
    "=1+1",
    '=HYPERLINK("http://x","y")',
    "+12024561111",
    "-2+3",
    "@SUM(A1)",
    "\tcmd",
    "\rx",
    "9" * 5000,
    '{"n": ' + "9" * 5000 + "}",
    "[" * 3000 + "]" * 3000,
    '{"a": ' * 300 + "1" + "}" * 300,
    "Zoë",
    "日本",
    '"',
    "\n",
]


@st.composite
def hostile_tables(draw: st.DrawFn) -> tuple[str, bytes]:
    """A CSV or JSON Lines file of leads with formula cells, huge integers, deep
    nesting, now and then a 20 MB field, and invalid bytes anywhere."""
    cell = st.one_of(st.sampled_from(_HOSTILE_CELLS), st.text(max_size=12))
    rows = draw(st.lists(st.tuples(st.sampled_from(["A", "B", "=C", ""]), cell, cell), max_size=8))
    import json

    kind = draw(st.sampled_from(["csv", "jsonl"]))
    huge = draw(st.integers(0, 9)) == 0
    if kind == "csv":
        import csv
        import io

        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(
            draw(st.sampled_from([["externalId", "note", "metadata"], ["id", "=cmd", "-x"]]))
        )
        writer.writerows(rows)
        if huge:
            writer.writerow(["H", "x" * (20 * 1024 * 1024), ""])
        data = text.getvalue().encode("utf-8", "surrogatepass")
    else:
        lines = []
        for ident, note, other in rows:
            # Raw text, not json.dumps: a 5000-digit number or 3000-deep array as is.
            raw = other if other and other[0] in "[{9" else json.dumps(other)
            lines.append(
                f'{{"externalId": {json.dumps(ident)}, "note": {json.dumps(note)}, "x": {raw}}}'
            )
        lines.append('{"externalId": "S\\udcfc"}')
        if huge:
            lines.append('{"externalId": "H", "note": "' + "x" * (20 * 1024 * 1024) + '"}')
        data = "\n".join(lines).encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        data = (
            data[:at] + bytes([draw(st.sampled_from([0x81, 0xC3, 0xE9, 0xFC, 0xFF]))]) + data[at:]
        )
    return kind, data


@settings(max_examples=30, deadline=None)
@given(table=hostile_tables())
def test_any_hostile_file_gives_rejections_or_one_clear_error(table: tuple[str, bytes]) -> None:
    """Huge integers, deep nesting, 20 MB fields, invalid bytes anywhere, formula
    cells: per-row rejections or one clear error, never a traceback; the rejects
    file parses and no cell in it can start a formula."""
    import csv
    import tempfile
    from pathlib import Path

    from predial import InputFileError
    from predial.lupitor import import_leads

    kind, data = table
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / f"leads.{kind}"
        source.write_bytes(data)
        rejects = Path(folder) / "rejects.csv"
        problem: Exception | None = None
        try:
            report = import_leads(source, "cmp_1", dry_run=True, region="US", rejects_path=rejects)
        except (InputFileError, ValueError) as error:  # no usable header: the whole file
            problem = error
        if problem is not None:
            assert str(problem)  # one clear error, with a message
            return
        assert report.rows == report.rejected + report.duplicates_in_file + report.sendable
        with rejects.open(newline="", encoding="utf-8") as file:
            table_rows = list(csv.reader(file))
    assert len(table_rows) == 1 + report.rejected
    for row in table_rows:
        for value in row:
            assert not value.startswith(_FORMULA_START), row
