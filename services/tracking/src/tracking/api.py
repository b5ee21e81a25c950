"""HTTP API of tracking (CONTRACT.md, Tracking): the carriers' signed webhook, an order's tracking and
its live stream for the order's channel or an operator."""

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from oms_platform.channel_keys import Caller
from oms_platform.http import ORJSONResponse, json_body_openapi, parse_json_body, unauthorized
from oms_platform.openapi import CARRIER
from tracking import stream
from tracking.handlers import CarrierEvent, Tracking

# The head of the interactive docs (/docs): what the API is for and how to authenticate.
API_DESCRIPTION = """\
Each order's timeline from every service's events and the carriers' scans; the customer's tracking page.

**Authentication**

- `/v1/orders/{order_id}/tracking` (and `/stream`): a **channel API key**: `Authorization: Bearer oms_...`, issued
  by an operator with order capture's `POST /v1/admin/api-keys` (shown once); it sees only its own channel's orders
  (another channel's answer 404), or the **operator token**: `Authorization: Bearer <OMS_ADMIN_TOKEN>` (the token
  the service was started with; `make up` keeps a dev one in `.local/dev/admin-token` when none is given).
- `POST /v1/carrier-events`: no bearer token; the carrier signs the raw body: `X-Carrier-Signature: sha256=<hex
  HMAC-SHA256 of the body with CARRIER_WEBHOOK_SECRET>` (`make up` keeps a dev secret in
  `.local/dev/carrier-webhook-secret`). A bad or missing signature answers 401.
- `/track/{order_id}?token=...`: the customer's page, no account: the signed token of the `tracking_url` (also in
  the emails).

No or unknown credentials answer 401 (`unauthorized`); a channel key on an operator endpoint answers 403.
"""

SIGNATURE_HEADER = "X-Carrier-Signature"


def signature_ok(secret: str | None, body: bytes, header: str | None) -> bool:
    """`sha256=<hex HMAC-SHA256 of the raw body>`, compared in constant time. No secret configured:
    nothing is accepted (an unset secret must not mean "unsigned is fine")."""
    if not secret or not header:
        return False
    scheme, _, given = header.strip().partition("=")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return scheme.lower() == "sha256" and hmac.compare_digest(expected, given.strip().lower())


def build_router(service: Tracking, *, webhook_secret: str | None, caller: Callable[..., Awaitable[Caller]],
                 listener: stream.TimelineListener, heartbeat: float) -> APIRouter:
    router = APIRouter(tags=["tracking"])

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.post("/v1/carrier-events", openapi_extra=json_body_openapi(
        CarrierEvent, {SIGNATURE_HEADER: {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}}, security=[CARRIER]),
        responses={201: {"description": "scan recorded"}, 200: {"description": "this event_id was recorded before"},
                   401: {"description": "bad or missing signature"}, 404: {"description": "unknown tracking number"}})
    async def carrier_event(request: Request) -> ORJSONResponse:
        body = await request.body()
        if not signature_ok(webhook_secret, body, request.headers.get(SIGNATURE_HEADER)):
            raise unauthorized(f"{SIGNATURE_HEADER} must be sha256=<hex HMAC-SHA256 of the body>")
        scan = parse_json_body(CarrierEvent, body)
        result = await service.record_scan(pool(request), scan)
        content = {"status": result.outcome, "event_id": scan.event_id, "order_id": str(result.order_id),
                   "shipment_id": str(result.shipment_id), "shipment_status": result.shipment_status}
        return ORJSONResponse(content, 201 if result.outcome == "recorded" else 200)

    @router.get("/v1/orders/{order_id}/tracking")
    async def tracking(request: Request, order_id: UUID, who: Caller = Depends(caller)) -> dict[str, Any]:
        async with pool(request).acquire() as conn:
            return await service.load(conn, order_id, who)

    @router.get("/v1/orders/{order_id}/tracking/stream", response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
    async def tracking_stream(request: Request, order_id: UUID, who: Caller = Depends(caller)) -> StreamingResponse:
        db = pool(request)

        async def load() -> dict[str, Any]:
            async with db.acquire() as conn:
                return await service.load(conn, order_id, who)

        await load()  # 404 (or the channel's refusal) before the stream starts
        return StreamingResponse(
            stream.events(listener, order_id, load, heartbeat), media_type="text/event-stream", headers=stream.HEADERS)

    return router
