"""The HTTP side every service shares: the error format of CONTRACT.md (and the one place domain errors
of oms_platform.errors become it), the body size limit, request metrics and traces, operator
authentication, and the `limit` query parameter of lists (their paging is oms_platform.pagination)."""

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from oms_platform import metrics, telemetry
from oms_platform.errors import Conflict, DomainError, NotFound, RuleBroken, RuleError  # noqa: F401
from oms_platform.openapi import OPERATOR, requires
from oms_platform.outages import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS, DatabaseOutage

# DEFAULT_LIMIT and the cursor functions stay importable from here; their home is oms_platform.pagination.
from oms_platform.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor  # noqa: F401

log = logging.getLogger(__name__)


class ORJSONResponse(JSONResponse):
    """JSON via orjson (fast, and serialises UUIDs, datetimes and Decimals-as-strings natively)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


class ApiError(Exception):
    """An error of the HTTP edge itself (credentials, headers), answered as {"error": {"code", "message",
    "fields"}}. Use cases raise oms_platform.errors instead."""

    def __init__(self, status: int, code: str, message: str, fields: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields, self.headers = status, code, message, fields, headers


def field_error(field: str, rule: str, message: str) -> ApiError:
    return ApiError(422, "validation_failed", message, [{"field": field, "rule": rule, "message": message}])


def error_body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or []}}


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        where = parts.pop(0)
        if where == "header" and parts:
            return str(parts[0])
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and p.startswith(("function-after", "function-before", "function-wrap")):
            continue
        else:
            out += f".{p}" if out else str(p)
    return out or "body"


def _validation_fields(exc: RequestValidationError) -> list[dict[str, str]]:
    fields = []
    for err in exc.errors():
        msg = err.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        rule = err.get("type", "invalid")
        ctx = err.get("ctx") or {}
        if rule == "value_error" and isinstance(ctx.get("error"), ValueError):
            rule = getattr(ctx["error"], "rule", rule)
        # A JSON syntax error's loc is ("body", <character offset>): it is about the body as a whole.
        field = "body" if rule == "json_invalid" else _loc_to_field(tuple(err.get("loc", ())))
        fields.append({"field": field, "rule": rule, "message": msg})
    return fields


# The status of each kind of domain error (the most specific class listed first wins).
DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = ((NotFound, 404), (Conflict, 409), (RuleBroken, 422))


def domain_status(exc: DomainError) -> int:
    return next((status for kind, status in DOMAIN_STATUS if isinstance(exc, kind)), 400)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the request's path takes (Starlette's 405 names only the first route
    matched, and FastAPI makes one route per method). Asked of the routes method by method: included
    routers only answer whether they match a whole request."""
    routes = request.app.router.routes
    return [m for m in _METHODS
            if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes)]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> ORJSONResponse:
        fields = [v.as_dict() for v in exc.fields]
        return ORJSONResponse(error_body(exc.code, exc.message, fields), domain_status(exc))

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> ORJSONResponse:
        return ORJSONResponse(error_body(exc.code, exc.message, exc.fields), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        fields = _validation_fields(exc)
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        return ORJSONResponse(error_body("validation_failed", f"invalid request: {summary}", fields), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                409: "conflict", 413: "payload_too_large"}.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return ORJSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=headers)

    outage = app.state.database_outage = DatabaseOutage()

    async def _unavailable(_: Request, exc: Exception) -> ORJSONResponse:
        outage.failed(exc)
        return ORJSONResponse(
            error_body("unavailable", "the service's database is unavailable; retry shortly"), 503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    # Registered per class (not under Exception), so they are answered inside the app, without the
    # server logging a traceback for every request of an outage.
    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> ORJSONResponse:
        log.exception("unhandled error")
        return ORJSONResponse(error_body("internal", "internal error"), 500)


class PlatformMiddleware:
    """Pure ASGI middleware (cheap on the hot path): a server span per request continuing the caller's
    trace, request metrics, and the body size limit (413 before the body is read into memory)."""

    def __init__(self, app: Any, *, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.tracer = telemetry.tracer("oms.http")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        trace_headers: dict[str, str] = {}
        for name, value in scope["headers"]:  # read only the few headers needed here
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_body_bytes:
                    return await self._too_large(send)
            elif name in (b"traceparent", b"tracestate"):
                trace_headers[name.decode()] = value.decode("latin-1")
        received = 0
        status = 500
        started = False
        refused = False

        async def limited_receive() -> dict:
            # A body without Content-Length (chunked) is counted as it arrives: past the limit the
            # client gets its 413 at once and the app sees a disconnect (its own answer is dropped).
            nonlocal received, status, started, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    if not started:
                        started, status = True, 413
                        await self._too_large(send)
                    # Read (and drop) the rest the client is sending, within reason, so that closing
                    # the connection does not reset it before it has read the 413.
                    drained = 0
                    while message.get("more_body") and drained < 8 * self.max_body_bytes:
                        message = await receive()
                        drained += len(message.get("body", b""))
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal status, started
            if refused:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                # Every answer names its trace (CONTRACT.md: capture's is the order's trace).
                message["headers"] = [*message.get("headers", ()), (b"traceparent", traceparent)]
            await send(message)

        t0 = time.perf_counter()
        ctx = telemetry.extract_context(trace_headers) if trace_headers else None
        with self.tracer.start_as_current_span(
            scope["method"], context=ctx, kind=trace.SpanKind.SERVER, record_exception=False
        ) as span:
            traceparent = telemetry.traceparent(span).encode()
            try:
                await self.app(scope, limited_receive, tracked_send)
            except Exception:
                # After a 413 the app only complains that the client went away. Anything else is a
                # bug: logged here once and answered 500, not raised on to the server (which would
                # log it a second time).
                if not refused:
                    log.exception("unhandled error in %s %s", scope["method"], scope["path"])
                    if not started:
                        status = 500
                        await send_json(send, 500, error_body("internal", "internal error"))
            route_path = getattr(scope.get("route"), "path", "unmatched")
            if span.is_recording():
                span.update_name(f"{scope['method']} {route_path}")
                span.set_attribute("http.request.method", scope["method"])
                span.set_attribute("http.route", route_path)
                span.set_attribute("http.response.status_code", status)
                order_id = (scope.get("path_params") or {}).get("order_id")
                if order_id is not None:
                    span.set_attribute(telemetry.ORDER_ID, str(order_id))
        if status < 500 and (outage := getattr(scope.get("app"), "state", None)) is not None:
            outage = getattr(outage, "database_outage", None)
            if outage is not None and outage.since is not None:
                outage.succeeded()
        metrics.child(metrics.HTTP_REQUESTS, scope["method"], route_path, str(status)).inc()
        metrics.child(metrics.HTTP_LATENCY, scope["method"], route_path).observe(time.perf_counter() - t0)

    async def _too_large(self, send: Any) -> None:
        await send_json(send, 413, error_body(
            "payload_too_large", f"request body exceeds {self.max_body_bytes} bytes",
            [{"field": "body", "rule": "max_bytes", "message": f"at most {self.max_body_bytes} bytes"}],
        ))


async def send_json(send: Any, status: int, content: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answers from a pure ASGI middleware (before or instead of the app)."""
    body = orjson.dumps(content)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def parse_json_body(model: type[BaseModel], raw: bytes) -> Any:
    """Validates a raw JSON body with pydantic's Rust parser in one pass (the hot-path alternative to
    a FastAPI body parameter); errors answer 422 exactly like FastAPI's, located under `body`."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


class BodyOpenAPI(dict):
    """`openapi_extra` of a route whose body is read with parse_json_body; remembers the model, so
    create_app adds its schema to the OpenAPI components (body_models)."""

    model: type[BaseModel]


def json_body_openapi(model: type[BaseModel], headers: dict[str, dict[str, Any]] | None = None,
                      security: Sequence[str] = ()) -> dict[str, Any]:
    """`openapi_extra` documenting a body read with parse_json_body (and required headers, and the
    security schemes of oms_platform.openapi the route checks itself, any one of them)."""
    extra = BodyOpenAPI({
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}},
        "parameters": [{"name": name, "in": "header", "required": True, "schema": schema}
                       for name, schema in (headers or {}).items()],
    })
    if security:
        extra["security"] = [{scheme: []} for scheme in security]
    extra.model = model
    return extra


def answer_example(example: Any, status: int = 200,
                   description: str = "Successful Response") -> dict[int | str, dict[str, Any]]:
    """`responses=` showing a real answer of the route in the interactive docs (/docs)."""
    return {status: {"description": description, "content": {"application/json": {"example": example}}}}


def body_models(routes: Any) -> list[type[BaseModel]]:
    """The models of the routes documented with json_body_openapi."""
    return [r.openapi_extra.model for r in routes if isinstance(getattr(r, "openapi_extra", None), BodyOpenAPI)]


def add_openapi_models(app: FastAPI, *models: type[BaseModel]) -> None:
    """Adds models referenced only through json_body_openapi to the OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in definition.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components.setdefault(model.__name__, definition)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def unauthorized(message: str = "missing or invalid credentials") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def operator_dependency(admin_token: str | None) -> Callable[[Request], Awaitable[str]]:
    """Operators present OMS_ADMIN_TOKEN as a bearer token; without it set, every call is refused.
    Missing or wrong credentials are a 401; a valid channel key is a 403 (valid credentials, wrong
    scope), told by the app's `channel_key_lookup` (token -> channel or None; create_app sets it to
    the runtime's oms_platform.channel_keys copy)."""

    @requires(OPERATOR)
    async def require_operator(request: Request) -> str:
        token = bearer_token(request)
        if admin_token and token is not None and hmac.compare_digest(token.encode(), admin_token.encode()):
            return "operator"
        lookup = getattr(request.app.state, "channel_key_lookup", None)
        if token is not None and lookup is not None and await lookup(token) is not None:
            raise ApiError(403, "forbidden", "a channel API key cannot call operator endpoints")
        raise unauthorized("operator token required")

    return require_operator


# A list's `limit` (CONTRACT.md: lists take `limit` and `cursor`); write `limit: Limit = DEFAULT_LIMIT`.
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
