"""Backorders wait in arrival order and are served whole when stock rises (PUT stock, Restock,
Release), as replies to their original ReserveStock; LowStock is emitted once per crossing."""

import pytest

from oms_platform.ids import uuid7
from tests.integration.inventory.support import (
    envelope,
    release_command,
    reserve_command,
    restock_command,
    send,
    unique,
)

pytestmark = pytest.mark.infra


@pytest.fixture
async def backorderable(put):
    """A SKU that allows backorders with no stock yet, and a location; returns (sku, location)."""
    sku, loc = unique("BO"), unique("LIS")
    await put(f"/v1/locations/{loc}", {"name": "Lisbon", "country": "PT"})
    await put(f"/v1/skus/{sku}", {"allow_backorder": True})
    return sku, loc


async def test_backorders_are_served_oldest_first_and_whole_when_stock_arrives(
    infra, replies, backorderable, put, get
):
    sku, loc = backorderable
    orders = {name: uuid7() for name in ("A", "B", "C")}
    commands = {}
    for name, quantity in (("A", 2), ("B", 1), ("C", 1)):
        env, got = await replies.command(infra.kafka_bootstrap, reserve_command(orders[name], {sku: quantity}))
        assert got["event_type"] == "StockBackordered", got
        commands[name] = env
    assert (await get(f"/v1/reservations/{orders['A']}"))["short"] == [{"sku": sku, "requested": 2, "available": 0}]

    # One unit: A (2, oldest) cannot be served whole, and B must not jump it.
    await put(f"/v1/locations/{loc}/stock/{sku}", {"on_hand": 1, "reason": "delivery"})
    # A new order may not take that unit either: it queues behind them.
    late, got = await replies.command(infra.kafka_bootstrap, reserve_command(uuid7(), {sku: 1}))
    assert got["event_type"] == "StockBackordered"
    assert got["payload"]["short"] == [{"sku": sku, "requested": 1, "available": 0}]

    # Three units: A (2) and B (1) are served, in that order; C waits.
    put_resp = await put(f"/v1/locations/{loc}/stock/{sku}", {"on_hand": 3, "reason": "delivery"})
    assert put_resp["reserved"] == 3
    def reserved(name: str) -> list[dict]:
        return [e for e in replies.to(commands[name]) if e["event_type"] == "StockReserved"]

    await replies.reader.wait_for(lambda _: bool(reserved("A") and reserved("B")))
    [a], [b] = reserved("A"), reserved("B")
    assert a["causation_id"] == str(commands["A"].event_id) and a["correlation_id"] == str(orders["A"])
    assert a["payload"]["allocations"] == [{"location_id": loc, "sku": sku, "quantity": 2}]
    assert a["occurred_at"] <= b["occurred_at"]
    assert (await get(f"/v1/reservations/{orders['C']}"))["status"] == "backordered"

    # Releasing C takes it out of the queue; the next rise serves the late order, not C.
    await replies.command(infra.kafka_bootstrap, release_command(orders["C"]))
    _, restocked = await replies.command(infra.kafka_bootstrap, restock_command(uuid7(), loc, {sku: 1}))
    assert restocked["event_type"] == "StockRestocked"
    await replies.reader.wait_for(lambda _: any(e["event_type"] == "StockReserved" for e in replies.to(late)))
    assert [e["event_type"] for e in replies.all(orders["C"])] == ["StockBackordered", "StockReleased"]
    stock = await get(f"/v1/stock/{sku}")
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (4, 4, 0)


async def test_a_released_reservation_serves_the_waiting_backorder(infra, replies, backorderable, put, get):
    sku, loc = backorderable
    await put(f"/v1/locations/{loc}/stock/{sku}", {"on_hand": 2, "reason": "delivery"})
    holder, waiting = uuid7(), uuid7()
    _, got = await replies.command(infra.kafka_bootstrap, reserve_command(holder, {sku: 2}))
    assert got["event_type"] == "StockReserved"
    wait_cmd, got = await replies.command(infra.kafka_bootstrap, reserve_command(waiting, {sku: 1}))
    assert got["event_type"] == "StockBackordered"
    # A resent ReserveStock while waiting: the eventual StockReserved answers the latest attempt.
    resent = envelope(reserve_command(waiting, {sku: 1}))
    await send(infra.kafka_bootstrap, resent)
    assert (await replies.reply(resent))["event_type"] == "StockBackordered"
    await replies.command(infra.kafka_bootstrap, release_command(holder))
    await replies.reader.wait_for(lambda _: any(e["event_type"] == "StockReserved" for e in replies.to(resent)))
    assert (await get(f"/v1/reservations/{waiting}"))["status"] == "reserved"
    assert (await get(f"/v1/stock/{sku}"))["reserved"] == 1


async def test_a_short_sku_without_backorders_fails_the_whole_order(infra, replies, backorderable, put, get):
    sku, loc = backorderable
    plain = unique("PLAIN")
    await put(f"/v1/locations/{loc}/stock/{plain}", {"on_hand": 1, "reason": "delivery"})
    order_id = uuid7()
    _, got = await replies.command(infra.kafka_bootstrap, reserve_command(order_id, {sku: 1, plain: 2}))
    assert got["event_type"] == "StockReservationFailed" and got["payload"]["reason"] == "out_of_stock"
    assert {s["sku"] for s in got["payload"]["short"]} == {sku, plain}
    assert (await get(f"/v1/stock/{plain}"))["reserved"] == 0


async def test_low_stock_is_emitted_once_per_crossing(infra, replies, put):
    sku, loc = unique("LOW"), unique("LIS")
    await put(f"/v1/locations/{loc}", {"name": "Lisbon", "country": "PT"})
    await put(f"/v1/locations/{loc}/stock/{sku}", {"on_hand": 10, "reason": "delivery"})
    await put(f"/v1/skus/{sku}", {"low_stock_threshold": 5})

    def alerts() -> list[dict]:
        return [e["payload"] for e in replies.all() if e["event_type"] == "LowStock" and e["payload"]["sku"] == sku]

    for quantity in (4, 2, 1):  # available 6, then 4 (crossing), then 3 (still under)
        _, got = await replies.command(infra.kafka_bootstrap, reserve_command(uuid7(), {sku: quantity}))
        assert got["event_type"] == "StockReserved"
    await replies.reader.wait_for(lambda _: bool(alerts()))
    await replies.reader.drain(1.0)
    assert [(a["available"], a["threshold"]) for a in alerts()] == [(4, 5)]

    await put(f"/v1/locations/{loc}/stock/{sku}", {"on_hand": 20, "reason": "delivery"})  # back above: 13
    await replies.command(infra.kafka_bootstrap, reserve_command(uuid7(), {sku: 10}))  # under again: 3
    await replies.reader.wait_for(lambda _: len(alerts()) == 2)
    assert [(a["available"], a["threshold"]) for a in alerts()] == [(4, 5), (3, 5)]


async def test_each_sku_has_its_own_queue_older_backorders_of_other_skus_do_not_hide_it(
    infra, replies, backorderable, put, db
):
    """More older backorders of another SKU than one scan reads (BACKORDER_SCAN_LIMIT, 1000) must not
    keep a restock of this SKU from serving the order waiting for it."""
    sku, loc = backorderable
    other = unique("OTHER")
    await db.execute(
        """WITH o AS (
               SELECT gen_random_uuid() AS order_id, nextval('backorder_arrival') AS seq FROM generate_series(1, 1001)
           ), r AS (
               INSERT INTO reservations (order_id, reservation_id, status, destination_country, lines, backorder_seq,
                                         command_event_id, correlation_id)
               SELECT order_id, gen_random_uuid(), 'backordered', 'PT',
                      jsonb_build_array(jsonb_build_object('sku', $1::text, 'quantity', 1)), seq, order_id, order_id
               FROM o RETURNING order_id
           )
           INSERT INTO backorder_lines (sku, order_id, quantity) SELECT $1, order_id, 1 FROM r""",
        other,
    )
    waiting, got = await replies.command(infra.kafka_bootstrap, reserve_command(uuid7(), {sku: 1}))
    assert got["event_type"] == "StockBackordered"
    await put(f"/v1/locations/{loc}/stock/{sku}", {"on_hand": 1, "reason": "delivery"})
    await replies.reader.wait_for(lambda _: any(e["event_type"] == "StockReserved" for e in replies.to(waiting)))
    await db.execute(
        "DELETE FROM reservations WHERE order_id IN (SELECT order_id FROM backorder_lines WHERE sku = $1)", other
    )


async def test_sku_settings_are_published_in_order_keyed_by_the_sku(put, replies):
    """PUT /v1/skus/{sku} publishes SkuSettingsChanged (returns keeps its own copy of `returnable`),
    keyed like LowStock by the SKU, each change once and in the order they were made."""
    from inventory.handlers.effects import sku_key

    sku = unique("SET")
    await put(f"/v1/skus/{sku}", {"returnable": False, "low_stock_threshold": 2})
    await put(f"/v1/skus/{sku}", {"returnable": True})

    def changes() -> list[dict]:
        return [e for e in replies.all() if e["event_type"] == "SkuSettingsChanged" and e["payload"]["sku"] == sku]

    await replies.reader.wait_for(lambda _: len(changes()) >= 2)
    got = changes()
    assert [(c["payload"]["returnable"], c["payload"]["low_stock_threshold"]) for c in got] == [(False, 2), (True, 0)]
    assert {c["order_id"] for c in got} == {str(sku_key(sku))}
