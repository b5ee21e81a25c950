"""The order saga under stress, end to end, on one system for the module (each test with a SKU and
location of its own).

A burst of concurrent orders for fewer units than they ask: exactly as many are confirmed as there are
units, the rest are rejected out_of_stock, and the stock is never oversold (sampled while the orders
are decided, and checked at the end).

Crashes in the middle of sagas: the orchestrator, then inventory, is killed with SIGKILL while orders
are in flight (more are placed while it is down) and started again. Every saga finishes, and no step
takes effect twice: one reservation per order, the SKU's reserved units equal to the orders' units,
one set of shipments per order, one `confirmed` per order."""

import asyncio
from collections import Counter

import pytest

from tests.support.polling import eventually
from tests.support.system import System, unique

pytestmark = pytest.mark.infra

ORDERS, UNITS = 100, 60  # the burst: orders of one unit each, units on hand
WAVE = 10  # orders placed while the crashed service is down
MAX_BEFORE_CRASH = 40  # orders are placed until the crash, at most this many


async def test_concurrent_orders_never_oversell(system: System):
    sku, loc = unique("HOT"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, UNITS)

    samples: list[dict] = []
    stop = asyncio.Event()

    async def sample_stock() -> None:
        while not stop.is_set():
            samples.append(await system.stock(sku))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample_stock())
    try:
        order_ids = list(await asyncio.gather(*(system.place({sku: 1}) for _ in range(ORDERS))))
        assert len(set(order_ids)) == ORDERS
        settled = await system.wait_all_settled(order_ids, timeout=120)
    finally:
        stop.set()
        await sampler
    outcomes = Counter((o["status"], o["status_reason"]) for o in settled.values())
    assert outcomes == {("confirmed", None): UNITS, ("rejected", "out_of_stock"): ORDERS - UNITS}

    stock = await system.stock(sku)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (UNITS, UNITS, 0)
    assert samples, "the stock was never sampled"
    for s in samples:
        assert s["on_hand"] == UNITS and 0 <= s["reserved"] <= UNITS and s["available"] >= 0, s
    assert [s["reserved"] for s in samples] == sorted(s["reserved"] for s in samples)  # only ever rises

    confirmed = {o for o, v in settled.items() if v["status"] == "confirmed"}
    reservations = await asyncio.gather(*(system.reservation(o) for o in order_ids))
    assert Counter(r["status"] for r in reservations) == {"reserved": UNITS, "failed": ORDERS - UNITS}
    assert {r["order_id"] for r in reservations if r["status"] == "reserved"} == confirmed
    assert sum(a["quantity"] for r in reservations for a in r["allocations"] if r["status"] == "reserved") == UNITS

    # Every confirmed order, and no other, gets its shipment.
    async def all_shipments() -> list[dict] | None:
        items = (await system.call("GET", "fulfilment", "/v1/shipments",
                                   params={"location_id": loc, "limit": 200}))["items"]
        return items if len(items) >= UNITS else None

    shipments = await eventually(all_shipments, what=f"{UNITS} shipments")
    assert sorted(s["order_id"] for s in shipments) == sorted(confirmed)


async def crash_in_the_middle(system: System, service: str) -> tuple[str, list[str]]:
    """Keeps placing orders and kills `service` as soon as the orchestrator shows one of their sagas
    waiting for inventory or fulfilment to answer; places a wave more while it is down, and starts it
    again. Returns the SKU and every order placed."""
    sku, loc = unique("CRASH"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 100)
    placed: list[str] = []
    killed = asyncio.Event()

    async def keep_placing() -> None:
        while not killed.is_set() and len(placed) < MAX_BEFORE_CRASH:
            placed.extend(await asyncio.gather(*(system.place({sku: 1}) for _ in range(2))))

    async def under_way() -> bool:
        sagas = (await system.call("GET", "orchestrator", "/v1/sagas", params={"limit": 200}))["items"]
        return any(s["order_id"] in placed and s["current_step"] in ("reserve_stock", "create_shipments")
                   for s in sagas)

    stream = asyncio.create_task(keep_placing())
    try:
        await eventually(under_way, what="sagas to be under way", interval=0.02)
        await system.kill(service)
    finally:
        killed.set()
        await stream
    placed.extend(await asyncio.gather(*(system.place({sku: 1}) for _ in range(WAVE))))
    await system.restart(service)
    return sku, placed


async def assert_each_saga_took_effect_once(system: System, sku: str, order_ids: list[str]) -> None:
    settled = await system.wait_all_settled(order_ids, timeout=120)
    assert {o: v["status"] for o, v in settled.items()} == {o: "confirmed" for o in order_ids}

    # Inventory: one reservation per order, and the SKU holds exactly the orders' units.
    for order_id in order_ids:
        reservation = await system.reservation(order_id)
        assert reservation["status"] == "reserved", reservation
        assert [(a["sku"], a["quantity"]) for a in reservation["allocations"]] == [(sku, 1)]
    stock = await system.stock(sku)
    units = len(order_ids)
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (100, units, 100 - units)

    # Fulfilment: one shipment per order (the shipments of every order, as one set).
    for order_id in order_ids:
        [shipment] = await system.wait_shipments(order_id, 1)
        assert shipment["lines"] == [{"sku": sku, "quantity": 1}]

    # Orchestrator: each saga went through its steps once and announced `confirmed` once.
    assert system.status_events is not None
    await system.status_events.drain(0.5)
    for order_id in order_ids:
        changes = await system.status_changes(order_id, "confirmed")
        assert [(c["old_status"], c["new_status"]) for c in changes] == [("pending", "confirmed")], order_id
        saga = await system.wait_saga(order_id, "running", "await_dispatch")
        assert [(s["step"], s["outcome"]) for s in saga["steps"]] == [
            ("reserve_stock", "succeeded"), ("payment_gate", "passed"), ("create_shipments", "succeeded"),
            ("await_dispatch", None)]


async def test_orchestrator_killed_mid_saga(system: System):
    sku, order_ids = await crash_in_the_middle(system, "orchestrator")
    await assert_each_saga_took_effect_once(system, sku, order_ids)


async def test_inventory_killed_mid_saga(system: System):
    sku, order_ids = await crash_in_the_middle(system, "inventory")
    await assert_each_saga_took_effect_once(system, sku, order_ids)


async def test_orchestrator_killed_while_dispatches_are_applied(system: System):
    """Dispatches fan out to inventory (CommitStock) and to the billing system: killed while applying
    them, the orchestrator asks for each capture and invoice once, and the stock leaves once."""
    sku, loc = unique("SHIP"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 100)
    order_ids = list(await asyncio.gather(*(system.place({sku: 1}) for _ in range(WAVE))))
    shipments = [s for o in order_ids for s in await system.wait_shipments(o, 1)]
    assert len(shipments) == WAVE
    billing = system.billing_requests
    assert billing is not None

    await asyncio.gather(*(system.dispatch(s["shipment_id"]) for s in shipments))

    async def billing_started() -> bool:
        await billing.poll(0.05)
        return any(system.published(billing, o) for o in order_ids)

    await eventually(billing_started, what="a first billing request", interval=0)
    await system.kill("orchestrator")
    await system.restart("orchestrator")

    for order_id in order_ids:
        await system.wait_status(order_id, "shipped")
    await system.wait_stock(sku, on_hand=100 - WAVE, reserved=0)
    for order_id in order_ids:
        await system.wait_published(billing, order_id, "InvoiceRequested")
    await billing.drain(0.5)
    by_order = {s["order_id"]: s["shipment_id"] for s in shipments}
    for order_id in order_ids:
        requests = system.published(billing, order_id)
        assert sorted((r["event_type"], r["payload"]["shipment_id"]) for r in requests) == [
            ("InvoiceRequested", by_order[order_id]), ("PaymentCaptureRequested", by_order[order_id])], order_id
    moves = [m for m in await system.movements(sku) if m["reason"] == "dispatch"]
    assert sorted(m["order_id"] for m in moves) == sorted(order_ids)
    assert all(m["delta"] == -1 for m in moves)


async def test_sagas_go_on_after_the_crashes(system: System):
    """After both restarts the system still runs a saga to its end (the restarted processes consume,
    publish and answer as before)."""
    sku, loc = unique("AFTER"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 1)
    order_id = await system.place({sku: 1})
    await system.wait_status(order_id, "confirmed")
    [shipment] = await system.wait_shipments(order_id, 1)
    await system.dispatch(shipment["shipment_id"])
    await system.wait_status(order_id, "shipped")
    await system.wait_stock(sku, on_hand=0, reserved=0)
    await system.deliver(shipment)
    await system.wait_status(order_id, "delivered")
