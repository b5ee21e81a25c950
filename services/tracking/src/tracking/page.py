"""The customer's tracking page, `GET /track/{order_id}?token=...`: no account, the link's signed
token (oms_platform.links) is the permission. A wrong or missing token and an unknown order answer the
same 404 page, so the page tells nobody whether an order exists."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from oms_platform import links
from oms_platform.errors import NotFound
from oms_platform.openapi import CUSTOMER_LINK
from tracking import stream
from tracking.domain import SCAN_TEXT, STATUS_TEXT
from tracking.handlers import Tracking

TEMPLATES = Path(__file__).parent / "templates"
# The page is one customer's: no shared caches, and the token in its URL goes to no other site.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _when(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%-d %b %Y, %H:%M UTC") if value else ""


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.globals.update(status_text=STATUS_TEXT, scan_text=SCAN_TEXT)
    return env


# The customer's page checks the link's signed token itself; a bad one is the page's own 404 (HTML).
LINK: dict[str, Any] = {"security": [{CUSTOMER_LINK: []}]}


def build_router(service: Tracking, link_secret: str, listener: stream.TimelineListener,
                 heartbeat: float) -> APIRouter:
    router = APIRouter(tags=["customer"])
    env = environment()

    def not_found() -> HTMLResponse:
        return HTMLResponse(env.get_template("not_found.html").render(), 404)

    def signed(order_id: str, token: str | None) -> UUID | None:
        try:
            oid = UUID(order_id)
        except ValueError:
            return None
        return oid if links.valid_tracking_token(link_secret, oid, token) else None

    def loader(request: Request, order_id: UUID) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def load() -> dict[str, Any]:
            async with request.app.state.runtime.pool.acquire() as conn:
                return await service.load(conn, order_id, None)

        return load

    @router.get("/track/{order_id}", response_class=HTMLResponse, openapi_extra=LINK)
    async def track(request: Request, order_id: str, token: str | None = None) -> HTMLResponse:
        oid = signed(order_id, token)
        if oid is None:
            return not_found()
        try:
            view = await loader(request, oid)()
        except NotFound:
            return not_found()
        # Newest first for a person checking on a parcel; the API keeps the contract's oldest first.
        html = env.get_template("track.html").render(order=view, timeline=list(reversed(view["timeline"])))
        return HTMLResponse(html, headers=PRIVATE)

    @router.get("/track/{order_id}/live", response_class=StreamingResponse, openapi_extra=LINK,
                responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
    async def live(request: Request, order_id: str, token: str | None = None) -> Response:
        """The page's live updates: the API's stream, with the page's token as the permission."""
        oid = signed(order_id, token)
        if oid is None:
            return not_found()
        load = loader(request, oid)
        try:
            await load()
        except NotFound:
            return not_found()
        return StreamingResponse(stream.events(listener, oid, load, heartbeat), media_type="text/event-stream",
                                 headers={**PRIVATE, **stream.HEADERS})

    return router
