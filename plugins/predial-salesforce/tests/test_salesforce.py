"""predial-salesforce against FakeSalesforce: Salesforce's REST API as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from predial_salesforce import (
    CONTACT_FIELDS,
    LEAD_FIELDS,
    SalesforceAdapter,
    soql_string,
)
from predial_salesforce.fake import TOKEN_PATH, FakeSalesforce, make_id, parse_soql

from predial import (
    AdapterAuthError,
    AdapterRateLimited,
    AdapterUnavailable,
    Campaign,
    CrmContact,
    CrmPhone,
    Lead,
    RecordNotFound,
    Resolver,
    Unresolvable,
)
from predial.testing import (
    HOSTILE_IDS,
    AdapterContract,
    FakeOAuth,
    OAuthAdapterContract,
    RateLimitContract,
    RecordingTransport,
    served_check,
)

BASE = "http://127.0.0.1:7002"
TOKEN = "00D000000000001!AQ4AQFakeStaticAccessToken"
TOKEN_URL = BASE + TOKEN_PATH
VERSION = "v61.0"
SOBJECTS = f"/services/data/{VERSION}/sobjects/"
QUERY = f"/services/data/{VERSION}/query"

CONTACT = make_id("003", 101)  # every phone field set
MOBILE_ONLY = make_id("003", 102)
DNC_CONTACT = make_id("003", 103)
CONVERTED_TO = make_id("003", 104)
LEAD = make_id("00Q", 201)
CONVERTED_LEAD = make_id("00Q", 202)
ACCOUNT = make_id("001", 1)
NOBODY = make_id("003", 999)

CONTACT_SELECT = "SELECT Id, Phone, MobilePhone, HomePhone, OtherPhone, DoNotCall FROM Contact"
LEAD_SELECT = "SELECT Id, Phone, MobilePhone, DoNotCall, IsConverted, ConvertedContactId FROM Lead"


@pytest.fixture
def fake() -> FakeSalesforce:
    fake = FakeSalesforce(tokens=[TOKEN])
    fake.add_contact(
        CONTACT,
        LastName="Lovelace",
        Phone="(202) 456-1111",
        MobilePhone="+1 202 555 0123",
        HomePhone="202-555-0144",
        OtherPhone="202-555-0155",
        Dialer_Id__c="D-101",
    )
    fake.add_contact(MOBILE_ONLY, LastName="Mobile", MobilePhone="202-555-0188")
    fake.add_contact(DNC_CONTACT, LastName="Quiet", Phone="+12025550199", DoNotCall=True)
    fake.add_contact(CONVERTED_TO, LastName="Convert", Phone="+12025550104")
    fake.add_lead(
        LEAD,
        LastName="Hopper",
        Phone="+12025550201",
        MobilePhone="+12025550202",
        Dialer_Id__c="L-1",
    )
    fake.add_lead(CONVERTED_LEAD, LastName="Convert", Phone="+12025550299", Dialer_Id__c="L-2")
    fake.convert_lead(CONVERTED_LEAD, CONVERTED_TO)
    return fake


@pytest.fixture
def crm(fake: FakeSalesforce) -> RecordingTransport:
    """The fake as Salesforce, every exchange recorded; nothing else is reachable."""
    return RecordingTransport(fake.handler)


def adapter(
    transport: httpx.AsyncBaseTransport | None = None, **settings: Any
) -> SalesforceAdapter:
    return SalesforceAdapter(
        **{"base_url": BASE, "token": TOKEN, "transport": transport, **settings}
    )


def oauth_adapter(**settings: object) -> SalesforceAdapter:
    oauth = {
        "token": None,
        "client_id": "cid",
        "client_secret": "csecret",
        "refresh_token": "refresh-0",
        "token_url": TOKEN_URL,
    }
    return adapter(**{**oauth, **settings})


def data_requests(fake: FakeSalesforce) -> list[httpx.Request]:
    return fake.requests_to("/services/data/")


class TestContract(AdapterContract, RateLimitContract, OAuthAdapterContract):
    """predial's contracts: shape, errors, injection, limits, OAuth."""

    # The adapter refuses ids that are not 15 or 18 letters and digits without a
    # request, so the probe that shows where ids go must be a real-looking one.
    probe_id = make_id("003", 7)
    api_address_field = "instance_url"

    def make_adapter(self, fake: FakeSalesforce, **settings: Any) -> SalesforceAdapter:
        return adapter(fake.transport(), **settings)

    @pytest.fixture
    def known_id(self) -> str:
        return CONTACT

    def token_endpoint(self, **options: Any) -> FakeOAuth:
        # Salesforce's token answers carry no expires_in.
        return FakeOAuth(path=TOKEN_PATH, expires_in=None, **options)

    def spend_daily_quota(self, fake: FakeSalesforce) -> None:
        fake.daily_limit = 0


class TestContractByExternalId(AdapterContract):
    """The SOQL path: every hostile id must stay inside the `q` value."""

    @pytest.fixture
    def adapter(self, fake: FakeSalesforce) -> SalesforceAdapter:
        return SalesforceAdapter(
            base_url=BASE,
            token=TOKEN,
            object="Contact",
            external_id_field="Dialer_Id__c",
            transport=fake.transport(),
        )

    @pytest.fixture
    def known_id(self) -> str:
        return "D-101"


# -- by record id ------------------------------------------------------------------------


async def test_contact_by_id_asks_only_for_the_phone_fields(
    crm: RecordingTransport, fake: FakeSalesforce
) -> None:
    salesforce = adapter(crm)
    contact = await salesforce.fetch_phone(CONTACT)
    request = crm.calls.last.request
    assert request.url.path == SOBJECTS + "Contact/" + CONTACT
    assert request.url.params["fields"] == "Phone,MobilePhone,HomePhone,OtherPhone,DoNotCall"
    assert list(request.url.params) == ["fields"]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert contact == CrmContact(
        phones=[
            CrmPhone("(202) 456-1111", "main", primary=True),
            CrmPhone("+1 202 555 0123", "mobile"),
            CrmPhone("202-555-0144", "home"),
            CrmPhone("202-555-0155", "other"),
        ]
    )
    # The last Sforce-Limit-Info reading: one request of the default allocation.
    assert salesforce.api_usage == (1, 100_000)
    await salesforce.aclose()


async def test_lead_by_id_asks_for_the_lead_fields(crm: RecordingTransport) -> None:
    salesforce = adapter(crm)
    contact = await salesforce.fetch_phone(LEAD)
    request = crm.calls.last.request
    assert request.url.path == SOBJECTS + "Lead/" + LEAD
    # A Lead has no HomePhone or OtherPhone: asking for them would be INVALID_FIELD.
    assert (
        request.url.params["fields"] == "Phone,MobilePhone,DoNotCall,IsConverted,ConvertedContactId"
    )
    assert contact == CrmContact(
        phones=[CrmPhone("+12025550201", "main", primary=True), CrmPhone("+12025550202", "mobile")]
    )
    await salesforce.aclose()


async def test_missing_fields_give_no_phones(crm: RecordingTransport) -> None:
    """Salesforce answers unset fields with null; they are not phones."""
    salesforce = adapter(crm)
    contact = await salesforce.fetch_phone(MOBILE_ONLY)
    assert contact.phones == [CrmPhone("202-555-0188", "mobile")]
    assert contact.do_not_call is False
    await salesforce.aclose()


async def test_auto_routes_by_key_prefix(crm: RecordingTransport, fake: FakeSalesforce) -> None:
    salesforce = adapter(crm)
    # A 15-character id (case-sensitive) routes like its 18-character form.
    await salesforce.fetch_phone(CONTACT[:15])
    assert crm.calls.last.request.url.path == SOBJECTS + "Contact/" + CONTACT[:15]
    # 18-character ids are case-insensitive: "00q" is still a Lead.
    lowered = await salesforce.fetch_phone(LEAD.lower())
    assert crm.calls.last.request.url.path == SOBJECTS + "Lead/" + LEAD.lower()
    assert lowered.phones[0].value == "+12025550201"
    sent = len(fake.requests)
    with pytest.raises(RecordNotFound, match="neither a Contact"):
        await salesforce.fetch_phone(ACCOUNT)
    with pytest.raises(RecordNotFound):
        await salesforce.fetch_phone("00q" + CONTACT[3:15])  # 15 characters: not a Lead
    assert len(fake.requests) == sent
    await salesforce.aclose()


async def test_object_setting_overrides_the_prefix(crm: RecordingTransport) -> None:
    as_lead = adapter(crm, object="Lead")
    with pytest.raises(RecordNotFound):
        await as_lead.fetch_phone(CONTACT)  # Salesforce: no such Lead
    assert crm.calls.last.request.url.path == SOBJECTS + "Lead/" + CONTACT
    assert crm.calls.last.response.status_code == 404
    await as_lead.aclose()
    as_contact = adapter(crm, object="Contact")
    assert (await as_contact.fetch_phone(CONTACT)).phones
    await as_contact.aclose()


@pytest.mark.parametrize(
    "external_id",
    ["", "abc", CONTACT[:17], CONTACT + "A", CONTACT[:15] + "-x", " " + CONTACT[1:], "003 0001"],
)
async def test_malformed_ids_are_refused_without_a_request(
    crm: RecordingTransport, fake: FakeSalesforce, external_id: str
) -> None:
    salesforce = adapter(crm)
    with pytest.raises(RecordNotFound, match="not a Salesforce record id"):
        await salesforce.fetch_phone(external_id)
    assert fake.requests == []
    await salesforce.aclose()


async def test_unknown_and_deleted_records_are_not_found(
    crm: RecordingTransport, fake: FakeSalesforce
) -> None:
    salesforce = adapter(crm)
    with pytest.raises(RecordNotFound):
        await salesforce.fetch_phone(NOBODY)
    fake.delete(CONTACT)
    with pytest.raises(RecordNotFound):
        await salesforce.fetch_phone(CONTACT)
    assert crm.calls.last.response.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    await salesforce.aclose()


async def test_api_version_setting_is_used(crm: RecordingTransport) -> None:
    salesforce = adapter(crm, api_version="v58.0")
    await salesforce.fetch_phone(CONTACT)
    assert crm.calls.last.request.url.path == f"/services/data/v58.0/sobjects/Contact/{CONTACT}"
    await salesforce.aclose()


# -- through the resolver ------------------------------------------------------------------


def campaign(crm: RecordingTransport) -> Campaign:
    settings = {"base_url": BASE, "token": TOKEN, "transport": crm}
    return Campaign("c", "salesforce", settings, default_region="US")


async def test_resolver_dials_phone_then_the_campaigns_label_order(
    crm: RecordingTransport,
) -> None:
    async with Resolver([campaign(crm)]) as resolver:
        first = await resolver.resolve(Lead(campaign_id="c", external_id=CONTACT))
        assert first.phone_number == "+12024561111"
        mobile = await resolver.resolve(Lead(campaign_id="c", external_id=MOBILE_ONLY))
        assert mobile.phone_number == "+12025550188"


async def test_do_not_call_is_refused_even_with_a_stored_number(crm: RecordingTransport) -> None:
    salesforce = adapter(crm)
    assert (await salesforce.fetch_phone(DNC_CONTACT)).do_not_call is True
    await salesforce.aclose()
    async with Resolver([campaign(crm)]) as resolver:
        lead = Lead(campaign_id="c", external_id=DNC_CONTACT, phone_number="+12025550100")
        with pytest.raises(Unresolvable) as refused:
            await resolver.resolve(lead)
    assert refused.value.reason == "do_not_call"
    assert refused.value.retryable is False


# -- converted Leads ------------------------------------------------------------------------


async def test_converted_lead_is_followed_to_its_contact(
    crm: RecordingTransport, fake: FakeSalesforce
) -> None:
    salesforce = adapter(crm)
    contact = await salesforce.fetch_phone(CONVERTED_LEAD)
    assert contact == CrmContact(
        phones=[CrmPhone("+12025550104", "main", primary=True)], state="merged"
    )
    paths = [request.url.path for request in data_requests(fake)]
    assert paths == [SOBJECTS + "Lead/" + CONVERTED_LEAD, SOBJECTS + "Contact/" + CONVERTED_TO]
    assert fake.requests[-1].url.params["fields"] == ",".join(CONTACT_FIELDS)
    await salesforce.aclose()


async def test_do_not_call_on_either_record_of_a_conversion_is_honoured(
    crm: RecordingTransport, fake: FakeSalesforce
) -> None:
    salesforce = adapter(crm)
    fake.records[CONVERTED_LEAD]["DoNotCall"] = True
    assert (await salesforce.fetch_phone(CONVERTED_LEAD)).do_not_call is True
    fake.records[CONVERTED_LEAD]["DoNotCall"] = False
    fake.records[CONVERTED_TO]["DoNotCall"] = True
    assert (await salesforce.fetch_phone(CONVERTED_LEAD)).do_not_call is True
    await salesforce.aclose()


async def test_lead_converted_to_a_deleted_or_no_contact(
    crm: RecordingTransport, fake: FakeSalesforce
) -> None:
    salesforce = adapter(crm)
    fake.delete(CONVERTED_TO)
    with pytest.raises(RecordNotFound):
        await salesforce.fetch_phone(CONVERTED_LEAD)
    fake.convert_lead(LEAD, None)
    contact = await salesforce.fetch_phone(LEAD)
    assert contact.state == "archived"  # not dialled: the Lead is closed
    assert len(fake.requests_to(SOBJECTS + "Contact/")) == 1  # nothing to follow
    await salesforce.aclose()


# -- by an external id field (SOQL) -----------------------------------------------------------


async def test_contact_by_external_id_field(crm: RecordingTransport, fake: FakeSalesforce) -> None:
    salesforce = adapter(crm, object="Contact", external_id_field="Dialer_Id__c")
    contact = await salesforce.fetch_phone("D-101")
    request = crm.calls.last.request
    assert request.url.path == QUERY
    assert list(request.url.params) == ["q"]
    assert request.url.params["q"] == f"{CONTACT_SELECT} WHERE Dialer_Id__c = 'D-101' LIMIT 2"
    assert fake.queries[-1].value == "D-101"
    assert contact.phones[0] == CrmPhone("(202) 456-1111", "main", primary=True)
    with pytest.raises(RecordNotFound, match="no Contact"):
        await salesforce.fetch_phone("D-999")
    await salesforce.aclose()


async def test_lead_by_external_id_field_follows_a_conversion(
    crm: RecordingTransport, fake: FakeSalesforce
) -> None:
    salesforce = adapter(crm, object="Lead", external_id_field="Dialer_Id__c")
    assert (await salesforce.fetch_phone("L-1")).phones[0].value == "+12025550201"
    assert fake.requests[-1].url.params["q"] == f"{LEAD_SELECT} WHERE Dialer_Id__c = 'L-1' LIMIT 2"
    converted = await salesforce.fetch_phone("L-2")
    assert converted.state == "merged"
    assert converted.phones[0].value == "+12025550104"
    assert fake.requests[-1].url.path == SOBJECTS + "Contact/" + CONVERTED_TO
    await salesforce.aclose()


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("' OR Name != '", r"'\' OR Name != \''"),
        ("back\\slash\\", r"'back\\slash\\'"),
        ("\\' OR Id != '", r"'\\\' OR Id != \''"),
        ('say "hi"', r"'say \"hi\"'"),
        ("line\nbreak\r\ttab\bback\fform", r"'line\nbreak\r\ttab\bback\fform'"),
        ("50%_off", "'50%_off'"),  # not wildcards after `=`: sent as they are
    ],
    ids=["quote-injection", "backslashes", "escaped-escape", "double-quotes", "controls", "like"],
)
async def test_soql_literal_is_escaped(
    crm: RecordingTransport, fake: FakeSalesforce, value: str, literal: str
) -> None:
    salesforce = adapter(crm, object="Contact", external_id_field="Dialer_Id__c")
    with pytest.raises(RecordNotFound):
        await salesforce.fetch_phone(value)
    q = crm.calls.last.request.url.params["q"]
    assert q == f"{CONTACT_SELECT} WHERE Dialer_Id__c = {literal} LIMIT 2"
    assert crm.calls.last.response.status_code == 200  # parsed: not MALFORMED_QUERY
    assert fake.queries[-1].value == value  # one literal, decoded back to the id
    # A record whose field literally holds that text is found, and only it.
    holder = fake.add_contact(LastName="Literal", Phone="+12025550177", Dialer_Id__c=value)
    found = await salesforce.fetch_phone(value)
    assert found.phones == [CrmPhone("+12025550177", "main", primary=True)]
    assert [r["Id"] for r in crm.calls.last.response.json()["records"]] == [holder]
    await salesforce.aclose()


def test_unescaped_injection_would_be_visible(fake: FakeSalesforce) -> None:
    """The fake's parser refuses what an unescaped id would build: the escaping
    tests above could fail."""
    raw = f"{CONTACT_SELECT} WHERE Dialer_Id__c = '' OR Name != '' LIMIT 2"
    request = httpx.Request(
        "GET", BASE + QUERY, params={"q": raw}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    response = fake.handler(request)
    assert response.status_code == 400
    assert response.json() == [{"message": "unexpected token: OR", "errorCode": "MALFORMED_QUERY"}]


@settings(database=None)  # no example database written into the repository
@given(
    st.text(
        alphabet=st.characters(exclude_categories=["Cs", "Cc"]) | st.sampled_from("\\'\"\n\r\t\b\f")
    )
)
def test_soql_string_round_trips_through_the_parser(value: str) -> None:
    query = parse_soql(f"SELECT Id FROM Contact WHERE Dialer_Id__c = {soql_string(value)} LIMIT 2")
    assert query.value == value
    assert (query.fields, query.sobject, query.field, query.limit) == (
        ("Id",),
        "Contact",
        "Dialer_Id__c",
        2,
    )


@pytest.mark.parametrize("value", ["nul\x00", "bell\x07", "esc\x1b[0m", "\ud800"])
async def test_characters_soql_cannot_escape_are_not_sent(
    crm: RecordingTransport, fake: FakeSalesforce, value: str
) -> None:
    with pytest.raises(ValueError, match="no escape"):
        soql_string(value)
    salesforce = adapter(crm, object="Contact", external_id_field="Dialer_Id__c")
    with pytest.raises(RecordNotFound):
        await salesforce.fetch_phone(value)
    assert fake.requests == []
    await salesforce.aclose()


async def test_empty_and_overlong_values_are_not_sent(
    crm: RecordingTransport, fake: FakeSalesforce
) -> None:
    salesforce = adapter(crm, object="Contact", external_id_field="Dialer_Id__c")
    for value in ("", "x" * 256):
        with pytest.raises(RecordNotFound, match="255"):
            await salesforce.fetch_phone(value)
    assert fake.requests == []
    with pytest.raises(RecordNotFound):
        await salesforce.fetch_phone("x" * 255)  # the longest value a field holds is asked
    assert len(fake.requests) == 1
    await salesforce.aclose()


async def test_ambiguous_external_id_is_refused(
    crm: RecordingTransport, fake: FakeSalesforce
) -> None:
    fake.add_contact(LastName="Twin", Phone="+12025550166", Dialer_Id__c="D-101")
    salesforce = adapter(crm, object="Contact", external_id_field="Dialer_Id__c")
    with pytest.raises(RecordNotFound, match="2 or more Contacts have this Dialer_Id__c"):
        await salesforce.fetch_phone("D-101")
    assert fake.queries[-1].limit == 2  # asks for just enough to see the ambiguity
    await salesforce.aclose()


async def test_misspelt_external_id_field_is_not_a_missing_record(
    crm: RecordingTransport,
) -> None:
    salesforce = adapter(crm, object="Contact", external_id_field="Dialr_Id__c")
    with pytest.raises(AdapterUnavailable, match="400 INVALID_FIELD"):
        await salesforce.fetch_phone("D-101")
    await salesforce.aclose()


# -- settings ---------------------------------------------------------------------------------


def test_base_url_is_required() -> None:
    with pytest.raises(
        ValueError, match=r"base_url is required.*https://acme\.my\.salesforce\.com"
    ):
        SalesforceAdapter(token=TOKEN)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"api_version": "61.0"}, "api_version"),
        ({"api_version": "v61"}, "api_version"),
        ({"api_version": "v61.0/../x"}, "api_version"),
        ({"object": "Account"}, "object"),
        ({"object": "contact"}, "object"),
        ({"object": "Contact", "external_id_field": "Dialer_Id__c' OR"}, "external_id_field"),
        ({"object": "Contact", "external_id_field": "Dialer Id"}, "external_id_field"),
        ({"object": "Contact", "external_id_field": "Account.Name"}, "external_id_field"),
        ({"object": "Contact", "external_id_field": "_Id"}, "external_id_field"),
        ({"object": "Contact", "external_id_field": "Dialer_Id__"}, "external_id_field"),
        ({"object": "Contact", "external_id_field": "Dialer__Id__c__c"}, "external_id_field"),
        ({"object": "Contact", "external_id_field": "Id__c__x"}, "external_id_field"),
        ({"object": "Contact", "external_id_field": "A" * 101}, "external_id_field"),
        ({"object": "Contact", "external_id_field": ""}, "external_id_field"),
        ({"external_id_field": "Dialer_Id__c"}, 'needs object = "Contact" or "Lead"'),
    ],
)
def test_settings_are_checked(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        adapter(**settings)


@pytest.mark.parametrize("field", ["Email", "Dialer_Id__c", "ns__Dialer_Id__c", "External2__c"])
def test_field_api_names_are_accepted(field: str) -> None:
    assert adapter(object="Lead", external_id_field=field).external_id_field == field


def test_oauth_token_endpoint_defaults_to_login_salesforce() -> None:
    salesforce = adapter(token=None, client_id="cid", client_secret="csecret", refresh_token="r")
    assert salesforce.oauth is not None
    assert salesforce.oauth.token_url == "https://login.salesforce.com/services/oauth2/token"
    # A path is taken on base_url: the org's My Domain serves the token endpoint too.
    my_domain = oauth_adapter(token_url=TOKEN_PATH)
    assert my_domain.oauth is not None
    assert my_domain.oauth.token_url == TOKEN_URL
    # Without base_url, the login host stands in until the first token answer names
    # the org's instance (no data goes there).
    unplaced = oauth_adapter(base_url=None)
    assert unplaced.base_url == "https://login.salesforce.com"


def test_repr_hides_credentials(tmp_path: Path) -> None:
    salesforce = oauth_adapter(refresh_token_file=str(tmp_path / "refresh"))
    text = repr(salesforce) + repr(salesforce.oauth)
    for secret in ("csecret", "refresh-0", "cid"):
        assert secret not in text
    assert "127.0.0.1" in text


# -- limits and errors --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 500, 404, 403, 401, 400, 200])
async def test_html_pages_are_transient(
    crm: RecordingTransport, fake: FakeSalesforce, status: int
) -> None:
    fake.faults.append(fake.maintenance_page(status))
    salesforce = adapter(crm)
    with pytest.raises(AdapterUnavailable) as raised:
        await salesforce.fetch_phone(CONTACT)
    assert not isinstance(raised.value, AdapterRateLimited)
    assert "not JSON" in str(raised.value)
    assert (await salesforce.fetch_phone(CONTACT)).phones
    await salesforce.aclose()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (403, "INSUFFICIENT_ACCESS", AdapterAuthError),
        (403, "API_DISABLED_FOR_ORG", AdapterAuthError),
        (400, "MALFORMED_ID", RecordNotFound),
        (500, "UNKNOWN_EXCEPTION", AdapterUnavailable),
        (404, "NOT_FOUND", RecordNotFound),
    ],
)
async def test_error_codes_are_mapped(
    crm: RecordingTransport, fake: FakeSalesforce, status: int, code: str, expected: type[Exception]
) -> None:
    fake.faults.append(httpx.Response(status, json=[{"message": "m", "errorCode": code}]))
    salesforce = adapter(crm)
    with pytest.raises(expected) as raised:
        await salesforce.fetch_phone(CONTACT)
    assert type(raised.value) is expected
    await salesforce.aclose()


async def test_static_token_refused_is_an_auth_error(
    crm: RecordingTransport, fake: FakeSalesforce
) -> None:
    salesforce = adapter(crm, token="00Dwrong")
    with pytest.raises(AdapterAuthError):
        await salesforce.fetch_phone(CONTACT)
    assert crm.calls.last.response.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert len(fake.requests) == 1  # no token to refresh: no retry
    await salesforce.aclose()


def test_api_usage_reads_only_the_orgs_usage() -> None:
    salesforce = adapter(crm)
    header = "api-usage=25/5000, per-app-api-usage=17/250(appName=dialer)"
    salesforce.raise_for_status(httpx.Response(200, headers={"Sforce-Limit-Info": header}, json={}))
    assert salesforce.api_usage == (25, 5000)
    salesforce.raise_for_status(
        httpx.Response(200, headers={"Sforce-Limit-Info": "per-app-api-usage=3/9"}, json={})
    )
    assert salesforce.api_usage == (25, 5000)


# -- injection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("object_setting", ["auto", "Contact", "Lead"])
@pytest.mark.parametrize("external_id", HOSTILE_IDS, ids=lambda v: repr(v[:12]))
async def test_hostile_ids_never_reach_salesforce_by_id(
    crm: RecordingTransport, fake: FakeSalesforce, external_id: str, object_setting: str
) -> None:
    salesforce = adapter(crm, object=object_setting)
    with pytest.raises(RecordNotFound):
        await salesforce.fetch_phone(external_id)
    assert fake.requests == []  # none is a record id: refused before any request
    await salesforce.aclose()


@pytest.mark.parametrize("external_id", HOSTILE_IDS, ids=lambda v: repr(v[:12]))
async def test_hostile_ids_stay_one_soql_literal(
    crm: RecordingTransport, fake: FakeSalesforce, external_id: str
) -> None:
    salesforce = adapter(crm, object="Contact", external_id_field="Dialer_Id__c")
    with pytest.raises(RecordNotFound):
        await salesforce.fetch_phone(external_id)
    if len(external_id) > 255:
        assert fake.requests == []  # longer than any field value: not sent
        return
    (request,) = fake.requests
    assert request.url.raw_path.decode("ascii").split("?")[0] == QUERY
    assert list(request.url.params) == ["q"]
    assert "x-injected" not in request.headers
    assert crm.calls.last.response.status_code == 200  # a well-formed query...
    query = fake.queries[-1]
    assert query.value == external_id  # ...whose one literal is the id, whole
    assert (query.sobject, query.field, query.limit) == ("Contact", "Dialer_Id__c", 2)
    await salesforce.aclose()


# -- predial check, against the fake served by uvicorn ------------------------------------------


def test_predial_check_against_the_served_fake(fake: FakeSalesforce, tmp_path: Path) -> None:
    settings = {"token": "${SF_TOKEN}"}
    with served_check(
        fake, "salesforce", settings, env={"SF_TOKEN": TOKEN}, directory=tmp_path
    ) as check:
        check(CONTACT).found("salesforce")
        check(DNC_CONTACT).refused("do_not_call")
        check(NOBODY).refused("not_found")
    assert fake.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_lead_fields_constant_matches_the_request() -> None:
    assert LEAD_FIELDS == ("Phone", "MobilePhone", "DoNotCall", "IsConverted", "ConvertedContactId")


def test_a_token_without_base_url_is_refused() -> None:
    with pytest.raises(ValueError, match="base_url is required with a token"):
        SalesforceAdapter(token="00D!session")
