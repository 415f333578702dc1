"""The ASGI app of `predial serve`: routes, the request path, health and metrics.

One resolve request goes: draining? → credentials → the caller's allowance → the
body (bounded) → JSON → the lead → the key's campaign scope → the campaign →
`Resolver.resolve` → a `Decision`. Everything before the resolve answers with an
HTTP status and `{"error": {...}}`; the resolve itself always answers 200 with the
decision in the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from cachetools import TTLCache
from pydantic_core import from_json, to_json
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from .._config import PredialConfig, find_config, load_config
from .._decision import DecisionContext, current_decision
from .._fetcher import redacted_traceback
from .._models import Lead, Resolution
from .._redaction import register_secret
from .._resolver import Resolver
from ..errors import ConfigurationError, Unresolvable
from ..metrics import ResolverMetrics
from ._accesslog import AccessLog, ServiceMetrics
from ._admission import Admission, Refused
from ._auth import Authenticator, AuthFailure, Caller
from ._contract import BadLeadBody, decision_for, error_json, lead_from_json, new_decision_id
from ._settings import ServiceConfig

__all__ = [
    "PredialService",
    "Problem",
    "build_app",
    "create_app",
    "resolver_from_config",
]

log = logging.getLogger(__name__)

# Every live service of this process, so a signal handler can start their drain.
LIVE: weakref.WeakSet[PredialService] = weakref.WeakSet()

JSON = "application/json"
# Headers a proxy, load balancer or CDN adds for the client it forwards: a request
# carrying any of them did not start on this host, whatever its socket says.
FORWARDING_HEADERS = frozenset(
    {"forwarded", "via", "x-real-ip", "true-client-ip", "cf-connecting-ip", "x-client-ip"}
)
# Answers to signed requests kept for a retrying sender: single decisions and small
# batches; a large batch's retry within the window is refused as a replay instead.
_REPLAYED_ANSWER_LIMIT = 16_384
_ANSWER_CACHE_BYTES = 16 * 1_048_576
# Seconds a signed request's body gets before its signature can be checked.
_UNVERIFIED_BODY_TIMEOUT = 5.0


class FastJSON(Response):
    """A JSON answer rendered by pydantic-core (a few µs less than `json.dumps`)."""

    media_type = JSON

    def render(self, content: Any) -> bytes:
        return to_json(content)


class Problem(Exception):
    """An answer other than a decision: an HTTP status and `{"error": {...}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return JSONResponse(
            error_json(self.code, self.message, self.field), self.status, self.headers
        )


class PredialService:
    """The resolver behind HTTP: authentication, admission, decisions, drain."""

    def __init__(
        self,
        resolver: Resolver,
        settings: ServiceConfig,
        *,
        owns_resolver: bool = True,
        registry: Any = None,
    ) -> None:
        from prometheus_client import CollectorRegistry

        problem = settings.credentials_problem()
        if problem is not None:
            raise ConfigurationError(problem)
        for item in settings.keys:
            register_secret(item.key.get_secret_value())
        for secret in settings.webhook_secrets:
            register_secret(secret.get_secret_value())
        self.resolver = resolver
        self.settings = settings
        self.owns_resolver = owns_resolver
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ResolverMetrics(self.registry)
        resolver.attach_metrics(self.metrics)
        self.http = ServiceMetrics(self.registry)
        self.auth = Authenticator(settings)
        self.admission = Admission()
        self.draining = False
        self.ready = False
        self.batch_deadline = resolver.max_deadline
        self._warned_anonymous = False
        #: Where access lines go instead of the `predial.access` logger (`predial
        #: serve` writes them to stdout directly; see `accesslog.LineWriter`).
        self.access_writer: Callable[[str], None] | None = None
        self._unverified_bytes = 0
        # Answers to signed requests by route and webhook-id, for the sender that
        # retries one: at most 16 MB of them, for as long as the id is remembered.
        self._answers: TTLCache[tuple[str, bytes, str], tuple[bytes, list[Any]]] = TTLCache(
            maxsize=_ANSWER_CACHE_BYTES,
            ttl=2 * settings.signature_tolerance,
            getsizeof=lambda kept: len(kept[0]) + 200,
        )
        LIVE.add(self)

    def drain(self) -> None:
        """Stop admitting requests (503) and report not ready; in-flight ones finish."""
        if not self.draining:
            log.info("draining: new requests are answered 503, in-flight ones finish")
        self.draining = True

    def _shutting_down(self) -> Problem:
        return Problem(
            503,
            "shutting_down",
            "the service is shutting down; retry on another instance",
            headers={"Retry-After": str(self.settings.retry_after)},
        )

    # -- the request path ----------------------------------------------------------

    async def admitted(
        self, request: Request, handle: Callable[[Caller, bytes], Awaitable[Response]]
    ) -> Response:
        """Run `handle(caller, body)` for an authenticated, admitted request."""
        if self.draining:
            raise self._shutting_down()
        headers = headers_of(request)
        try:
            caller = self.auth.by_key(headers)
        except AuthFailure as failure:
            raise _unauthenticated(str(failure)) from None
        if caller is None and not self.auth.is_signed(headers):
            caller = self._anonymous(request)
        if caller is not None:
            self._enter(request, caller)
            try:
                body = await self.read_body(request)
                return await handle(caller, body)
            finally:
                self.admission.leave(caller)
        return await self._signed(request, handle)

    async def _signed(
        self, request: Request, handle: Callable[[Caller, bytes], Awaitable[Response]]
    ) -> Response:
        try:
            signed = self.auth.precheck(headers_of(request))
        except AuthFailure as failure:
            raise _unauthenticated(str(failure)) from None
        body = await self.read_body(request, unverified=True)
        try:
            self.auth.check_signature(signed, body)
        except AuthFailure as failure:
            raise _unauthenticated(str(failure)) from None
        caller = self.auth.webhook_caller
        state = request.scope.setdefault("state", {})
        digest = hashlib.sha256(body).digest()
        key = (request.scope["path"], request.scope["query_string"], signed.message_id)
        prior = self.auth.seen(signed.message_id)
        if prior is not None:
            if not hmac.compare_digest(prior, digest):
                raise _unauthenticated(
                    "this webhook-id was already used for another request (a replay)"
                )
            kept = self._answers.get(key)
            if kept is not None:
                # The same request again (a sender retrying a lost answer): the same
                # answer, not a second resolve.
                state.update({"predial.caller": caller.name, "predial.replayed": True})
                state["predial.decisions"] = kept[1]
                return Response(kept[0], media_type=JSON, headers={"Idempotent-Replayed": "true"})
            # Its answer is not kept (large, retry_later, evicted, another route):
            # resolving is a read, so the request is simply answered again.
        self._enter(request, caller)
        try:
            response = await handle(caller, body)
        finally:
            self.admission.leave(caller)
        if response.status_code == 200:
            self.auth.remember(signed.message_id, digest)
            # A streamed answer (a route of the user's own) has no body to keep.
            answer = getattr(response, "body", None)
            # A retry_later is not repeated: the retry comes when it may succeed.
            if (
                isinstance(answer, bytes | memoryview)
                and len(answer) <= _REPLAYED_ANSWER_LIMIT
                and b'"retry_later"' not in bytes(answer)
            ):
                self._answers[key] = (bytes(answer), state.get("predial.decisions", []))
        return response

    def _anonymous(self, request: Request) -> Caller:
        scope = request.scope
        server, client = scope.get("server"), scope.get("client")
        # A reverse proxy on this host connects from loopback too: a forwarded
        # request comes from elsewhere and is never anonymous.
        headers = headers_of(request)
        forwarded = any(name in headers for name in FORWARDING_HEADERS) or any(
            name.startswith(("x-forwarded-", "x-envoy-")) for name in headers
        )
        if not forwarded and self.auth.anonymous_allowed(
            server[0] if server else None, client[0] if client else None
        ):
            return self.auth.anonymous
        if self.settings.allow_unauthenticated and not self._warned_anonymous:
            self._warned_anonymous = True
            log.warning(
                "allow_unauthenticated applies to loopback callers of a loopback service "
                "only, never to forwarded requests; this one needs credentials"
            )
        if forwarded and self.settings.allow_unauthenticated:
            raise _unauthenticated(
                "a forwarded request (X-Forwarded-For, Forwarded, Via, ...) always needs "
                "credentials: "
                "send an API key (Authorization: Bearer …) or sign the request"
            )
        raise _unauthenticated("send an API key (Authorization: Bearer …) or sign the request")

    def _enter(self, request: Request, caller: Caller) -> None:
        # Named in the access line even when refused: which key is over its allowance.
        request.scope.setdefault("state", {})["predial.caller"] = caller.name
        try:
            self.admission.enter(caller)
        except Refused as refused:
            raise Problem(
                429,
                "too_many_requests",
                str(refused),
                headers={"Retry-After": str(refused.retry_after)},
            ) from None

    async def read_body(self, request: Request, *, unverified: bool = False) -> bytes:
        """The request's body, at most `max_body_bytes` (413 above), arriving within
        `body_timeout` (408 after); read once.

        `unverified`: a body read before its sender is known (a signed request, read
        to check its signature). Anyone can send one, so the bytes of all of them
        together are capped (`max_unverified_bytes`, 503 `busy` above) and they get
        at most 5 s: an idle connection holds nothing, a slow one not for long.
        """
        state = request.scope.setdefault("state", {})
        kept: bytes | None = state.get("predial.body")
        if kept is not None:
            return kept
        limit = self.settings.max_body_bytes
        declared = headers_of(request).get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise Problem(400, "invalid_request", "Content-Length is not a number") from None
            if length > limit:
                raise _too_large(limit)
        # A body that trickles in (or stalls) must not hold its slot for good. A bare
        # timer, not asyncio.timeout: this runs on every request.
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        deadline = self.settings.body_timeout
        if unverified:
            deadline = min(deadline, _UNVERIFIED_BODY_TIMEOUT)
        timer = asyncio.get_running_loop().call_later(deadline, expire)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise Problem(400, "client_disconnected", "the client went away")
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                if unverified:
                    self._unverified_bytes += len(chunk)
                    if self._unverified_bytes > self.settings.max_unverified_bytes:
                        raise Problem(
                            503,
                            "busy",
                            "too many signed request bodies are being read; retry shortly",
                            headers={"Retry-After": "1"},
                        )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            # Ours only if the timer fired and no one else cancelled the task too
            # (asyncio.timeout's own rule): a shutdown's cancellation goes on.
            if not expired or task.uncancel() > 0:
                raise
            raise Problem(
                408,
                "body_timeout",
                f"the request body did not arrive within {deadline:g} s",
                headers={"Connection": "close"},
            ) from None
        finally:
            timer.cancel()
            if unverified:
                self._unverified_bytes -= size
        state["predial.body"] = body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return body

    def parse(self, body: bytes) -> Any:
        if not body:
            raise Problem(400, "invalid_json", "the request body is empty; send a JSON object")
        try:
            return from_json(body, allow_inf_nan=False)
        except ValueError as error:
            raise Problem(400, "invalid_json", f"the body is not valid JSON: {error}") from None

    def lead_for(self, caller: Caller, document: object) -> Lead:
        """The lead of a request, checked against the caller's scope and the campaigns."""
        try:
            lead = lead_from_json(document)
        except BadLeadBody as invalid:
            raise Problem(400, invalid.code, invalid.message, invalid.field) from None
        if not caller.may_ask(lead.campaign_id):
            raise Problem(
                403,
                "forbidden",
                "this API key is not allowed to ask for that campaign",
                "campaignId",
            )
        if lead.campaign_id not in self.resolver.campaigns:
            raise Problem(
                404,
                "unknown_campaign",
                "no campaign with this id is configured on this service",
                "campaignId",
            )
        return lead

    async def decide(self, lead: Lead) -> dict[str, Any]:
        """The decision for a checked lead (never raises for a refusal)."""
        outcome: Resolution | Unresolvable
        decision_id = new_decision_id()
        # The audit record of this resolve carries the answer's id (see _decision).
        token = current_decision.set(DecisionContext(decision_id, "service"))
        try:
            outcome = await self.resolver.resolve(lead)
        except Unresolvable as refusal:
            outcome = refusal
        except RuntimeError:
            if self.resolver.closed:
                raise self._shutting_down() from None
            raise
        finally:
            current_decision.reset(token)
        return decision_for(outcome, lead, decision_id)

    # -- routes ----------------------------------------------------------------------

    async def resolve(self, request: Request) -> Response:
        async def handle(caller: Caller, body: bytes) -> Response:
            lead = self.lead_for(caller, self.parse(body))
            decision = await self.decide(lead)
            record(request, [decision])
            return FastJSON(decision)

        return await self.admitted(request, handle)

    async def resolve_batch(self, request: Request) -> Response:
        async def handle(caller: Caller, body: bytes) -> Response:
            document = self.parse(body)
            if not isinstance(document, dict):
                raise Problem(400, "invalid_request", 'the body must be {"leads": [...]}', None)
            leads = document.get("leads")
            if not isinstance(leads, list):
                raise Problem(400, "invalid_request", "leads must be a list of leads", "leads")
            self.check_batch_size(leads, "leads", "leads")
            results = await self.decide_many(caller, leads)
            record(request, results)
            return FastJSON({"results": results})

        return await self.admitted(request, handle)

    def check_batch_size(self, items: list[Any], noun: str, field: str) -> None:
        """400 `batch_too_large` for more than `max_batch` items (nothing resolved)."""
        if len(items) > self.settings.max_batch:
            raise Problem(
                400,
                "batch_too_large",
                f"a request holds at most {self.settings.max_batch} {noun}; "
                f"this one has {len(items)}",
                field,
            )

    async def decide_many(self, caller: Caller, items: list[Any]) -> list[dict[str, Any]]:
        """Decisions for `items` in order, concurrently, a per-item error for a bad one."""
        results: list[dict[str, Any]] = [{} for _ in items]
        pending: dict[int, asyncio.Task[dict[str, Any]]] = {}
        # A batch of misses is at most this many CRM calls at once, not one per lead.
        slots = asyncio.Semaphore(self.settings.batch_concurrency)

        async def decide_in_turn(lead: Lead) -> dict[str, Any]:
            async with slots:
                return await self.decide(lead)

        for index, item in enumerate(items):
            try:
                lead = self.lead_for(caller, item)
            except Problem as problem:
                results[index] = _item_error(index, problem.code, problem.message, problem.field)
                continue
            pending[index] = asyncio.ensure_future(decide_in_turn(lead))
        if pending:
            # Each resolve holds its campaign's deadline; this bounds the whole batch
            # even if an adapter ignores it.
            await asyncio.wait(pending.values(), timeout=self.batch_deadline + 1.0)
        for index, task in pending.items():
            if not task.done():
                task.cancel()
                results[index] = _item_error(
                    index, "timeout", "no decision within the deadline; retry later"
                )
                continue
            error = task.exception()
            if error is None:
                results[index] = task.result()
            elif isinstance(error, Problem):
                results[index] = _item_error(index, error.code, error.message, error.field)
            else:
                log.error("batch item %d failed: %s", index, type(error).__name__)
                results[index] = _item_error(index, "internal_error", "resolving this lead failed")
        return results

    async def livez(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.draining:
            return JSONResponse(
                {"status": "draining"}, 503, {"Retry-After": str(self.settings.retry_after)}
            )
        if not self.ready:
            return JSONResponse({"status": "starting"}, 503)
        # No campaign ids or breaker states here: /readyz answers anyone, and which
        # campaigns exist is not theirs to learn (breakers are in /metrics). The
        # shared tier's state is told, but never makes the service unready: without
        # Redis it answers from its local tiers.
        shared = self.resolver.shared
        if shared is None:
            return JSONResponse({"status": "ready"})
        if not shared.up and shared.state != "closed":
            await shared.ping()  # a probe, bounded by the tier's timeout
        return JSONResponse({"status": "ready", "sharedTier": shared.state})

    async def metrics_text(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from ..metrics import multiprocess_mode

        if multiprocess_mode():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            payload = generate_latest(registry)
        else:
            payload = generate_latest(self.registry)
        return Response(payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, request: Request) -> Response:
        from ._openapi import openapi_document

        return JSONResponse(openapi_document())

    # -- lifespan --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.ready = True
        try:
            yield
        finally:
            self.drain()
            flush = getattr(self.access_writer, "flush", None)
            if flush is not None:
                flush()
            if self.owns_resolver:
                await self.resolver.close(grace=1.0)
            elif self.resolver.shared is not None:
                # The caller closes its resolver later, from another loop: this
                # loop's Redis connections and readers end with it.
                await self.resolver.shared.release_loop()
            _mark_process_dead()


def _mark_process_dead() -> None:
    from ..metrics import multiprocess_mode

    if multiprocess_mode():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _too_large(limit: int) -> Problem:
    return Problem(413, "body_too_large", f"the request body is over the limit of {limit} bytes")


def headers_of(request: Request) -> dict[str, str]:
    """The request's headers as a plain dict (the first of a repeated one), made once:
    Starlette's `Headers.get` scans and decodes the whole list on every look-up."""
    state = request.scope.setdefault("state", {})
    headers: dict[str, str] | None = state.get("predial.headers")
    if headers is None:
        headers = state["predial.headers"] = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in reversed(request.scope["headers"])
        }
    return headers


def _unauthenticated(message: str) -> Problem:
    return Problem(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


def _item_error(index: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"index": index, **error_json(code, message, field)}


def _problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    request.scope.setdefault("state", {})["predial.error"] = exc.code
    return exc.response()


def record(request: Request, results: list[dict[str, Any]]) -> None:
    """Put a request's answers where the access line finds them: its decisions (with
    their ids, so a dialer's record joins the log) and how many items failed."""
    state = request.scope.setdefault("state", {})
    decisions = [item for item in results if "decisionId" in item]
    state["predial.decisions"] = decisions
    state["predial.item_errors"] = len(results) - len(decisions)


def _http_error(request: Request, exc: Exception) -> Response:
    # Starlette's own 404 and 405, in the service's error shape.
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    request.scope.setdefault("state", {})["predial.error"] = code
    return JSONResponse(error_json(code, str(exc.detail)), exc.status_code, exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    _log_failure(request.scope, exc)
    return JSONResponse(error_json("internal_error", "the service failed; retry later"), 500)


def _log_failure(scope: Scope, error: BaseException) -> None:
    """One line per failed request (the handler and the app both see it), naming the
    exception's type only: its text may quote a number or a credential."""
    state = scope.setdefault("state", {})
    if state.get("predial.failure_logged"):
        return
    state["predial.failure_logged"] = True
    log.error("%s %s failed: %s", scope.get("method"), scope.get("path"), type(error).__name__)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("traceback (redacted):\n%s", redacted_traceback(error))


def create_app(
    resolver_or_config_path: Resolver | str | os.PathLike[str] | None = None,
    *,
    settings: ServiceConfig | None = None,
    registry: Any = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The ASGI app of `predial serve`, for servers of your own (gunicorn, granian).

    Given a configuration path (default: `$PREDIAL_CONFIG`, then `./predial.toml`),
    builds the resolver from it, every campaign's adapter included, and takes the
    `[service]` settings from it; a bad configuration raises `ConfigurationError`
    here, before the app serves anything. Given a `Resolver`, serves it with
    `settings`; the caller keeps ownership of the resolver and closes it.
    `registry`: the prometheus-client registry of the app's metrics (a new one by
    default). `extra_routes`: routes of your own (another platform's shim), served,
    logged and counted like the others.
    """
    if isinstance(resolver_or_config_path, Resolver):
        service = PredialService(
            resolver_or_config_path,
            settings or ServiceConfig(),
            owns_resolver=False,
            registry=registry,
        )
    else:
        config = load_config(find_config(resolver_or_config_path))
        settings = settings or config.checked_service()
        resolver = resolver_from_config(config)
        try:
            service = PredialService(resolver, settings, registry=registry)
        except BaseException:
            resolver.close_sync()
            raise
    return build_app(service, extra_routes)


def resolver_from_config(config: PredialConfig) -> Resolver:
    """The resolver of a loaded configuration (strict: a bad campaign fails here)."""
    if not config.campaigns:
        raise ConfigurationError(
            f"{config.path}: no [[campaigns]] are configured; nothing to serve"
        )
    return Resolver.from_loaded_config(config)


class ServiceApp(Starlette):
    """The service's Starlette app, with a short way in for the two resolve routes.

    Starlette sends every request through its error middleware, the access log, its
    exception middleware and the router: on a cache hit that was a third of the
    service's own time. A POST to a resolve route goes straight to the access log
    and the endpoint, which answer errors in the same shapes. Once a user adds a
    middleware of their own, every request takes the ordinary way again.
    """

    def __init__(
        self, *, fast_routes: dict[str, Endpoint], service: PredialService, **options: Any
    ) -> None:
        super().__init__(**options)
        paths = {getattr(route, "path", "") for route in self.routes}
        self._fast = {
            path: AccessLog(endpoint, service=service, routes=paths)
            for path, endpoint in fast_routes.items()
        }
        self._own_middleware = len(self.user_middleware)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            fast = self._fast.get(scope["path"])
            if fast is not None and len(self.user_middleware) == self._own_middleware:
                scope["app"] = self
                await fast(scope, receive, send)
                return
        try:
            await super().__call__(scope, receive, send)
        except Exception as error:
            # Starlette answered it (500, in the error shape) and raises it again for
            # the server to log: uvicorn would print its text, which may quote a
            # number or a credential. Logged here like the short way does.
            _log_failure(scope, error)


Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


def _endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Endpoint:
    """`handler` as a bare ASGI app, answering errors as the exception handlers do."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Problem as problem:
            response = _problem_handler(request, problem)
        except Exception as error:
            response = await _internal_error(request, error)
        await response(scope, receive, send)

    return app


def build_app(service: PredialService, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The Starlette app around `service`; `extra_routes` (a shim of your own) are
    logged and counted like the built-in ones."""
    from ._shims import connect, vapi_tool

    # Coroutine functions, not lambdas: Starlette runs any other callable in a thread
    # and would get an un-awaited coroutine back.
    async def vapi_route(request: Request) -> Response:
        return await vapi_tool(service, request)

    async def connect_route(request: Request) -> Response:
        return await connect(service, request)

    routes = [
        Route("/v1/resolve", service.resolve, methods=["POST"]),
        Route("/v1/resolve/batch", service.resolve_batch, methods=["POST"]),
        Route("/v1/platforms/vapi/tool", vapi_route, methods=["POST"]),
        Route("/v1/platforms/connect", connect_route, methods=["POST"]),
        Route("/livez", service.livez, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_text, methods=["GET"]),
        Route("/openapi.json", service.openapi, methods=["GET"]),
        *extra_routes,
    ]
    paths = {getattr(route, "path", "") for route in routes}
    app = ServiceApp(
        fast_routes={
            "/v1/resolve": _endpoint(service.resolve),
            "/v1/resolve/batch": _endpoint(service.resolve_batch),
        },
        service=service,
        routes=routes,
        middleware=[Middleware(AccessLog, service=service, routes=paths)],
        lifespan=service.lifespan,
        exception_handlers={
            Problem: _problem_handler,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.predial = service
    return app
