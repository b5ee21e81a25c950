"""Hot routes (oms_platform.hot_routes): answered without FastAPI's routing, with the same answers and
errors as the same endpoint routed by FastAPI. Order capture's POST /v1/orders is one: the service
tests check its answers on the real service."""

import logging

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel

from oms_platform import metrics
from oms_platform.hot_routes import HotRoutesMiddleware, hot_route, hot_routes
from oms_platform.http import ApiError, ORJSONResponse, PlatformMiddleware, install_error_handlers, parse_json_body


class Thing(BaseModel):
    name: str
    count: int


async def make_thing(request: Request) -> ORJSONResponse:
    thing = parse_json_body(Thing, await request.body())
    if thing.name == "forbidden":
        raise ApiError(403, "forbidden", "not this one", [{"field": "name", "rule": "allowed", "message": "no"}])
    if thing.name == "bug":
        raise RuntimeError("a bug")
    # FastAPI's routing puts the matched endpoint into the scope; the hot path does not route.
    return ORJSONResponse({"name": thing.name, "routed": "endpoint" in request.scope}, 201)


async def make_thing_routed(request: Request) -> ORJSONResponse:
    """The same endpoint, not marked: routed by FastAPI (the mark is on the function)."""
    return await make_thing(request)


def build_app() -> FastAPI:
    """The order of create_app: error handlers, hot routes innermost, PlatformMiddleware outermost."""
    router = APIRouter()
    router.post("/hot", status_code=201)(hot_route(make_thing))
    router.post("/routed", status_code=201)(make_thing_routed)
    app = FastAPI()
    install_error_handlers(app)
    hot = hot_routes(())
    app.add_middleware(HotRoutesMiddleware, routes=hot, exception_handlers=app.exception_handlers)
    app.add_middleware(PlatformMiddleware, max_body_bytes=4096)
    app.include_router(router)
    hot.update(hot_routes(router.routes))
    return app


async def post(app: FastAPI, path: str, body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post(path, content=body, headers={"content-type": "application/json"})


async def test_a_hot_route_is_answered_without_fastapi_routing() -> None:
    app = build_app()
    hot = await post(app, "/hot", b'{"name": "a", "count": 1}')
    routed = await post(app, "/routed", b'{"name": "a", "count": 1}')
    assert (hot.status_code, hot.json()) == (201, {"name": "a", "routed": False})
    assert (routed.status_code, routed.json()) == (201, {"name": "a", "routed": True})


@pytest.mark.parametrize(("body", "status"), [
    (b'{"name": "a"}', 422),  # pydantic's error, located under the body's field
    (b'{"name": "forbidden", "count": 1}', 403),  # an ApiError with its fields
    (b'{"name": "bug", "count": 1}', 500),  # a bug: the error shape, not a traceback
])
async def test_errors_answer_exactly_as_through_fastapi(body: bytes, status: int, caplog) -> None:
    app = build_app()
    with caplog.at_level(logging.ERROR):
        hot = await post(app, "/hot", body)
        routed = await post(app, "/routed", body)
    assert hot.status_code == routed.status_code == status
    assert hot.json() == routed.json()
    assert hot.json()["error"]["code"]
    if status == 500:  # logged once per request, like any unhandled error
        assert len([r for r in caplog.records if r.exc_info]) == 2


async def test_metrics_and_spans_name_the_hot_route() -> None:
    app = build_app()
    counter = metrics.HTTP_REQUESTS.labels("POST", "/hot", "201")
    before = counter._value.get()
    await post(app, "/hot", b'{"name": "a", "count": 1}')
    assert counter._value.get() == before + 1


async def test_other_methods_and_paths_go_on_to_fastapi() -> None:
    app = build_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/hot")).status_code == 405
        assert (await client.post("/hot/", content=b"{}")).status_code in (307, 404)


def test_a_hot_route_with_path_parameters_is_refused() -> None:
    router = APIRouter()
    router.post("/things/{thing_id}")(hot_route(make_thing))
    with pytest.raises(ValueError, match="path parameters"):
        hot_routes(router.routes)
