"""Hot routes: an endpoint called straight from the ASGI stack, without FastAPI's routing.

FastAPI matches every route in turn, solves the endpoint's dependencies, opens an AsyncExitStack and
saves and restores its scope keys for each request: at order capture's rate that was about a third
of the request's CPU (README, Benchmarks). A route marked with `hot_route` must take only the
`Request` and return a `Response`; it stays an ordinary FastAPI route (the same function, so the
OpenAPI document and the error answers are the same), and HotRoutesMiddleware calls it directly when
the method and the exact path match. Its exceptions go to the app's exception handlers, as they
would from the router.
"""

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from starlette._exception_handler import _lookup_exception_handler
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

Endpoint = TypeVar("Endpoint", bound=Callable[[Request], Awaitable[Response]])
_MARK = "__oms_hot_route__"


def hot_route(endpoint: Endpoint) -> Endpoint:
    """Marks a `(request) -> Response` endpoint for HotRoutesMiddleware (put it under the router's
    decorator). Its path must have no parameters."""
    setattr(endpoint, _MARK, True)
    return endpoint


def hot_routes(routes: Iterable[Any]) -> dict[tuple[str, str], APIRoute]:
    """{(method, path): route} of the marked routes."""
    found = {}
    for route in routes:
        if isinstance(route, APIRoute) and getattr(route.endpoint, _MARK, False):
            if route.param_convertors:
                raise ValueError(f"hot route {route.path} has path parameters")
            for method in route.methods or ():
                found[(method, route.path)] = route
    return found


class HotRoutesMiddleware:
    """Pure ASGI, the innermost of the platform's middleware: a request for a hot route is answered
    here; every other request goes on to FastAPI. `routes` and `exception_handlers` are the app's
    own dicts, read per request (create_app fills the routes after adding the middleware)."""

    def __init__(self, app: Any, *, routes: dict[tuple[str, str], APIRoute], exception_handlers: dict[Any, Any]):
        self.app, self.routes, self.exception_handlers = app, routes, exception_handlers

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        route = self.routes.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        if route is None:
            return await self.app(scope, receive, send)
        scope["route"] = route  # PlatformMiddleware names the span and the metrics after it
        scope.setdefault("path_params", {})
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = None
            if isinstance(exc, HTTPException):
                handler = self.exception_handlers.get(exc.status_code)
            handler = handler or _lookup_exception_handler(self.exception_handlers, exc)
            if handler is None:
                raise
            response = handler(request, exc)  # type: ignore[arg-type]  # an HTTP handler, never a WebSocket one
            if inspect.isawaitable(response):
                response = await response
            exc.__traceback__ = None  # as Starlette does: a reused exception would keep every traceback
        await response(scope, receive, send)
