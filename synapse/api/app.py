"""The HTTP API: FastAPI routes that translate requests to `PolicyService` calls and back.

Nothing here decides anything. What it guarantees is the shape of failure: every error is a JSON
body {"code", "message", "errors"} with a 4xx status (or 503 when the decision log cannot be
written), never a stack trace; see docs/service.md for the endpoints and codes.

The evaluation routes are bare ASGI apps (`_JsonEndpoint`: the body read as a `Reading`, the one
parser `synapse eval` and the sidecar use, orjson out): Starlette's and FastAPI's request/response
objects cost more than the evaluation itself (docs/service.md, "Performance"). They are still in the
OpenAPI document, added from the pydantic models in models.py (which describe the same rules) by
`_openapi`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from axon import strictjson
from synapse.api import models
from synapse.api.constraint import make_router
from synapse.api.media import not_json
from synapse.api.ui import ui_routes
from synapse.decision import Decision, DecisionJson
from synapse.inputs import Reading, ReadingInvalid, read_document
from synapse.service import logs
from synapse.service.auth import SIGNATURE_HEADER, SIGNER_HEADER, Principal
from synapse.service.errors import BodyTooLarge, RateLimited, RequestInvalid, ServiceError
from synapse.service.service import PolicyService

JSON = "application/json"
_UNION_TAGS = {"bool", "int", "float", "str", "constrained-str"}
_SCALAR_MESSAGE = "must be a finite number, a boolean, or a string of at most 1024 characters"
_UNLIMITED_PATHS = {"/healthz", "/readyz", "/metrics"}
_PLAIN_PATHS = {"/v1/evaluate", "/evaluate", "/v1/evaluate/batch"}

Background = Callable[[PolicyService], Awaitable[None]]
_Model = TypeVar("_Model", bound=BaseModel)


def create_app(service: PolicyService, *, preload: list | None = None,
               background: list[Background] | None = None,
               closing: threading.Event | None = None) -> ServiceApp:
    """The ASGI app for `service`. The app's lifespan starts the service (and `background` tasks,
    such as the sidecar's loop) and stops it, sealing the decision log, on shutdown. `closing` is set by
    the server when it begins to shut down: the operator page's live streams then end."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(service.start, preload)
        # What start-up allocated lives as long as the process: keep it out of the collector's scans,
        # which would otherwise walk it at every full collection (a latency spike under load).
        gc.collect()
        gc.freeze()
        tasks = [asyncio.create_task(_follow(service), name="ledger-follower")]
        tasks += [asyncio.create_task(_guarded(job, service), name=getattr(job, "__name__", "job"))
                  for job in background or []]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(service.stop)

    # FastAPIOffline: FastAPI whose /docs and /redoc load their scripts, styles and icon from the package
    # (under /static-offline-docs), never from a CDN: a plant network has no way out (docs/service.md).
    # The Swagger UI validator badge would call validator.swagger.io: off.
    app = FastAPIOffline(title="Sopcos Synapse policy service", version="1", lifespan=lifespan,
                         swagger_ui_parameters={"validatorUrl": None},
                         description="Evaluate Sopcos policies (SIP-001) compiled to signed artifacts "
                                     "(SIP-009), manage those artifacts, and observe the service. Errors are "
                                     '{"code", "message", "errors"}; treat any answer that is not a decision '
                                     "as DENY.")
    app.state.service = service
    _exception_handlers(app)
    plain = _evaluation_routes(app, service)
    _admin_routes(app, service)
    _observability_routes(app, service)
    _constraint_node_route(app, service)
    ui_routes(app, service, closing or threading.Event(), authorize_view)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(GuardMiddleware, service=service)
    return ServiceApp(app, plain, service)


class ServiceApp:
    """What the server runs: a POST to an evaluation route goes through GuardMiddleware straight to its
    bare ASGI endpoint; everything else (the same paths with another method too) to the FastAPI app.
    Starlette's error and exception middleware, FastAPI's exit stack and the router cost each request
    more than deciding it (docs/service.md, "Performance"); GuardMiddleware already answers every error
    of these routes."""

    def __init__(self, api: FastAPI, plain: dict[str, ASGIApp], service: PolicyService) -> None:
        self.api = api
        self._plain = plain
        self._guarded = GuardMiddleware(self._dispatch, service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self._plain:
            await self._guarded(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._plain[scope["path"]](scope, receive, send)


async def _follow(service: PolicyService) -> None:
    interval = service.config.ledger.follow_interval
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(service.follow)
        except ServiceError as exc:
            logs.event("follow_failed", logging.WARNING, code=exc.code, reason=exc.message)
        except Exception as exc:  # keep following: one bad step must not stop revocations being seen
            logs.event("follow_failed", logging.ERROR, reason=f"{type(exc).__name__}: {exc}")


async def _guarded(job: Background, service: PolicyService) -> None:
    try:
        await job(service)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logs.event("background_task_failed", logging.ERROR, task=getattr(job, "__name__", "job"),
                   reason=f"{type(exc).__name__}: {exc}")


# -- authorisation -----------------------------------------------------------------------------------


def _target(scope: Scope) -> str:
    """path[?query] exactly as the client sent it (what a signed request signs)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    query = scope.get("query_string", b"")
    return path + ("?" + query.decode("latin-1") if query else "")


async def authorize(request: Request, service: PolicyService, scope: str) -> Principal:
    """Who sent the request, if allowed `scope`; the body is read only for a signed request."""
    headers = request.headers
    signed = SIGNATURE_HEADER in headers or SIGNER_HEADER in headers
    body = await request.body() if signed else b""
    return service.authorize(headers, request.method, _target(request.scope), body, scope)


def authorize_view(request: Request, service: PolicyService) -> Principal:
    """Who may read the operator page's data: a loopback client, or the evaluate scope."""
    client = request.client.host if request.client else None
    return service.authorize_view(request.headers, request.method, _target(request.scope), client)


# -- evaluation ------------------------------------------------------------------------------------


def _read(parse: Callable[[bytes], Any], body: bytes) -> Any:
    """`parse(body)` (synapse.inputs.Reading's rules), its refusal as a 400 (not strict JSON) or a 422."""
    try:
        return parse(body)
    except ReadingInvalid as exc:
        if exc.not_json:
            raise _not_json(exc.why) from None
        raise RequestInvalid("the request body is not a valid reading",
                             errors=[{"pointer": exc.pointer, "message": exc.why}]) from None


def _batch(body: bytes) -> tuple[str | None, list[Reading]]:
    """{"policy": NAME, "inputs": [reading, ...]}: the batch's default policy and its readings."""
    doc = read_document(body)
    if type(doc) is not dict:
        raise ReadingInvalid("", "must be a JSON object with inputs")
    extra = doc.keys() - {"policy", "inputs"}
    if extra:
        raise ReadingInvalid("/" + sorted(extra)[0], "is not a member of a batch (policy, inputs)")
    inputs = doc.get("inputs")
    if type(inputs) is not list or not inputs:
        raise ReadingInvalid("/inputs", "must be a non-empty array of readings")
    default = Reading.from_json({"telemetry": {}, "policy": doc["policy"]}) if "policy" in doc else None
    return (None if default is None else default.policy,
            [Reading.from_json(item, pointer=f"/inputs/{i}") for i, item in enumerate(inputs)])


def _model(model: type[_Model], content_type: str | None, body: bytes) -> _Model:
    """A JSON body read by axon.strictjson (not FastAPI's lenient reader) and validated as `model`."""
    _check_media_type(content_type)
    try:
        doc = strictjson.loads(body)
    except strictjson.JsonError as exc:
        raise _not_json(str(exc)) from None
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise RequestInvalid(f"the request body does not match {model.__name__}",
                             errors=_error_details(errors)) from None


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads its body itself (`_model`)."""
    return {"requestBody": {"required": True, "content": {JSON: {"schema": _ref(model.__name__)}}}}


def _not_json(reason: str) -> RequestInvalid:
    return RequestInvalid(f"the request body is not valid JSON: {reason}", code="SYNAPSE-SVC-JSON-INVALID",
                          status=400, errors=[{"pointer": "", "message": reason}])


def _error_details(errors: list[dict[str, Any]], prefix: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """pydantic errors as JSON Pointers + messages; a union's per-member failures become one message."""
    out: dict[str, str] = {}
    for err in errors:
        loc = [str(p) for p in err["loc"]]
        if loc[: len(prefix)] == list(prefix):
            loc = loc[len(prefix):]
        union = False
        while loc and loc[-1] in _UNION_TAGS:
            loc.pop()
            union = True
        pointer = "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in loc)
        out.setdefault(pointer, _SCALAR_MESSAGE if union else err["msg"])
    return [{"pointer": p, "message": m} for p, m in out.items()]


def _check_media_type(content_type: str | None) -> None:
    """The body must be declared JSON (synapse.api.media's rule), else a 415."""
    refused = not_json(content_type)
    if refused is not None:
        raise ServiceError(refused, code="SYNAPSE-SVC-MEDIA-TYPE", status=415)


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON)


class _JsonEndpoint:
    """An evaluation route as a bare ASGI app: headers decoded once, the body read straight from the
    server, orjson out. Starlette's Request/Response objects cost more than the evaluation itself;
    errors are raised as ServiceError and answered by GuardMiddleware like everywhere else."""

    def __init__(self, service: PolicyService, handle: Callable[[bytes, bool], Any]) -> None:
        self.service, self.handle = service, handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        _check_media_type(headers.get("content-type"))
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        self.service.authorize(headers, scope["method"], _target(scope), body, "evaluate")
        payload = orjson.dumps(self.handle(body, _explain(scope.get("query_string", b""))))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _explain(query: bytes) -> bool:
    """The evaluation routes' one query parameter: ?explain=true adds each decision's explanation."""
    if not query:
        return False
    values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("explain", ["false"])
    if len(values) != 1 or values[0] not in ("true", "false"):
        raise RequestInvalid("the query parameter explain must be true or false, once",
                             errors=[{"pointer": "", "message": f"explain={values!r}"}])
    return values[0] == "true"


def _evaluation_routes(app: FastAPI, service: PolicyService) -> dict[str, ASGIApp]:
    """Adds the evaluation routes to `app` (for the OpenAPI document and other methods); returns their
    endpoints by path, for ServiceApp."""
    parse = partial(Reading.parse, need_policy=True)

    def evaluate(body: bytes, explain: bool) -> DecisionJson:
        reading = _read(parse, body)
        return service.evaluate(reading.policy, reading.telemetry, reading.context, explain=explain).to_dict()

    def evaluate_batch(body: bytes, explain: bool) -> dict[str, Any]:
        results = service.evaluate_batch(*_read(_batch, body), explain=explain)
        return {"results": [r.to_dict() if isinstance(r, Decision) else {"index": i, "error": r.to_dict()}
                            for i, r in enumerate(results)]}

    one = _JsonEndpoint(service, evaluate)
    batch = _JsonEndpoint(service, evaluate_batch)
    # Plain routes first, so they are matched before anything FastAPI adds. ServiceApp sends a POST to
    # them before the app; the app still lists them (OpenAPI) and answers their other methods.
    routes = (("/v1/evaluate", one, "evaluate"), ("/evaluate", one, "evaluate_unversioned"),
              ("/v1/evaluate/batch", batch, "evaluate_batch"))
    app.router.routes[:0] = [Route(path, endpoint, methods=["POST"], name=name)
                             for path, endpoint, name in routes]

    if service.config.server.noop_endpoint:
        @app.post("/v1/noop", response_model=models.Noop, tags=["benchmark"],
                  summary="Validate an evaluation request and do nothing (a load-test baseline)")
        async def noop(req: models.EvaluateRequest) -> models.Noop:
            # async like the evaluate route: a sync handler would pay FastAPI's thread pool and flatter us
            return models.Noop(ok=True)

    return {path: endpoint for path, endpoint, _ in routes}


# -- administration ----------------------------------------------------------------------------------

_ERRORS = {status: {"model": models.ErrorBody} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429)}
_SOP_BODY = {"requestBody": {"required": True, "description": "A signed .sop artifact, as written by scc",
                             "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}},
                                         JSON: {"schema": {"type": "object"}}}}}
_ADMIN = [{"bearerAuth": []}, {"signedRequest": []}]


def _admin_routes(app: FastAPI, service: PolicyService) -> None:
    @app.put("/v1/artifacts", response_model=models.UploadResponse, status_code=201, responses=_ERRORS,
             openapi_extra={**_SOP_BODY, "security": _ADMIN}, tags=["artifacts"],
             summary="Upload a .sop artifact; Axon verifies it before it is stored or served")
    async def upload(request: Request, response: Response) -> dict[str, Any]:
        await authorize(request, service, "admin")
        artifact, created = await asyncio.to_thread(service.upload, await request.body())
        response.status_code = 201 if created else 200
        return {**artifact, "created": created}

    @app.get("/v1/artifacts", response_model=models.ArtifactList, responses=_ERRORS, tags=["artifacts"],
             summary="Every stored artifact with its state")
    async def list_artifacts(request: Request) -> dict[str, Any]:
        await authorize(request, service, "evaluate")
        return {"artifacts": service.artifacts()}

    @app.get("/v1/artifacts/{urn}", response_model=models.ArtifactInfo, responses=_ERRORS,
             tags=["artifacts"], summary="One stored artifact")
    async def show_artifact(urn: str, request: Request) -> dict[str, Any]:
        await authorize(request, service, "evaluate")
        return service.artifact(urn)

    @app.post("/v1/artifacts/{urn}/retire", response_model=models.ArtifactInfo, responses=_ERRORS,
              openapi_extra={"security": _ADMIN}, tags=["artifacts"],
              summary="Stop serving an artifact (it stays in the store, marked retired)")
    async def retire(urn: str, request: Request) -> dict[str, Any]:
        principal = await authorize(request, service, "admin")
        return await asyncio.to_thread(partial(service.retire, urn, by=principal.name))

    @app.get("/v1/policies", response_model=models.PolicyList, responses=_ERRORS, tags=["policies"],
             summary="Every policy, its active artifact, pin and floor")
    async def list_policies(request: Request) -> dict[str, Any]:
        await authorize(request, service, "evaluate")
        return {"policies": service.policies()}

    @app.post("/v1/policies/{name}/rollback", response_model=models.ArtifactRef, responses=_ERRORS,
              openapi_extra={"security": _ADMIN, **_json_body(models.RollbackRequest)}, tags=["policies"],
              summary="Serve an older artifact of the policy (an explicit, authorised rollback)")
    async def rollback(name: str, request: Request) -> dict[str, Any]:
        principal = await authorize(request, service, "admin")
        body = _model(models.RollbackRequest, request.headers.get("content-type"), await request.body())
        return await asyncio.to_thread(partial(service.rollback, name, body.urn, by=principal.name))

    @app.delete("/v1/policies/{name}/pin", status_code=204, responses=_ERRORS,
                openapi_extra={"security": _ADMIN}, tags=["policies"],
                summary="Remove a rollback pin: the newest version at or above the floor serves again")
    async def unpin(name: str, request: Request) -> Response:
        principal = await authorize(request, service, "admin")
        await asyncio.to_thread(partial(service.unpin, name, by=principal.name))
        return Response(status_code=204)


# -- observability -----------------------------------------------------------------------------------


def _observability_routes(app: FastAPI, service: PolicyService) -> None:
    @app.get("/healthz", response_model=models.Health, tags=["observability"],
             summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=models.Readiness, tags=["observability"],
             responses={503: {"model": models.Readiness}},
             summary="Loaded and serving; 'degraded' when serving the last known good set without the "
                     "ledger")
    async def readyz() -> Response:
        ready, detail = service.readiness()
        return _json(detail, 200 if ready else 503)

    @app.get("/metrics", tags=["observability"], summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        exposition, content_type = service.render_metrics()
        return Response(exposition, media_type=content_type)


# -- the constraint-node protocol --------------------------------------------------------------------


def _constraint_node_route(app: FastAPI, service: PolicyService) -> None:
    """POST /v1/constraint-node/provision (synapse/api/constraint.py): the node signs a transaction
    carrying an attestation of its latest decision-log head. Administrative: the node key signs it."""
    try:
        respond = service.provisioner()
    except ServiceError:  # without the ledger's chain id the route would sign replayable transactions
        logs.event("constraint_node_not_mounted", logging.WARNING,
                   reason="the ledger (for its chain id) could not be read at start")
        return

    async def admin(request: Request) -> None:
        await authorize(request, service, "admin")

    app.include_router(make_router(respond, dependencies=[Depends(admin)]), tags=["constraint-node"])


# -- errors ------------------------------------------------------------------------------------------

_HTTP_CODES = {404: "SYNAPSE-SVC-NOT-FOUND", 405: "SYNAPSE-SVC-METHOD-NOT-ALLOWED"}


def _error_response(exc: ServiceError) -> Response:
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="synapse"'
    return Response(orjson.dumps(exc.to_dict()), status_code=exc.status, media_type=JSON, headers=headers)


def _exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error_response(RequestInvalid("the request body is not valid JSON",
                                                  code="SYNAPSE-SVC-JSON-INVALID", status=400))
        where = {e["loc"][0] for e in errors if e.get("loc")}
        prefix = ("body",) if where == {"body"} else ()
        return _error_response(RequestInvalid("the request does not match the API",
                                              errors=_error_details(errors, prefix)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, f"SYNAPSE-SVC-HTTP-{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return _error_response(ServiceError(message, code=code, status=exc.status_code))


# -- the guard: limits, errors of last resort, metrics, access log -----------------------------------


class GuardMiddleware:
    """Outermost layer of every HTTP request: rate limit, body size limit, a structured 500 instead
    of a traceback should anything escape, request metrics and the access log."""

    def __init__(self, app: ASGIApp, service: PolicyService) -> None:
        self.app = app
        self.service = service
        limits = service.config.limits
        self.max_body = limits.max_body_bytes
        self.max_artifact = limits.max_artifact_bytes
        self.access_log = service.config.server.access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        status = [0]

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if path not in _UNLIMITED_PATHS:
                client = scope.get("client")
                self.service.admit(client[0] if client else "unknown")
            limit = self.max_artifact if path == "/v1/artifacts" else self.max_body
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                raise BodyTooLarge(f"the body is {declared} bytes; the limit here is {limit}")
            await self.app(scope, _limited(receive, limit), send_tracked)
        except ServiceError as exc:
            if status[0]:  # the answer has begun; nothing more can be said to this client
                logs.event("error_after_response_start", logging.WARNING, path=path, code=exc.code)
            else:
                await _error_response(exc)(scope, receive, send_tracked)
        except Exception as exc:  # the last resort: a JSON 500, the type in the log, no traceback anywhere
            logs.event("internal_error", logging.ERROR, path=path, error=f"{type(exc).__name__}: {exc}")
            if not status[0]:
                await _error_response(ServiceError("internal error; the service log has the details",
                                                   code="SYNAPSE-SVC-INTERNAL", status=500))(
                    scope, receive, send_tracked)
        finally:
            route = scope.get("route")  # FastAPI sets it for its own routes only
            label = route.path if route is not None else path if path in _PLAIN_PATHS else "unmatched"
            self.service.count_request(label, status[0])
            if self.access_log or status[0] >= 400:
                logs.event("request", logging.INFO, method=scope["method"], path=label,
                           status=status[0], ms=round((time.perf_counter() - start) * 1000, 3),
                           client=(scope.get("client") or ("?",))[0])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise ServiceError("Content-Length is not a number", code="SYNAPSE-SVC-REQUEST-INVALID",
                                   status=400) from None
    return None


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def wrapped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(f"the body exceeds the limit of {limit} bytes")
        return message

    return wrapped


# -- OpenAPI -----------------------------------------------------------------------------------------


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    _, defs = models_json_schema(
        [(models.EvaluateRequest, "validation"), (models.EvaluateBatchRequest, "validation"),
         (models.BatchResponse, "serialization"),
         (models.ErrorBody, "serialization"), (models.RollbackRequest, "validation")],
        ref_template="#/components/schemas/{model}")
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in defs.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer",
                       "description": "A token whose SHA-256 is configured with the scope needed"},
        "signedRequest": {"type": "apiKey", "in": "header", "name": "X-Sopcos-Signature",
                          "description": "With X-Sopcos-Signer, X-Sopcos-Node and X-Sopcos-Timestamp: "
                                         "a request for this node signed by a ledger key of "
                                         "sufficient authority, accepted once (docs/service.md)"},
    }
    errors = {str(s): {"description": "Error", "content": {JSON: {"schema": _ref("ErrorBody")}}}
              for s in (400, 401, 403, 404, 409, 413, 415, 422, 429)}

    explain = {"name": "explain", "in": "query", "required": False,
               "description": "true: each decision carries its explanation, read from the trace the deciding "
                              "module wrote (docs/abi.md, Trace)",
               "schema": {"type": "boolean", "default": False}}

    def operation(summary: str, request: str, response: str, op_id: str) -> dict[str, Any]:
        return {"post": {
            "summary": summary, "operationId": op_id, "tags": ["evaluation"],
            "security": [{}, {"bearerAuth": []}], "parameters": [explain],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref(request)}}},
            "responses": {"200": {"description": "Decided", "content": {JSON: {"schema": _ref(response)}}},
                          **errors}}}

    doc["paths"]["/v1/evaluate"] = operation("Evaluate one input against a policy", "EvaluateRequest",
                                             "DecisionJson", "evaluate")
    doc["paths"]["/evaluate"] = operation("Same as /v1/evaluate", "EvaluateRequest", "DecisionJson",
                                          "evaluate_unversioned")
    doc["paths"]["/v1/evaluate/batch"] = operation("Evaluate a list of inputs in order",
                                                   "EvaluateBatchRequest", "BatchResponse", "evaluate_batch")
    app.openapi_schema = doc
    return doc


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
