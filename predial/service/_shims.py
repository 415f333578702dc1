"""Platform shims: a platform's own request shape, mapped onto the same resolve.

Each shim is a thin function: read the platform's request, make leads of it, call
`PredialService.decide`, and answer in the platform's shape. Adding one (Retell,
a Genesys data action) is the same few lines; see `docs/service.md`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._app import PredialService, Problem, record
from ._auth import Caller
from ._contract import BadLeadBody

__all__ = ["connect", "vapi_tool"]


def _one_line(value: Any) -> str:
    # Vapi wants single-line result strings; json.dumps escapes every newline, and
    # ensure_ascii the line breaks beyond ASCII too (U+0085, U+2028, U+2029).
    return json.dumps(value, separators=(",", ":"))


async def vapi_tool(service: PredialService, request: Request) -> Response:
    """Vapi's tool call: `{"message": {"type": "tool-calls", "toolCallList": [...]}}`.

    Each tool call's `function.arguments` is a lead (an object, or a JSON string as
    OpenAI-style tools send it); `?campaignId=` on the tool's URL supplies the
    campaign when the arguments do not. Always HTTP 200, as Vapi ignores any other
    status: a failure is an `error` string in the call's result.
    """
    default_campaign = request.query_params.get("campaignId")
    calls: list[Any] = []

    async def handle(caller: Caller, body: bytes) -> Response:
        nonlocal calls
        found = _tool_calls(service.parse(body))
        if found is None:
            raise Problem(400, "invalid_request", "message.toolCallList must be a list")
        calls = found
        service.check_batch_size(calls, "tool calls", "message.toolCallList")
        leads = [_vapi_lead(call, default_campaign) for call in calls]
        decisions = await service.decide_many(caller, leads)
        record(request, decisions)
        results = []
        for call, decision in zip(calls, decisions, strict=True):
            entry: dict[str, Any] = {"toolCallId": _call_id(call)}
            if "error" in decision:
                entry["error"] = _one_line(decision["error"])
            else:
                entry["result"] = _one_line(decision)
            results.append(entry)
        return JSONResponse({"results": results})

    try:
        return await service.admitted(request, handle)
    except Problem as problem:
        # Answered 200 as Vapi requires; the access line still says what went wrong.
        request.scope.setdefault("state", {})["predial.error"] = problem.code
        state = request.scope.setdefault("state", {})
        if not calls and "predial.caller" in state and problem.status not in (400, 408, 413):
            # An authenticated caller refused before its body was read (over its
            # allowance): read it now, bounded as ever, so each error names the call
            # Vapi waits on. An unauthenticated body is never read.
            calls = await _calls_of_refused(service, request)
        error = _one_line({"code": problem.code, "message": problem.message})
        results = [{"toolCallId": _call_id(call), "error": error} for call in calls]
        if not results:
            results = [{"toolCallId": "", "error": error}]
        return JSONResponse({"results": results}, headers=problem.headers)


def _tool_calls(document: Any) -> list[Any] | None:
    message = document.get("message") if isinstance(document, dict) else None
    if not isinstance(message, dict):
        return None
    found = message.get("toolCallList")
    if found is None:
        found = message.get("toolCalls")
    return found if isinstance(found, list) else None


async def _calls_of_refused(service: PredialService, request: Request) -> list[Any]:
    try:
        body = await service.read_body(request)
        return _tool_calls(service.parse(body)) or []
    except (Problem, RuntimeError):  # too large, malformed, or already consumed
        return []


def _call_id(call: Any) -> str:
    value = call.get("id") if isinstance(call, dict) else None
    return value if isinstance(value, str) else ""


def _vapi_lead(call: Any, default_campaign: str | None) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if isinstance(arguments, str):
        try:
            # As the body is read: a deep nesting is a ValueError, not a RecursionError.
            arguments = from_json(arguments, allow_inf_nan=False)
        except ValueError:
            return arguments  # refused as "not a lead" with the item's index
    if isinstance(arguments, dict) and default_campaign and "campaignId" not in arguments:
        arguments = {**arguments, "campaignId": default_campaign}
    return arguments


async def connect(service: PredialService, request: Request) -> Response:
    """Amazon Connect outbound campaigns' batch: `Items.CustomerProfiles[]`.

    Each profile becomes a lead: `CustomerData` (a JSON string, or an object) gives
    `campaignId`, `externalId` and `phoneNumber`; `externalId` defaults to the
    `ProfileId`, `campaignId` to `?campaignId=` on the URL. The answer holds one
    entry per profile: `Id` (the ProfileId), `ResultData` (the decision) and, when
    the profile could not be resolved, `IsFailure`, `ErrorCode` and `ErrorMessage`.
    """
    default_campaign = request.query_params.get("campaignId")

    async def handle(caller: Caller, body: bytes) -> Response:
        document = service.parse(body)
        items = document.get("Items") if isinstance(document, dict) else None
        profiles = items.get("CustomerProfiles") if isinstance(items, dict) else None
        if not isinstance(profiles, list):
            raise Problem(400, "invalid_request", "Items.CustomerProfiles must be a list", "Items")
        service.check_batch_size(profiles, "profiles", "Items")
        leads = [_connect_lead(profile, default_campaign) for profile in profiles]
        decisions = await service.decide_many(caller, leads)
        record(request, decisions)
        answers = []
        for profile, decision in zip(profiles, decisions, strict=True):
            profile_id = profile.get("ProfileId") if isinstance(profile, dict) else None
            entry: dict[str, Any] = {"Id": profile_id if isinstance(profile_id, str) else ""}
            if "error" in decision:
                entry.update(
                    IsFailure=True,
                    ErrorCode=decision["error"]["code"],
                    ErrorMessage=decision["error"]["message"],
                )
            else:
                entry.update(ResultData=decision, IsFailure=False)
            answers.append(entry)
        return JSONResponse({"Items": {"CustomerProfiles": answers}})

    return await service.admitted(request, handle)


def _connect_lead(profile: Any, default_campaign: str | None) -> Any:
    if not isinstance(profile, dict):
        return profile
    data = profile.get("CustomerData")
    if isinstance(data, str):
        try:
            data = from_json(data, allow_inf_nan=False)
        except ValueError:
            return BadLeadBody("CustomerData is not valid JSON", "CustomerData")
    if data is not None and not isinstance(data, dict):
        # Not resolved by its ProfileId alone: a malformed payload is not a lead.
        return BadLeadBody("CustomerData must be a JSON object, or a string of one", "CustomerData")
    lead: dict[str, Any] = dict(data) if data else {}
    if "externalId" not in lead and isinstance(profile.get("ProfileId"), str):
        lead["externalId"] = profile["ProfileId"]
    if "campaignId" not in lead and default_campaign:
        lead["campaignId"] = default_campaign
    return lead
