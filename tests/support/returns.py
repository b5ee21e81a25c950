"""The returns desk and the customer's side of a return, for end-to-end tests on a System that runs
the returns service beside the order saga (System.start(..., services=WITH_RETURNS))."""

import uuid
from decimal import Decimal
from typing import Any

from oms_contracts.billing import RefundCompletedV1
from oms_contracts.topics import BILLING_EVENTS
from tests.support.kafka import produce
from tests.support.polling import eventually
from tests.support.system import SERVICES, System, envelope_bytes, unique

WITH_RETURNS = (*SERVICES, "returns")


async def delivered_order(system: System, lines: dict[str, int], *, unit_price: str = "19.90",
                          headers: dict[str, str] | None = None, channel: str | None = None) -> str:
    """Stock at a new location, an order for `lines`, its shipment dispatched and delivered; waits until
    order capture shows it delivered. Returns the order id."""
    loc = unique("LIS")
    await system.location(loc, "PT")
    for sku, qty in lines.items():
        await system.set_stock(loc, sku, qty + 5)
    order_id = await place(system, lines, unit_price=unit_price, headers=headers, channel=channel)
    [shipment] = await system.wait_shipments(order_id, 1)
    await system.dispatch(shipment["shipment_id"])
    await system.deliver(shipment)
    await wait_order(system, order_id, "delivered")
    return order_id


async def wait_order(system: System, order_id: str, status: str, timeout: float = 60) -> dict:
    """Waits until order capture shows the order (of any channel: read as an operator) in `status`."""

    async def check() -> dict | None:
        order = await system.call("GET", "order-capture", f"/v1/orders/{order_id}")
        return order if order["status"] == status else None

    return await eventually(check, timeout=timeout, what=f"order {order_id} to be {status}")


async def place(system: System, lines: dict[str, int], *, unit_price: str = "19.90",
                headers: dict[str, str] | None = None, channel: str | None = None) -> str:
    body = system.order_body(lines, unit_price=unit_price)
    if channel:
        body["channel"] = channel
    headers = {**(headers or system.channel), "Idempotency-Key": f"idem-{uuid.uuid4().hex}"}
    order = await system.call("POST", "order-capture", "/v1/orders", expect=201, json=body, headers=headers)
    return order["order_id"]


def return_body(order_id: str, lines: dict[str, int], resolution: str = "refund") -> dict[str, Any]:
    return {"order_id": order_id, "resolution": resolution,
            "lines": [{"sku": sku, "quantity": q, "reason": "too_small"} for sku, q in lines.items()]}


async def request(system: System, body: dict[str, Any], *, key: str | None = None,
                  headers: dict[str, str] | None = None, expect: int | tuple[int, ...] = 201) -> Any:
    headers = {**(headers or system.channel), "Idempotency-Key": key or f"ret-{uuid.uuid4().hex}"}
    assert system.http is not None
    resp = await system.http.post(f"{system.url('returns')}/v1/returns", json=body, headers=headers)
    expected = expect if isinstance(expect, tuple) else (expect,)
    assert resp.status_code in expected, f"POST /v1/returns: {resp.status_code} {resp.text}"
    return resp


async def request_when_copied(system: System, body: dict[str, Any], **kwargs: Any) -> Any:
    """POST /v1/returns once returns has its copy of the order and its deliveries (it follows other
    services' events, so it may be a moment behind order capture): retried while it answers 401 (the
    channel key not copied yet), 404 or refuses with rule `delivered`, which store nothing."""

    async def attempt() -> Any:
        resp = await request(system, body, expect=(201, 401, 404, 409, 422), **kwargs)
        if resp.status_code in (401, 404):
            return None
        if resp.status_code == 422 and any(f["rule"] == "delivered" for f in resp.json()["error"]["fields"]):
            return None
        return resp

    return await eventually(attempt, timeout=30, what="returns to know the delivered order")


async def get_return(system: System, return_id: str) -> dict:
    return await system.call("GET", "returns", f"/v1/returns/{return_id}")


async def wait_return(system: System, return_id: str, status: str, timeout: float = 60) -> dict:
    async def check() -> dict | None:
        r = await get_return(system, return_id)
        return r if r["status"] == status else None

    return await eventually(check, timeout=timeout, what=f"return {return_id} to be {status}")


async def receive(system: System, return_id: str, lines: list[tuple[str, int, str]],
                  expect: int = 200, **extra: Any) -> Any:
    body = {"lines": [{"sku": s, "quantity": q, "condition": c} for s, q, c in lines], **extra}
    return await system.call("POST", "returns", f"/v1/returns/{return_id}/receive", json=body, expect=expect)


async def complete_refund(system: System, order_id: str, return_id: str, amount: str, currency: str = "EUR") -> None:
    """The billing system reports the refund on oms.billing.events."""
    oid = uuid.UUID(order_id)
    event = RefundCompletedV1(order_id=oid, return_id=uuid.UUID(return_id), amount=Decimal(amount), currency=currency,
                              reference=f"rf_{uuid.uuid4().hex[:8]}")
    await produce(system.infra.kafka_bootstrap, BILLING_EVENTS, [envelope_bytes(event, producer="billing",
                                                                                order_id=oid)])

