"""What every service's OpenAPI states beyond FastAPI's default, built once here (create_app applies it):
its security schemes and which one each operation takes, the contract's error body as one component,
and every status an operation can answer from what the platform really does:

- 422 anywhere (input rules: NUL characters, non-UTF-8 or repeated query parameters, invalid fields);
- 413 and 415 where a body is read (size limit, JSON only);
- 401 where credentials are needed, 403 where a credential can have the wrong scope (a channel key on
  an operator endpoint, or on another channel's order), 429 where a channel key is accepted (the
  per-key rate limit; the operator token is not limited);
- 404 where the path names a resource, 409 on state-changing operations (a state that forbids the
  change, or an Idempotency-Key repeated with another body);
- 503 wherever the database is used (during an outage, with Retry-After).

A dependency says which schemes it checks with @requires (oms_platform.http's operator check and
oms_platform.channel_keys carry it); a route that checks credentials itself states
`openapi_extra={"security": [...]}`."""

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

F = TypeVar("F", bound=Callable[..., Any])

OPERATOR, CHANNEL, CARRIER, CUSTOMER_LINK = "operatorToken", "channelKey", "carrierSignature", "customerLink"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    OPERATOR: {"type": "http", "scheme": "bearer",
               "description": "The operator token (OMS_ADMIN_TOKEN): `Authorization: Bearer <token>`. "
                              "Not rate limited."},
    CHANNEL: {"type": "http", "scheme": "bearer",
              "description": "A sales channel's API key, issued by order capture (POST /v1/admin/api-keys): "
                             "`Authorization: Bearer <key>`. Sees its own channel's orders only; limited per key "
                             "(RATE_LIMIT_PER_KEY_PER_SECOND, 429 with Retry-After)."},
    CARRIER: {"type": "apiKey", "in": "header", "name": "X-Carrier-Signature",
              "description": "`sha256=<hex HMAC-SHA256 of the raw body>` keyed with CARRIER_WEBHOOK_SECRET."},
    CUSTOMER_LINK: {"type": "apiKey", "in": "query", "name": "token",
                    "description": "The signed token of the customer's tracking link (HMAC of the order id with "
                                   "TRACKING_LINK_SECRET), as sent in the order's emails."},
}
ERROR = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message", "fields"],
        "properties": {
            "code": {"type": "string", "examples": ["validation_failed"]},
            "message": {"type": "string"},
            "fields": {"type": "array", "items": {
                "type": "object", "required": ["field", "rule"],
                "properties": {"field": {"type": "string", "description": "the field, header or `body`"},
                               "rule": {"type": "string", "description": "the rule it broke"},
                               "message": {"type": "string"}}}},
        }}},
}
_WHY = {
    401: "missing or invalid credentials", 403: "valid credentials without the right to this operation",
    404: "no such resource", 409: "the resource's state does not allow this, or the Idempotency-Key was used "
    "with another body", 413: "the body is larger than MAX_BODY_BYTES", 415: "the body is not JSON",
    422: "a field, parameter or header breaks a rule (each named in `fields`)",
    429: "this API key's rate limit is exceeded (Retry-After says when to retry)",
    503: "the service's database is unavailable (Retry-After says when to retry)",
}
_NO_DATABASE = {"/healthz", "/metrics", "/asyncapi.json", "/openapi.json"}
_CHANGES = {"post", "put", "patch", "delete"}


def requires(*schemes: str) -> Callable[[F], F]:
    """Marks a FastAPI dependency as checking these credentials (any one of them is enough)."""

    def mark(fn: F) -> F:
        fn.openapi_security = schemes  # type: ignore[attr-defined]
        return fn

    return mark


def _route_security(route: APIRoute) -> tuple[str, ...]:
    found: list[str] = []
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        found += [s for s in getattr(dep.call, "openapi_security", ()) if s not in found]
        stack += dep.dependencies
    return tuple(found)


def _statuses(path: str, method: str, op: dict[str, Any], schemes: tuple[str, ...]) -> set[int]:
    out = {422}
    if "requestBody" in op:
        out |= {413, 415}
    if schemes and CUSTOMER_LINK not in schemes:  # a bad link is the page's 404
        out.add(401)
    if OPERATOR in schemes or CHANNEL in schemes:
        out.add(403)
    if CHANNEL in schemes:
        out.add(429)
    if "{" in path:
        out.add(404)
    if method in _CHANGES:
        out.add(409)
    if path not in _NO_DATABASE:
        out.add(503)
    return out


def enrich(schema: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """Adds the security, error and status statements to `schema`, the OpenAPI of `routes` (the
    service's routers' routes and the app's own: their prefixes are part of their paths)."""
    components = schema.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    # path_format: the path as OpenAPI writes it ({sku:path} is {sku} there)
    by_op = {(r.path_format, m.lower()): r for r in routes if isinstance(r, APIRoute) for m in r.methods or ()}
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            route = by_op.get((path, method))
            schemes = _route_security(route) if route is not None else ()
            if "security" in op:
                schemes = tuple(s for req in op["security"] for s in req)
            elif schemes:
                op["security"] = [{s: []} for s in schemes]
            else:
                op["security"] = []  # open (health, metrics, documents)
            responses = op.setdefault("responses", {})
            for status in sorted(_statuses(path, method, op, schemes)):
                answer = responses.setdefault(str(status), {"description": _WHY[status]})
                html_page = status == 404 and CUSTOMER_LINK in schemes  # the page's own "not found" page
                answer["content"] = {"text/html": {"schema": {"type": "string"}}} if html_page else error_ref
                if status in (429, 503):
                    answer["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                                         "description": "seconds to wait"}}
            for status, answer in responses.items():  # any other error a route documents has the same body
                if status[0] in "45" and "content" not in answer:
                    answer["content"] = error_ref
    return schema
