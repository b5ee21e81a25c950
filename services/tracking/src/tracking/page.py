"""The customer's tracking page, `GET /track/{order_id}?token=...`: no account, the link's signed
token (oms_platform.links) is the permission. A wrong or missing token and an unknown order answer the
same 404 page, so the page tells nobody whether an order exists."""

from datetime import datetime
from pathlib import Path
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from oms_platform import links
from oms_platform.errors import NotFound
from tracking.domain import SCAN_TEXT, STATUS_TEXT
from tracking.handlers import Tracking

TEMPLATES = Path(__file__).parent / "templates"


def _when(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%-d %b %Y, %H:%M UTC") if value else ""


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.globals.update(status_text=STATUS_TEXT, scan_text=SCAN_TEXT)
    return env


def build_router(service: Tracking, link_secret: str) -> APIRouter:
    router = APIRouter(tags=["customer"])
    env = environment()

    def not_found() -> HTMLResponse:
        return HTMLResponse(env.get_template("not_found.html").render(), 404)

    @router.get("/track/{order_id}", response_class=HTMLResponse)
    async def track(request: Request, order_id: str, token: str | None = None) -> HTMLResponse:
        try:
            oid = UUID(order_id)
        except ValueError:
            return not_found()
        if not links.valid_tracking_token(link_secret, oid, token):
            return not_found()
        try:
            async with request.app.state.runtime.pool.acquire() as conn:
                view = await service.load(conn, oid, None)
        except NotFound:
            return not_found()
        # Newest first for a person checking on a parcel; the API keeps the contract's oldest first.
        html = env.get_template("track.html").render(order=view, timeline=list(reversed(view["timeline"])))
        return HTMLResponse(html, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    return router
