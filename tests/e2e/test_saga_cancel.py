"""Cancelling an order end to end (every service a real process on real Kafka and PostgreSQL): before
dispatch the stock is released and the shipments cancelled, after dispatch it is refused, while the
payment is awaited or the order backordered it gives up what it held, and a cancel racing a dispatch
ends consistently. One system for the module: every test uses SKUs and locations of its own."""

import asyncio

import pytest

from tests.support.polling import eventually
from tests.support.services import ADMIN_TOKEN
from tests.support.system import System, unique

pytestmark = pytest.mark.infra


async def test_cancel_before_dispatch_releases_stock_and_cancels_shipments(system: System):
    shirt, socks = unique("SHIRT"), unique("SOCKS")
    north, south = unique("PORTO"), unique("FARO")
    for loc in (north, south):
        await system.location(loc, "PT")
    await system.set_stock(north, shirt, 4)
    await system.set_stock(south, socks, 4)

    order_id = await system.place({shirt: 2, socks: 1})
    await system.wait_status(order_id, "confirmed")
    shipments = await system.wait_shipments(order_id, 2)
    assert len(shipments) == 2
    await system.advance(shipments[0]["shipment_id"], "pick")  # work started, nothing left yet

    accepted = await system.cancel(order_id, "customer changed mind")
    assert accepted["cancellation"] == "requested"
    cancelled = await system.wait_status(order_id, "cancelled")
    assert cancelled["status_reason"] == "customer changed mind"

    cancelled_shipments = await system.wait_shipments(order_id, 2, status="cancelled")
    assert {s["shipment_id"] for s in cancelled_shipments} == {s["shipment_id"] for s in shipments}
    for sku in (shirt, socks):
        await system.wait_stock(sku, on_hand=4, reserved=0, available=4)
    reservation = await system.reservation(order_id)
    assert (reservation["status"], reservation["release_reason"]) == ("released", "customer changed mind")
    # A cancelled shipment cannot leave.
    refused = await system.call("POST", "fulfilment", f"/v1/shipments/{shipments[1]['shipment_id']}/pick",
                                expect=409)
    assert refused["error"]["code"] == "invalid_transition"

    changes = await system.status_changes(order_id, "cancelled")
    assert [(c["new_status"], c["reason"]) for c in changes] == [
        ("confirmed", None), ("cancelled", "customer changed mind")]
    saga = await system.wait_saga(order_id, "cancelled")
    compensations = [(s["step"], s["outcome"]) for s in saga["steps"] if s["kind"] == "compensation"]
    assert compensations == [("cancel_shipments", "compensated"), ("release_stock", "compensated")]
    billing = system.billing_requests
    assert billing is not None
    await billing.drain(0.5)
    assert system.published(billing, order_id) == []


async def test_cancel_after_dispatch_is_refused(system: System):
    sku, loc = unique("COAT"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 3)
    order_id = await system.place({sku: 1})
    await system.wait_status(order_id, "confirmed")
    [shipment] = await system.wait_shipments(order_id, 1)
    await system.dispatch(shipment["shipment_id"])
    await system.wait_status(order_id, "shipped")

    await system.cancel(order_id, "too late")
    status_events = system.status_events
    assert status_events is not None
    [refusal] = await system.wait_published(status_events, order_id, "OrderCancellationRefused")
    assert refusal["payload"] == {"order_id": order_id, "reason": "already_dispatched", "status": "shipped"}

    order = await system.order(order_id)
    assert (order["status"], order["status_reason"]) == ("shipped", None)
    assert [c["new_status"] for c in await system.status_changes(order_id, "shipped")] == ["confirmed", "shipped"]
    [after] = await system.shipments(order_id)
    assert after["status"] == "dispatched"
    await system.wait_stock(sku, on_hand=2, reserved=0)
    assert (await system.reservation(order_id))["status"] == "committed"
    saga = await system.saga(order_id)
    assert (saga["state"], saga["current_step"]) == ("running", "await_delivery")
    assert [(n["event_type"], n["disposition"]) for n in saga["ignored_messages"]] == [
        ("OrderCancellationRequested", "refused")]

    # The order goes on as if nothing had been asked.
    await system.deliver(after)
    await system.wait_status(order_id, "delivered")


async def test_cancel_while_awaiting_payment_releases_stock(system: System):
    sku, loc = unique("HAT"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 2)
    order_id = await system.place({sku: 2}, payment_status="pending")
    await system.wait_status(order_id, "awaiting_payment")
    assert (await system.stock(sku))["reserved"] == 2

    await system.cancel(order_id, "changed mind")
    cancelled = await system.wait_status(order_id, "cancelled")
    assert cancelled["status_reason"] == "changed mind"
    await system.wait_stock(sku, on_hand=2, reserved=0)
    saga = await system.wait_saga(order_id, "cancelled")
    assert [(s["step"], s["outcome"]) for s in saga["steps"]] == [
        ("reserve_stock", "succeeded"), ("payment_gate", "cancelled"), ("release_stock", "compensated")]

    # The payment confirmed afterwards does not revive it.
    await system.confirm_payment(order_id, "20.00")

    async def noted() -> bool:
        return any(n["event_type"] == "PaymentConfirmed" for n in (await system.saga(order_id))["ignored_messages"])

    await eventually(noted, what="the late PaymentConfirmed to reach the saga")
    assert (await system.order(order_id))["status"] == "cancelled"
    assert await system.shipments(order_id) == []


async def test_cancelled_backorder_gives_up_its_place_in_line(system: System):
    sku, loc = unique("KITE"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 0)
    await system.sku_settings(sku, allow_backorder=True)
    first = await system.place({sku: 2})
    await system.wait_status(first, "backordered")
    second = await system.place({sku: 2})
    await system.wait_status(second, "backordered")

    await system.cancel(first, "no longer needed")
    await system.wait_status(first, "cancelled")
    # The status is announced as soon as nothing can refuse the release; inventory applies it after.
    await system.wait_reservation(first, "released")

    # Units for one order arrive: the cancelled order, though first in line, gets none of them.
    await system.set_stock(loc, sku, 2, reason="delivery from supplier")
    await system.wait_status(second, "confirmed")
    stock = await system.stock(sku)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (2, 2, 0)
    assert (await system.reservation(first))["status"] == "released"
    assert (await system.order(first))["status"] == "cancelled"
    assert await system.shipments(first) == []
    [shipment] = await system.wait_shipments(second, 1)
    assert shipment["lines"] == [{"sku": sku, "quantity": 2}]


async def test_cancel_racing_a_dispatch_ends_consistently(system: System):
    """The cancellation and the dispatch are sent at the same moment: either may win, but the order,
    its shipment and its stock all tell the same story."""
    sku, loc = unique("RACE"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 5)
    order_id = await system.place({sku: 2})
    await system.wait_status(order_id, "confirmed")
    [shipment] = await system.wait_shipments(order_id, 1)
    sid = shipment["shipment_id"]
    await system.advance(sid, "pick")
    await system.advance(sid, "pack")

    async def dispatch() -> int:
        assert system.http is not None
        resp = await system.http.post(f"{system.url('fulfilment')}/v1/shipments/{sid}/dispatch",
                                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        return resp.status_code

    _, dispatch_status = await asyncio.gather(system.cancel(order_id, "race"), dispatch())
    order = await system.wait_status(order_id, "cancelled", "shipped")
    [after] = await system.shipments(order_id)
    if order["status"] == "cancelled":
        assert dispatch_status == 409
        assert after["status"] == "cancelled"
        await system.wait_stock(sku, on_hand=5, reserved=0)
    else:
        assert dispatch_status == 200
        assert after["status"] == "dispatched"
        await system.wait_stock(sku, on_hand=3, reserved=0)
        status_events = system.status_events
        assert status_events is not None
        [refusal] = await system.wait_published(status_events, order_id, "OrderCancellationRefused")
        assert refusal["payload"]["reason"] == "already_dispatched"
        await system.deliver(after)
        await system.wait_status(order_id, "delivered")
