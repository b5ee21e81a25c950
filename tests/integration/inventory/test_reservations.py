"""The saga's stock commands against the real inventory process on real Kafka and PostgreSQL: replies
on oms.inventory.events carry the command's event_id as causation_id; every command is idempotent."""

import pytest

from oms_platform.ids import uuid7
from tests.integration.inventory.support import (
    commit_command,
    envelope,
    release_command,
    reserve_command,
    restock_command,
    send,
    unique,
)

pytestmark = pytest.mark.infra


@pytest.fixture
async def stocked(put):
    """A SKU with 5 units in Lisbon (PT) and 10 in Madrid (ES); returns (sku, lisbon, madrid)."""
    sku, lis, mad = unique("SKU"), unique("LIS"), unique("MAD")
    await put(f"/v1/locations/{lis}", {"name": "Lisbon", "country": "PT"})
    await put(f"/v1/locations/{mad}", {"name": "Madrid", "country": "ES"})
    await put(f"/v1/locations/{lis}/stock/{sku}", {"on_hand": 5, "reason": "delivery"})
    await put(f"/v1/locations/{mad}/stock/{sku}", {"on_hand": 10, "reason": "delivery"})
    return sku, lis, mad


async def test_reserve_answers_with_allocations_strategy_and_reason(infra, replies, stocked, get):
    sku, lis, mad = stocked
    order_id = uuid7()
    command, got = await replies.command(infra.kafka_bootstrap, reserve_command(order_id, {sku: 3}, "ES"))
    assert got["event_type"] == "StockReserved" and got["event_version"] == 1
    assert got["causation_id"] == str(command.event_id)
    assert got["order_id"] == str(order_id) and got["correlation_id"] == str(order_id)
    payload = got["payload"]
    assert payload["allocations"] == [{"location_id": mad, "sku": sku, "quantity": 3}]
    assert payload["strategy"] == "single_location_in_country" and mad in payload["reason"]

    view = await get(f"/v1/reservations/{order_id}")
    assert view["status"] == "reserved" and view["reservation_id"] == payload["reservation_id"]
    assert view["strategy"] == payload["strategy"] and view["reason"] == payload["reason"]
    assert view["allocations"] == [{"location_id": mad, "sku": sku, "quantity": 3, "committed": 0}]
    stock = await get(f"/v1/stock/{sku}")
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (15, 3, 12)


@pytest.mark.parametrize(("quantity", "country", "strategy", "where"), [
    (4, "FR", "single_location", ["LIS"]),  # both hold it: lowest id (LIS- < MAD-) wins
    (12, "PT", "split_fewest_locations", ["LIS", "MAD"]),
])
async def test_sourcing_outside_the_country_and_split(infra, replies, stocked, quantity, country, strategy, where):
    sku, lis, mad = stocked
    _, got = await replies.command(infra.kafka_bootstrap, reserve_command(uuid7(), {sku: quantity}, country))
    assert got["event_type"] == "StockReserved" and got["payload"]["strategy"] == strategy
    ids = {"LIS": lis, "MAD": mad}
    allocations = got["payload"]["allocations"]
    assert sorted(a["location_id"] for a in allocations) == [ids[w] for w in where]
    assert sum(a["quantity"] for a in allocations) == quantity


async def test_the_same_command_twice_and_a_resent_one_give_one_reservation(infra, replies, stocked, get, db):
    sku, _, _ = stocked
    order_id = uuid7()
    first = envelope(reserve_command(order_id, {sku: 2}))
    await send(infra.kafka_bootstrap, first, first)  # a redelivery: the inbox drops it
    reply = await replies.reply(first)
    resent = envelope(reserve_command(order_id, {sku: 2}))  # the saga's retry after a timeout
    await send(infra.kafka_bootstrap, resent)
    again = await replies.reply(resent)
    await replies.reader.drain(1.0)
    assert len(replies.to(first)) == 1
    assert again["event_type"] == "StockReserved" and again["payload"] == reply["payload"]
    assert await db.fetchval("SELECT count(*) FROM reservations WHERE order_id = $1", order_id) == 1
    assert (await get(f"/v1/stock/{sku}"))["reserved"] == 2


async def test_unknown_sku_or_short_stock_fails_and_reserves_nothing(infra, replies, stocked, get):
    sku, _, _ = stocked
    missing = unique("NOPE")
    order_id = uuid7()
    _, got = await replies.command(infra.kafka_bootstrap, reserve_command(order_id, {sku: 1, missing: 1}))
    assert got["event_type"] == "StockReservationFailed"
    assert got["payload"]["reason"] == "out_of_stock"
    assert got["payload"]["short"] == [{"sku": missing, "requested": 1, "available": 0}]
    _, got = await replies.command(infra.kafka_bootstrap, reserve_command(uuid7(), {sku: 16}))
    assert got["payload"]["short"] == [{"sku": sku, "requested": 16, "available": 15}]
    assert (await get(f"/v1/stock/{sku}"))["reserved"] == 0
    assert (await get(f"/v1/reservations/{order_id}"))["status"] == "failed"
    _, bad = await replies.command(infra.kafka_bootstrap, reserve_command(uuid7(), {sku: 0}))
    assert bad["event_type"] == "StockReservationFailed" and bad["payload"]["reason"] == "invalid_request"


async def test_release_frees_the_units_once(infra, replies, stocked, get, http, svc, admin_headers):
    sku, lis, _ = stocked
    order_id = uuid7()
    await replies.command(infra.kafka_bootstrap, reserve_command(order_id, {sku: 4}, "PT"))
    over = await http.put(f"{svc.url}/v1/locations/{lis}/stock/{sku}", json={"on_hand": 3, "reason": "count"},
                          headers=admin_headers)
    assert over.status_code == 409
    assert over.json()["error"]["fields"][0] == {"field": "on_hand", "rule": "not_below_reserved",
                                                 "message": f"must be at least 4 (reserved at {lis})"}
    _, got = await replies.command(infra.kafka_bootstrap, release_command(order_id, "payment_timeout"))
    assert got["event_type"] == "StockReleased"
    assert got["payload"] == {"order_id": str(order_id), "reason": "payment_timeout",
                              "released": [{"location_id": lis, "sku": sku, "quantity": 4}]}
    _, again = await replies.command(infra.kafka_bootstrap, release_command(order_id, "payment_timeout"))
    assert again["payload"] == got["payload"]
    stock = await get(f"/v1/stock/{sku}")
    assert (stock["reserved"], stock["available"]) == (0, 15)
    assert (await get(f"/v1/reservations/{order_id}"))["status"] == "released"
    # A release for an order never reserved is remembered: its late ReserveStock reserves nothing.
    ghost = uuid7()
    await replies.command(infra.kafka_bootstrap, release_command(ghost))
    _, late = await replies.command(infra.kafka_bootstrap, reserve_command(ghost, {sku: 1}))
    assert late["event_type"] == "StockReservationFailed"
    assert (await get(f"/v1/stock/{sku}"))["reserved"] == 0


async def test_commit_on_dispatch_and_restock_move_on_hand_once(infra, replies, stocked, get):
    sku, lis, _ = stocked
    order_id = uuid7()
    await replies.command(infra.kafka_bootstrap, reserve_command(order_id, {sku: 3}, "PT"))
    commit = commit_command(order_id, lis, {sku: 3})
    first, got = await replies.command(infra.kafka_bootstrap, commit)
    assert got["event_type"] == "StockCommitted" and got["payload"]["shipment_id"] == str(commit.shipment_id)
    _, again = await replies.command(infra.kafka_bootstrap, commit)  # a resent command, same shipment
    assert again["event_type"] == "StockCommitted"
    stock = await get(f"/v1/stock/{sku}")
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (12, 0, 12)
    view = await get(f"/v1/reservations/{order_id}")
    assert view["status"] == "committed" and view["allocations"][0]["committed"] == 3

    restock = restock_command(order_id, lis, {sku: 2}, reason="customer_return")
    _, got = await replies.command(infra.kafka_bootstrap, restock)
    assert got["event_type"] == "StockRestocked" and got["payload"]["restock_id"] == str(restock.restock_id)
    await replies.command(infra.kafka_bootstrap, restock)
    assert (await get(f"/v1/stock/{sku}"))["on_hand"] == 14

    trail = (await get(f"/v1/stock/{sku}/movements", location_id=lis))["items"]
    assert [(m["delta"], m["reason"], m["order_id"]) for m in trail] == [
        (2, "customer_return", str(order_id)), (-3, "dispatch", str(order_id)), (5, "delivery", None)]
