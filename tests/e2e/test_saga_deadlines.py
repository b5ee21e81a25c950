"""The saga's deadlines end to end, with an orchestrator whose payment and backorder deadlines are 3
seconds (PAYMENT_TIMEOUT_SECONDS, BACKORDER_TIMEOUT_SECONDS): an order whose payment is never
confirmed is cancelled (payment_timeout) and its stock given back; an order that waits too long for
stock is rejected (backorder_timeout) and leaves the backorder queue."""

from collections.abc import AsyncIterator

import pytest

from tests.support.polling import eventually
from tests.support.system import System, unique

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
async def system(infra, log_dir) -> AsyncIterator[System]:
    system = await System.start(infra, log_dir, env={"orchestrator": {
        "PAYMENT_TIMEOUT_SECONDS": "3", "BACKORDER_TIMEOUT_SECONDS": "3"}})
    yield system
    await system.stop()


async def test_unpaid_order_is_cancelled_and_its_stock_released(system: System):
    sku, loc = unique("WATCH"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 3)

    order_id = await system.place({sku: 2}, payment_status="pending")
    cancelled = await system.wait_status(order_id, "cancelled")
    assert cancelled["status_reason"] == "payment_timeout"
    changes = await system.status_changes(order_id, "cancelled")
    assert [(c["old_status"], c["new_status"], c["reason"]) for c in changes] == [
        ("pending", "awaiting_payment", None), ("awaiting_payment", "cancelled", "payment_timeout")]

    stock = await system.wait_stock(sku, on_hand=3, reserved=0)
    assert stock["available"] == 3
    reservation = await system.reservation(order_id)
    assert (reservation["status"], reservation["release_reason"]) == ("released", "payment_timeout")
    assert await system.shipments(order_id) == []
    saga = await system.wait_saga(order_id, "cancelled")
    assert [(s["step"], s["kind"], s["outcome"]) for s in saga["steps"]] == [
        ("reserve_stock", "forward", "succeeded"),
        ("payment_gate", "forward", "timed_out"),
        ("release_stock", "compensation", "compensated"),
    ]

    # A payment confirmed after the deadline changes nothing: the order stays cancelled.
    await system.confirm_payment(order_id, "20.00", reference="pay_late")

    async def late_payment_noted() -> bool:
        notes = (await system.saga(order_id))["ignored_messages"]
        return any(n["event_type"] == "PaymentConfirmed" for n in notes)

    await eventually(late_payment_noted, what="the late PaymentConfirmed to reach the saga")
    order = await system.order(order_id)
    assert (order["status"], order["status_reason"]) == ("cancelled", "payment_timeout")
    assert (await system.stock(sku))["reserved"] == 0
    assert await system.shipments(order_id) == []


async def test_backorder_deadline_rejects_the_order_and_frees_its_place(system: System):
    sku, loc = unique("SLED"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 1)
    await system.sku_settings(sku, allow_backorder=True)

    order_id = await system.place({sku: 2})
    rejected = await system.wait_status(order_id, "rejected")
    assert rejected["status_reason"] == "backorder_timeout"
    changes = await system.status_changes(order_id, "rejected")
    assert [(c["new_status"], c["reason"]) for c in changes] == [
        ("backordered", "awaiting_stock"), ("rejected", "backorder_timeout")]

    reservation = await system.wait_reservation(order_id, "released")
    assert reservation["release_reason"] == "backorder_timeout"
    saga = await system.wait_saga(order_id, "failed")
    assert [(s["step"], s["outcome"]) for s in saga["steps"]] == [
        ("reserve_stock", "timed_out"), ("release_stock", "compensated")]

    # Stock arriving later is not reserved for the rejected order.
    await system.set_stock(loc, sku, 5, reason="delivery from supplier")
    assert (await system.stock(sku))["reserved"] == 0
    assert (await system.reservation(order_id))["status"] == "released"
    assert await system.shipments(order_id) == []
