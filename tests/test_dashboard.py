"""docs/grafana-dashboard.json queries only series that `predial serve` exports.

The app is built in-process over a small CRM, driven until every labelled series
exists (a cache hit and miss, CRM calls that succeed and fail, a refusal, HTTP
errors), and its `/metrics` is parsed with prometheus-client's own parser. Every
metric a panel or template variable names must be one of those series, and every
label it filters or groups by must be one of that series' labels.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import predial
from predial import (
    AdapterUnavailable,
    Campaign,
    RecordNotFound,
    Resolver,
    RetrySettings,
)
from predial.service import ServiceConfig, create_app

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"

# PromQL words that are not metric names: aggregations, their modifiers, operators.
KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^{}]*)\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([a-zA-Z_:][\w:]*)")
_LABEL_NAME = re.compile(r"([a-zA-Z_][\w]*)\s*(=~|!~|!=|=)")
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,\s*(\w+)\s*\)")


class Directory:
    """A CRM of three records: a number, a missing one, and one that is down."""

    name = "directory"

    async def fetch_phone(self, external_id: str) -> str:
        if external_id.startswith("gone"):
            raise RecordNotFound(external_id)
        if external_id.startswith("down"):
            raise AdapterUnavailable("the CRM is down", retry_after=5.0)
        return "+12024561111"


class DirectoryPlugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(Directory)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows hold their panels when collapsed


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query template variable."""
    queries = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if "expr" in target:
                queries.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            queries.append((f"variable {variable['name']!r}", text))
    return queries


def referenced(expr: str) -> tuple[set[str], set[str]]:
    """The metric names an expression reads, and the label names it filters or
    groups by. Grafana's `label_values(metric, label)` counts as both."""
    metrics: set[str] = set()
    labels: set[str] = set()
    for found in _LABEL_VALUES.finditer(expr):
        metrics.add(found.group(1))
        labels.add(found.group(2))
    expr = _LABEL_VALUES.sub(" ", expr)
    # Label names in selectors, then the selectors' values, then ranges, then
    # grouping clauses: what is left is functions, numbers and metric names.
    for found in _MATCHERS.finditer(_STRING.sub('""', expr)):
        labels.update(name for name, _ in _LABEL_NAME.findall(found.group(2)))
    expr = _STRING.sub(" ", expr)
    expr = _MATCHERS.sub(lambda found: f" {found.group(1) or ''} ", expr)
    expr = _RANGE.sub(" ", expr)
    for found in _GROUPING.finditer(expr):
        labels.update(name.strip() for name in found.group(2).split(",") if name.strip())
    expr = _GROUPING.sub(" ", expr)
    for found in _IDENTIFIER.finditer(expr):
        name = found.group(1)
        rest = expr[found.end() :].lstrip()
        if name in KEYWORDS or rest.startswith("("):  # a keyword or a function call
            continue
        metrics.add(name)
    return metrics, labels


async def exported_series() -> dict[str, set[str]]:
    """Each series name the service exports, with its label names."""
    resolver = Resolver(
        [Campaign(cid, "directory", {}, default_region="US") for cid in ("cmp_a", "cmp_b")],
        plugins=[DirectoryPlugin()],
        load_entrypoints=False,
        retry=RetrySettings(attempts=1),
    )
    app = create_app(resolver, settings=ServiceConfig(allow_unauthenticated=True))
    # starlette's TestClient warns (deprecated) with httpx rather than httpx2: httpx's
    # ASGI transport, with the app's lifespan run around it, is the same app.
    # 127.0.0.1: unauthenticated requests are only admitted on a loopback address.
    transport = httpx.ASGITransport(app=app)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
        ):
            for lead in (
                {"campaignId": "cmp_a", "externalId": "C-1"},  # a miss, a CRM call: ok
                {"campaignId": "cmp_a", "externalId": "C-1"},  # a cache hit
                {"campaignId": "cmp_a", "externalId": "gone-1"},  # not found: skip
                {"campaignId": "cmp_b", "externalId": "down-1"},  # unavailable: retry_later
                {"campaignId": "cmp_b", "externalId": "down-1", "phoneNumber": "+12024561414"},
            ):
                answer = await client.post("/v1/resolve", json=lead)
                assert answer.status_code == 200, answer.text
            unknown = {"campaignId": "nope", "externalId": "x"}
            assert (await client.post("/v1/resolve", json=unknown)).status_code == 404
            batch = {"leads": [{"campaignId": "cmp_a", "externalId": "C-2"}, {}]}
            assert (await client.post("/v1/resolve/batch", json=batch)).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            text = (await client.get("/metrics")).text
    finally:
        await resolver.close()
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    with pytest.MonkeyPatch.context() as patch:
        # The registry of this process, not a multiprocess directory left by another test.
        patch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        return asyncio.run(exported_series())


def test_every_metric_the_dashboard_queries_is_exported(exported: dict[str, set[str]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = dashboard_queries(dashboard)
    assert len(queries) > 10, "the dashboard lost its panels"
    problems = []
    used: set[str] = set()
    for where, expr in queries:
        metrics, labels = referenced(expr)
        if not metrics:
            problems.append(f"{where}: no metric found in {expr!r}")
        for metric in sorted(metrics):
            if metric not in exported:
                problems.append(f"{where}: {metric} is not a series the service exports")
                continue
            used.add(metric)
        known = set().union(*(exported.get(metric, set()) for metric in metrics))
        for label in sorted(labels - known):
            problems.append(f"{where}: no series of {sorted(metrics)} has the label {label!r}")
    assert not problems, "\n".join(problems)
    # What the issue asks the dashboard to show is all there.
    for metric in (
        "predial_resolves_total",
        "predial_resolve_duration_seconds_bucket",
        "predial_crm_calls_total",
        "predial_crm_call_duration_seconds_bucket",
        "predial_cache_lookups_total",
        "predial_breaker_state",
        "predial_http_requests_total",
        "predial_http_request_duration_seconds_bucket",
    ):
        assert metric in used, f"no panel shows {metric}"


def test_the_datasource_is_an_input_and_campaign_a_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in _panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    (campaign,) = (v for v in dashboard["templating"]["list"] if v["name"] == "campaign")
    assert campaign["query"]["query"] == "label_values(predial_resolves_total, campaign)"
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


@pytest.mark.parametrize(
    ("expr", "metrics", "labels"),
    [
        (
            'sum by (status) (rate(predial_resolves_total{campaign=~"$campaign"}[$__rate_interval]))',
            {"predial_resolves_total"},
            {"status", "campaign"},
        ),
        (
            "histogram_quantile(0.99, sum by (le, route) (rate(x_bucket[5m])))",
            {"x_bucket"},
            {"le", "route"},
        ),
        (
            'count(max by (campaign) (g{state="open"}) == 1) or vector(0)',
            {"g"},
            {"campaign", "state"},
        ),
        ('a{reason!="x,y"} / on (campaign) b', {"a", "b"}, {"reason", "campaign"}),
        (
            "label_values(predial_resolves_total, campaign)",
            {"predial_resolves_total"},
            {"campaign"},
        ),
        ('{__name__="m"}', set(), {"__name__"}),
    ],
)
def test_the_query_reader(expr: str, metrics: set[str], labels: set[str]) -> None:
    assert referenced(expr) == (metrics, labels)


def test_a_bogus_metric_is_caught(exported: dict[str, set[str]]) -> None:
    metrics, _ = referenced("sum(rate(predial_resolvez_total[5m]))")
    assert metrics == {"predial_resolvez_total"}
    assert not metrics <= set(exported)
