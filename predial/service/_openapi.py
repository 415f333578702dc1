"""`GET /openapi.json`: the service's contract, generated from its pydantic models.

The route table here is checked against the app's routes by a test, and the
schemas are the models the service answers with, so the document cannot drift.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from .._models import Lead
from ._contract import (
    BatchRequest,
    BatchResponse,
    ConnectRequest,
    ConnectResponse,
    Decision,
    ErrorBody,
    VapiToolRequest,
    VapiToolResponse,
)

__all__ = ["ROUTES", "openapi_document"]

_ERRORS = {
    "400": "Malformed JSON, or a lead that fails validation (`error.field` names it)",
    "401": "No credentials, a wrong API key, or a bad, stale or replayed signature",
    "403": "The API key is not allowed to ask for this campaign",
    "404": "No such campaign is configured (a configuration mistake, not retry later)",
    "408": "The body did not arrive within body_timeout (default 10 s)",
    "413": "The body is over the limit (default 1 MB)",
    "429": "The caller is over its concurrency or rate allowance; see Retry-After",
    "503": "The service is shutting down, or too many signed bodies are being read; "
    "see Retry-After",
}

Method = Literal["get", "post"]

# path -> (method, summary, request model, 200 model, error statuses)
ROUTES: dict[str, tuple[Method, str, type[BaseModel] | None, Any, tuple[str, ...]]] = {
    "/v1/resolve": (
        "post",
        "The number to dial for one lead, or a skip / retry-later verdict",
        Lead,
        Decision,
        ("400", "401", "403", "404", "408", "413", "429", "503"),
    ),
    "/v1/resolve/batch": (
        "post",
        "Decisions for up to 1,000 leads, in input order; a bad item never fails the batch",
        BatchRequest,
        BatchResponse,
        ("400", "401", "408", "413", "429", "503"),
    ),
    "/v1/platforms/vapi/tool": (
        "post",
        "Vapi tool call: always HTTP 200, each result a one-line JSON decision",
        VapiToolRequest,
        VapiToolResponse,
        (),
    ),
    "/v1/platforms/connect": (
        "post",
        "Amazon Connect outbound campaigns: a batch of customer profiles",
        ConnectRequest,
        ConnectResponse,
        ("400", "401", "408", "413", "429", "503"),
    ),
    "/livez": ("get", "The process is up", None, "status", ()),
    "/readyz": ("get", "Adapters are built and the service is not draining", None, "ready", ()),
    "/metrics": ("get", "Prometheus text format", None, "metrics", ()),
    "/openapi.json": ("get", "This document", None, "openapi", ()),
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service."""
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (Lead, "validation"),
        (Decision, "serialization"),
        (ErrorBody, "serialization"),
        (BatchRequest, "validation"),
        (BatchResponse, "serialization"),
        (VapiToolRequest, "validation"),
        (VapiToolResponse, "serialization"),
        (ConnectRequest, "validation"),
        (ConnectResponse, "serialization"),
    ]
    _, definitions = models_json_schema(
        models, by_alias=True, ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = definitions.get("$defs", {})
    # Fields the dialer's own API adds (_id, status, attempts, ...) are accepted and
    # ignored by the service, unlike the Lead model's own strictness.
    schemas["Lead"] = {**schemas["Lead"], "additionalProperties": True}
    schemas["Lead"]["description"] = (
        "A lead as the Lupitor Leads API spells it; other fields are accepted and ignored."
    )
    # The rules the Lead model checks in code, not in its schema: phoneNumber is
    # E.164, and a lead has a phoneNumber or a (non-blank) externalId.
    properties = schemas["Lead"]["properties"]
    properties["phoneNumber"] = {
        **properties["phoneNumber"],
        "anyOf": [{"type": "string", "pattern": r"^\+[1-9][0-9]{1,14}$"}, {"type": "null"}],
    }
    schemas["Lead"]["anyOf"] = [
        {"required": ["phoneNumber"], "properties": {"phoneNumber": {"type": "string"}}},
        {
            "required": ["externalId"],
            "properties": {"externalId": {"type": "string", "pattern": r"\S"}},
        },
    ]
    paths: dict[str, Any] = {}
    for path, (method, summary, request, answer, errors) in ROUTES.items():
        operation: dict[str, Any] = {"summary": summary, "responses": {}}
        if request is not None:
            operation["requestBody"] = {"required": True, "content": _json(_ref(request))}
            operation["security"] = [{"bearer": []}, {"apiKey": []}, {"webhookSignature": []}]
        responses = operation["responses"]
        if isinstance(answer, type):
            responses["200"] = {"description": "The answer", "content": _json(_ref(answer))}
        elif answer == "metrics":
            responses["200"] = {
                "description": "Prometheus exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        elif answer == "openapi":
            responses["200"] = {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}
        else:
            status: dict[str, Any] = {
                "type": "object",
                "properties": {"status": {"type": "string"}},
            }
            if answer == "ready":
                status = {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string"},
                        "sharedTier": {
                            "type": "string",
                            "enum": ["up", "degraded", "closed"],
                            "description": "With a shared tier: Redis answers (up), or the "
                            "service works on its local tiers (degraded); never unready "
                            "because of it",
                        },
                    },
                }
            responses["200"] = {"description": "Up", "content": _json(status)}
            if answer == "ready":
                responses["503"] = {"description": "Starting or draining", "content": _json(status)}
        for code in errors:
            responses[code] = {"description": _ERRORS[code], "content": _json(_ref(ErrorBody))}
        paths[path] = {method: operation}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "predial: the predial function",
            "version": __version__,
            "description": (
                "Before each dial, POST the lead; the answer's `status` says ok (dial "
                "`phoneNumber`), skip, or retry_later. HTTP status codes are for the "
                "transport and admission only."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "webhookSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "Standard Webhooks: webhook-id, webhook-timestamp, "
                    "webhook-signature (HMAC-SHA256 over id.timestamp.body)",
                },
            },
        },
    }
