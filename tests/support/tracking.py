"""The carrier side of tracking for end-to-end tests: signed webhook calls over real HTTP, as a
carrier makes them, and reads of an order's tracking."""

import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from tests.support.polling import eventually
from tests.support.system import ADMIN, SERVICES, System

CARRIER_SECRET = "test-carrier-webhook-secret"
LINK_SECRET = "test-tracking-link-secret"
SERVICES_WITH_TRACKING = (*SERVICES, "tracking")
TRACKING_ENV = {
    "CARRIER_WEBHOOK_SECRET": CARRIER_SECRET,
    "TRACKING_LINK_SECRET": LINK_SECRET,
    "STREAM_HEARTBEAT_SECONDS": "0.5",
}


def sign(body: bytes, secret: str = CARRIER_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def scan_body(shipment: dict[str, Any], status: str, *, event_id: str | None = None, at: datetime | None = None,
              location: str | None = "Lisboa hub", reason: str | None = None) -> dict[str, Any]:
    return {"carrier": shipment["carrier"], "event_id": event_id or f"evt-{uuid.uuid4().hex}",
            "tracking_number": shipment["tracking_number"], "status": status,
            "occurred_at": (at or datetime.now(UTC)).isoformat(), "location": location, "reason": reason}


async def post_scan(system: System, body: dict[str, Any] | bytes, *, signature: str | None | bool = True,
                    url: str | None = None) -> httpx.Response:
    """POSTs a carrier event; signature True: signed with the right secret, a string: sent as is."""
    assert system.http is not None
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"content-type": "application/json"}
    if signature is True:
        headers["X-Carrier-Signature"] = sign(raw)
    elif isinstance(signature, str):
        headers["X-Carrier-Signature"] = signature
    return await system.http.post(f"{url or system.url('tracking')}/v1/carrier-events", content=raw, headers=headers)


async def scan(system: System, shipment: dict[str, Any], status: str, **options: Any) -> dict[str, Any]:
    """A signed scan the service accepts as new (201)."""
    resp = await post_scan(system, scan_body(shipment, status, **options))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def tracking(system: System, order_id: str, headers: dict[str, str] | None = None,
                   expect: int = 200) -> dict[str, Any]:
    return await system.call("GET", "tracking", f"/v1/orders/{order_id}/tracking", headers=headers or ADMIN,
                             expect=expect)


async def wait_tracking(system: System, order_id: str, check: Any, *, what: str, timeout: float = 60) -> dict:
    """Polls the order's tracking until check(view) holds."""

    async def ready() -> dict | None:
        view = await system.call("GET", "tracking", f"/v1/orders/{order_id}/tracking", expect=(200, 404))
        return view if "timeline" in view and check(view) else None

    return await eventually(ready, timeout=timeout, what=what)


def types(view: dict[str, Any]) -> list[str]:
    return [e["type"] for e in view["timeline"]]


async def shipped_order(system: System, locations: int = 1) -> tuple[str, list[dict[str, Any]]]:
    """An order with one shipment per location, every one dispatched: the order is `shipped`."""
    lines = {}
    for _ in range(locations):
        sku, loc = f"TEE-{uuid.uuid4().hex[:8]}".upper(), f"LOC-{uuid.uuid4().hex[:8]}".upper()
        await system.location(loc, "PT")
        await system.set_stock(loc, sku, 5)
        lines[sku] = 1
    order_id = await system.place(lines)
    shipments = await system.wait_shipments(order_id, locations)
    for s in shipments:
        await system.dispatch(s["shipment_id"])
    await system.wait_status(order_id, "shipped")
    # A carrier's first scan needs tracking to know the parcels (else 404, and the carrier retries).
    await wait_tracking(system, order_id, lambda v: len(v["shipments"]) == locations, what="the shipments")
    return order_id, shipments


async def sse_events(resp: httpx.Response) -> Any:
    """The server-sent events of a streaming response as (event, data) pairs; a comment line (the
    heartbeat) as ("comment", text)."""
    event, data = "message", []
    async for line in resp.aiter_lines():
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield event, orjson.loads("\n".join(data))
            event, data = "message", []
