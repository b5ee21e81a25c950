"""The order saga end to end, every service a real process on real Kafka and PostgreSQL: an order
placed through order-capture is reserved by inventory, shipped by fulfilment (one shipment per
location), billed per dispatched shipment and delivered, and each status comes back to order-capture
over oms.orders.status. One system for the module: every test uses SKUs and locations of its own."""

import uuid
from datetime import datetime
from decimal import Decimal

import pytest

from tests.support.metrics import Samples, scrape, series, value
from tests.support.polling import eventually
from tests.support.system import System, unique

pytestmark = pytest.mark.infra


async def test_happy_path_from_placed_to_delivered(system: System):
    sku, loc = unique("TEE"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 10)

    trace_id = uuid.uuid4().hex
    order_id = await system.place({sku: 2}, unit_price="19.90",
                                  headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
    confirmed = await system.wait_status(order_id, "confirmed")
    assert confirmed["status_reason"] is None
    reservation = await system.reservation(order_id)
    assert reservation["status"] == "reserved"
    assert [(a["location_id"], a["sku"], a["quantity"]) for a in reservation["allocations"]] == [(loc, sku, 2)]
    stock = await system.stock(sku)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (10, 2, 8)

    [shipment] = await system.wait_shipments(order_id, 1)
    assert shipment["status"] == "created" and shipment["location_id"] == loc
    assert shipment["lines"] == [{"sku": sku, "quantity": 2}]
    assert (shipment["carrier"], shipment["service"]) == ("oms-post", "standard")
    assert shipment["tracking_number"]
    sid = shipment["shipment_id"]

    # The warehouse works the shipment; nothing leaves stock before dispatch.
    assert (await system.advance(sid, "pick"))["status"] == "picked"
    assert (await system.advance(sid, "pack"))["status"] == "packed"
    assert (await system.stock(sku))["on_hand"] == 10
    assert (await system.advance(sid, "dispatch"))["status"] == "dispatched"
    shipped = await system.wait_status(order_id, "shipped")
    assert shipped["status"] == "shipped"

    # Dispatch commits the stock: on_hand and reserved fall by the shipment's units.
    stock = await system.wait_stock(sku, on_hand=8, reserved=0)
    assert stock["available"] == 8
    assert stock["locations"] == [{"location_id": loc, "on_hand": 8, "reserved": 0, "available": 8}]
    dispatch_moves = [m for m in await system.movements(sku) if m["reason"] == "dispatch"]
    assert [(m["delta"], m["order_id"], m["location_id"]) for m in dispatch_moves] == [(-2, order_id, loc)]
    assert (await system.reservation(order_id))["status"] == "committed"

    # The billing system is asked to capture the payment and to invoice, for this shipment.
    billing = system.billing_requests
    assert billing is not None
    [capture] = await system.wait_published(billing, order_id, "PaymentCaptureRequested")
    [invoice] = await system.wait_published(billing, order_id, "InvoiceRequested")
    for request in (capture, invoice):
        assert request["order_id"] == order_id
        assert request["payload"] == {"order_id": order_id, "shipment_id": sid, "amount": "39.80", "currency": "EUR"}

    # The carrier reports delivery.
    await system.deliver(shipment)
    delivered = await system.wait_status(order_id, "delivered")
    assert delivered["status"] == "delivered"
    [after] = await system.wait_shipments(order_id, 1, status="delivered")
    assert after["dispatched_at"] is not None

    changes = await system.status_changes(order_id, "delivered")
    assert [(c["old_status"], c["new_status"]) for c in changes] == [
        ("pending", "confirmed"), ("confirmed", "shipped"), ("shipped", "delivered")]
    assert [c["sequence"] for c in changes] == [1, 2, 3]  # numbered by the saga, per order

    # One capture and one invoice for the shipment, however long one waits.
    await billing.drain(0.5)
    assert [e["event_type"] for e in system.published(billing, order_id)] == [
        "PaymentCaptureRequested", "InvoiceRequested"]

    # The caller's trace runs through every service to the status it gets back; every message names
    # its event type in its headers.
    assert system.status_events is not None
    confirmed_headers = system.headers_of(system.status_events, order_id, "OrderStatusChanged")[0]
    assert confirmed_headers["event_type"] == "OrderStatusChanged"
    assert confirmed_headers["traceparent"].split("-")[1] == trace_id
    for event_type in ("PaymentCaptureRequested", "InvoiceRequested"):
        headers = system.headers_of(billing, order_id, event_type)[0]
        assert headers["event_type"] == event_type and headers["traceparent"].startswith("00-")

    saga = await system.saga(order_id)
    assert (saga["state"], saga["status"], saga["stuck"], saga["current_step"]) == ("completed", "delivered",
                                                                                     False, None)
    steps = [(s["step"], s["kind"], s["outcome"]) for s in saga["steps"]]
    assert steps == [
        ("reserve_stock", "forward", "succeeded"),
        ("payment_gate", "forward", "passed"),
        ("create_shipments", "forward", "succeeded"),
        ("await_dispatch", "forward", "succeeded"),
        ("await_delivery", "forward", "succeeded"),
    ]
    for step in saga["steps"]:
        started, finished = datetime.fromisoformat(step["started_at"]), datetime.fromisoformat(step["finished_at"])
        assert started <= finished, step
    assert [s["seq"] for s in saga["steps"]] == sorted(s["seq"] for s in saga["steps"])
    assert Decimal(confirmed["total"]) == Decimal("39.80")


async def test_split_order_ships_from_two_locations(system: System):
    shirt, socks = unique("SHIRT"), unique("SOCKS")
    north, south = unique("PORTO"), unique("FARO")
    for loc in (north, south):
        await system.location(loc, "PT")
    # No location holds both SKUs: the order needs a shipment from each.
    await system.set_stock(north, shirt, 5)
    await system.set_stock(south, socks, 5)

    order_id = await system.place({shirt: 1, socks: 2}, unit_price="5.00")
    await system.wait_status(order_id, "confirmed")
    reservation = await system.reservation(order_id)
    assert reservation["strategy"] == "split_fewest_locations"
    assert sorted((a["location_id"], a["sku"], a["quantity"]) for a in reservation["allocations"]) == sorted(
        [(north, shirt, 1), (south, socks, 2)])

    shipments = await system.wait_shipments(order_id, 2)
    assert len(shipments) == 2
    by_location = {s["location_id"]: s for s in shipments}
    assert set(by_location) == {north, south}
    assert by_location[north]["lines"] == [{"sku": shirt, "quantity": 1}]
    assert by_location[south]["lines"] == [{"sku": socks, "quantity": 2}]
    assert all(s["status"] == "created" for s in shipments)
    assert len({s["tracking_number"] for s in shipments}) == 2

    first, second = by_location[north], by_location[south]
    await system.dispatch(first["shipment_id"])
    await system.wait_status(order_id, "partially_shipped")
    await system.wait_stock(shirt, on_hand=4, reserved=0)
    socks_stock = await system.stock(socks)
    assert (socks_stock["on_hand"], socks_stock["reserved"]) == (5, 2)  # the other shipment has not left
    billing = system.billing_requests
    assert billing is not None
    [capture] = await system.wait_published(billing, order_id, "PaymentCaptureRequested")
    assert capture["payload"]["shipment_id"] == first["shipment_id"] and capture["payload"]["amount"] == "5.00"

    await system.dispatch(second["shipment_id"])
    await system.wait_status(order_id, "shipped")
    await system.wait_stock(socks, on_hand=3, reserved=0)
    captures = await system.wait_published(billing, order_id, "PaymentCaptureRequested", 2)
    invoices = await system.wait_published(billing, order_id, "InvoiceRequested", 2)
    for requests in (captures, invoices):
        assert sorted((r["payload"]["shipment_id"], r["payload"]["amount"]) for r in requests) == sorted(
            [(first["shipment_id"], "5.00"), (second["shipment_id"], "10.00")])

    changes = await system.status_changes(order_id, "shipped")
    assert [c["new_status"] for c in changes] == ["confirmed", "partially_shipped", "shipped"]

    # Delivered only once both shipments are.
    await system.deliver(first)

    async def one_delivered() -> bool:
        steps = (await system.saga(order_id))["steps"]
        return steps[-1]["step"] == "await_delivery" and steps[-1]["detail"] == "ShipmentDelivered 1/2"

    await eventually(one_delivered, what="the saga to record the first delivery")
    assert (await system.order(order_id))["status"] == "shipped"
    await system.deliver(second)
    await system.wait_status(order_id, "delivered")
    await billing.drain(0.5)
    assert len(system.published(billing, order_id)) == 4  # capture and invoice, once per shipment
    saga = await system.saga(order_id)
    assert saga["state"] == "completed"
    details = {s["step"]: s["detail"] for s in saga["steps"]}
    assert details["create_shipments"] == "ShipmentsCreated (2)"
    assert details["await_dispatch"] == "ShipmentDispatched 2/2"
    assert details["await_delivery"] == "ShipmentDelivered 2/2"


async def test_out_of_stock_order_is_rejected_and_holds_nothing(system: System):
    plenty, scarce, loc = unique("MUG"), unique("LAMP"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, plenty, 5)
    await system.set_stock(loc, scarce, 1)

    # One line could be reserved, the other cannot: the order is refused whole.
    order_id = await system.place({plenty: 2, scarce: 3})
    rejected = await system.wait_status(order_id, "rejected")
    assert rejected["status_reason"] == "out_of_stock"

    for sku, on_hand in ((plenty, 5), (scarce, 1)):
        stock = await system.stock(sku)
        assert (stock["on_hand"], stock["reserved"], stock["available"]) == (on_hand, 0, on_hand)
    reservation = await system.reservation(order_id)
    assert (reservation["status"], reservation["failure_reason"]) == ("failed", "out_of_stock")
    assert reservation["short"] == [{"sku": scarce, "requested": 3, "available": 1}]
    assert await system.shipments(order_id) == []
    changes = await system.status_changes(order_id, "rejected")
    assert [(c["old_status"], c["new_status"], c["reason"]) for c in changes] == [
        ("pending", "rejected", "out_of_stock")]
    saga = await system.saga(order_id)
    assert (saga["state"], saga["status"], saga["status_reason"]) == ("failed", "rejected", "out_of_stock")
    assert [(s["step"], s["outcome"]) for s in saga["steps"]] == [("reserve_stock", "failed")]


async def test_backordered_order_continues_when_stock_arrives(system: System):
    sku, loc = unique("BOOT"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 1)
    settings = await system.sku_settings(sku, allow_backorder=True)
    assert settings["allow_backorder"] is True

    order_id = await system.place({sku: 3})
    backordered = await system.wait_status(order_id, "backordered")
    assert backordered["status"] == "backordered"
    assert (await system.reservation(order_id))["status"] == "backordered"
    stock = await system.stock(sku)
    assert (stock["on_hand"], stock["reserved"]) == (1, 0)  # a backorder holds a place in line, no units
    assert await system.shipments(order_id) == []

    # Stock arrives: the waiting order is reserved and its saga goes on.
    await system.set_stock(loc, sku, 5, reason="delivery from supplier")
    await system.wait_status(order_id, "confirmed")
    stock = await system.stock(sku)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (5, 3, 2)
    [shipment] = await system.wait_shipments(order_id, 1)
    assert shipment["lines"] == [{"sku": sku, "quantity": 3}]
    changes = await system.status_changes(order_id, "confirmed")
    assert [c["new_status"] for c in changes] == ["backordered", "confirmed"]


async def test_pending_payment_waits_for_payment_confirmed(system: System):
    sku, loc = unique("BAG"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 2)

    order_id = await system.place({sku: 1}, unit_price="49.00", payment_status="pending")
    awaiting = await system.wait_status(order_id, "awaiting_payment")
    assert awaiting["status"] == "awaiting_payment"
    # Stock is held while the payment is awaited; nothing is shipped yet.
    stock = await system.stock(sku)
    assert (stock["reserved"], stock["available"]) == (1, 1)
    assert await system.shipments(order_id) == []
    saga = await system.saga(order_id)
    assert (saga["current_step"], saga["state"]) == ("payment_gate", "running")

    await system.confirm_payment(order_id, "49.00", reference="pay_settled_1")
    await system.wait_status(order_id, "confirmed")
    [shipment] = await system.wait_shipments(order_id, 1)
    assert shipment["lines"] == [{"sku": sku, "quantity": 1}]
    changes = await system.status_changes(order_id, "confirmed")
    assert [(c["old_status"], c["new_status"]) for c in changes] == [
        ("pending", "awaiting_payment"), ("awaiting_payment", "confirmed")]
    saga = await system.saga(order_id)
    gate = [s for s in saga["steps"] if s["step"] == "payment_gate"]
    assert [(s["outcome"], s["detail"]) for s in gate] == [("succeeded", "PaymentConfirmed (pay_settled_1)")]


async def test_no_carrier_for_destination_rejects_and_releases(system: System):
    sku, loc = unique("DESK"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 4)
    # Stock is found (any location serves when none is in the destination country), but no carrier
    # rule covers standard shipping to the US.
    order_id = await system.place({sku: 1}, country="US")
    rejected = await system.wait_status(order_id, "rejected")
    assert rejected["status_reason"] == "shipment_failed"
    changes = await system.status_changes(order_id, "rejected")
    assert [(c["new_status"], c["reason"]) for c in changes] == [("confirmed", None), ("rejected", "shipment_failed")]
    await system.wait_stock(sku, on_hand=4, reserved=0)
    assert (await system.reservation(order_id))["status"] == "released"
    assert await system.shipments(order_id) == []
    saga = await system.wait_saga(order_id, "failed")
    assert [(s["step"], s["outcome"], s["detail"]) for s in saga["steps"]][-2:] == [
        ("create_shipments", "failed", "ShipmentCreationFailed (no_carrier_for_destination)"),
        ("release_stock", "compensated", "StockReleased")]


async def test_events_arriving_before_their_step_are_remembered(system: System):
    """The billing system confirms the payment as soon as the order exists, and the carrier reports
    delivery right after dispatch: each may reach the orchestrator before the step that awaits it."""
    sku, loc = unique("EARLY"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 2)
    order_id = await system.place({sku: 1}, unit_price="12.50", payment_status="pending")
    await system.confirm_payment(order_id, "12.50", reference="pay_early")
    await system.wait_status(order_id, "confirmed")
    changes = await system.status_changes(order_id, "confirmed")
    # Seen before the payment step started, the payment is applied at once and awaiting_payment is
    # never announced; seen after, it is announced first.
    assert [c["new_status"] for c in changes] in (["confirmed"], ["awaiting_payment", "confirmed"])

    [shipment] = await system.wait_shipments(order_id, 1)
    await system.dispatch(shipment["shipment_id"])
    await system.deliver(shipment)
    await system.wait_status(order_id, "delivered")
    changes = await system.status_changes(order_id, "delivered")
    assert [c["new_status"] for c in changes][-3:] == ["confirmed", "shipped", "delivered"]
    await system.wait_stock(sku, on_hand=1, reserved=0)
    saga = await system.wait_saga(order_id, "completed")
    assert [s["outcome"] for s in saga["steps"]] == ["succeeded"] * 5


async def test_metrics_move_when_an_order_flows(system: System):
    """The contract's series on /metrics, read before and after an order goes from placed to confirmed."""
    assert system.http is not None
    sku, loc = unique("MET"), unique("MLOC")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 5)
    before = {s: await scrape(system.http, system.url(s)) for s in ("order-capture", "orchestrator", "inventory")}

    order_id = await system.place({sku: 1})
    await system.wait_status(order_id, "confirmed")

    async def after(service: str) -> Samples:
        return await scrape(system.http, system.url(service))

    capture = await after("order-capture")
    assert value(capture, "oms_orders_placed_total", channel="web") == \
        value(before["order-capture"], "oms_orders_placed_total", channel="web") + 1
    posts = dict(name="oms_http_request_seconds_count", method="POST", route="/v1/orders")
    assert value(capture, **posts) == value(before["order-capture"], **posts) + 1

    orchestrator = await after("orchestrator")
    steps = "oms_saga_step_seconds_count"
    assert value(orchestrator, steps, saga_type="order") > value(before["orchestrator"], steps, saga_type="order")

    # Lag per topic and partition, from every consumer: inventory's reader of its commands has fetched
    # the order's ReserveStock, and is caught up (nothing more for it is produced here).
    async def fetched() -> list[dict[str, str]] | None:
        inventory = await after("inventory")
        lag = [s for s in series(inventory, "oms_consumer_lag") if s["topic"] == "oms.inventory.commands"]
        return lag if lag and all(value(inventory, "oms_consumer_lag", **s) == 0 for s in lag) else None

    lag = await eventually(fetched, timeout=30, what="inventory's lag on its commands")
    assert all(s["partition"].isdigit() and s["consumer"] for s in lag)
