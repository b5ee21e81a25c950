"""Returns as sagas end to end, every service a real process on real Kafka and PostgreSQL (billing is
played over its topics): receipt, restock of resellable units only, the refund at the order's prices,
the exchange's replacement order, the order's status, and a SIGKILL of returns mid-saga."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.polling import eventually
from tests.support.returns import (
    WITH_RETURNS,
    complete_refund,
    delivered_order,
    get_return,
    receive,
    request_when_copied,
    return_body,
    wait_order,
    wait_return,
)
from tests.support.system import System, unique

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
async def system(infra, log_dir) -> AsyncIterator[System]:
    system = await System.start(infra, log_dir, services=WITH_RETURNS,
                                env={"returns": {"TICK_INTERVAL_SECONDS": "0.2"}})
    yield system
    await system.stop()


async def approved(system: System, order_id: str, lines: dict[str, int], resolution: str = "refund") -> dict:
    resp = await request_when_copied(system, return_body(order_id, lines, resolution))
    assert resp.status_code == 201, resp.text
    return resp.json()


def refunds(system: System, order_id: str, return_id: str) -> list[dict]:
    assert system.billing_requests is not None
    return [e["payload"] for e in system.published(system.billing_requests, order_id, "RefundRequested")
            if e["payload"]["return_id"] == return_id]


async def wait_refunds(system: System, order_id: str, return_id: str) -> list[dict]:
    assert system.billing_requests is not None
    await system.billing_requests.wait_for(lambda _: bool(refunds(system, order_id, return_id)), timeout=60)
    return refunds(system, order_id, return_id)


def restocks(movements: list[dict], return_id: str) -> list[dict]:
    return [m for m in movements if m["reason"] == f"return {return_id}"]


async def test_refund_of_one_of_two_units(system: System):
    sku = unique("TEE")
    order_id = await delivered_order(system, {sku: 2}, unit_price="19.90")
    assert (await system.stock(sku))["on_hand"] == 5  # 7 stocked, 2 shipped
    ret = await approved(system, order_id, {sku: 1})
    await wait_order(system, order_id, "return_requested")

    got = await receive(system, ret["return_id"], [(sku, 1, "resellable")])
    assert got["status"] == "received" and got["refund_amount"] == "19.90"
    await system.wait_stock(sku, on_hand=6)
    [refund] = await wait_refunds(system, order_id, ret["return_id"])
    assert refund == {"order_id": order_id, "return_id": ret["return_id"], "amount": "19.90", "currency": "EUR"}
    await wait_order(system, order_id, "partially_returned")

    await complete_refund(system, order_id, ret["return_id"], "19.90")
    closed = await wait_return(system, ret["return_id"], "closed")
    assert closed["outcome"] == "refunded"
    assert [h["status"] for h in closed["history"]] == ["requested", "approved", "awaiting_receipt", "received",
                                                        "refunded", "closed"]
    saga = await system.call("GET", "returns", f"/v1/returns/{ret['return_id']}/saga")
    assert saga["state"] == "completed"
    assert [(s["step"], s["outcome"]) for s in saga["steps"]] == [
        ("await_receipt", "succeeded"), ("restock", "succeeded"), ("exchange", "passed"), ("refund", "succeeded")]
    assert len(restocks(await system.movements(sku), ret["return_id"])) == 1
    assert (await system.order(order_id))["status"] == "partially_returned"
    # Numbered after the order saga's own statuses (confirmed, shipped, delivered), in the same counter.
    changes = await system.status_changes(order_id, "partially_returned")
    assert [(c["new_status"], c["sequence"]) for c in changes][-2:] == [("return_requested", 4),
                                                                        ("partially_returned", 5)]


async def test_a_damaged_unit_is_refunded_but_not_restocked(system: System):
    sku = unique("TEE")
    order_id = await delivered_order(system, {sku: 1}, unit_price="7.45")
    ret = await approved(system, order_id, {sku: 1})
    await receive(system, ret["return_id"], [(sku, 1, "damaged")])
    [refund] = await wait_refunds(system, order_id, ret["return_id"])
    assert refund["amount"] == "7.45"
    await wait_order(system, order_id, "returned")
    saga = await system.call("GET", "returns", f"/v1/returns/{ret['return_id']}/saga")
    assert ("restock", "passed") in [(s["step"], s["outcome"]) for s in saga["steps"]]
    assert restocks(await system.movements(sku), ret["return_id"]) == []
    assert (await system.stock(sku))["on_hand"] == 5


async def test_an_exchange_places_and_links_a_replacement_order(system: System):
    sku = unique("TEE")
    order_id = await delivered_order(system, {sku: 1})
    ret = await approved(system, order_id, {sku: 1}, resolution="exchange")
    await receive(system, ret["return_id"], [(sku, 1, "resellable")])
    closed = await wait_return(system, ret["return_id"], "closed")
    assert closed["outcome"] == "exchanged" and closed["replacement_order_id"]
    replacement = await system.call("GET", "order-capture", f"/v1/orders/{closed['replacement_order_id']}")
    assert replacement["channel"] == "web" and replacement["external_id"] == f"RMA-{ret['return_id']}"
    assert [(li["sku"], li["quantity"], li["unit_price"]) for li in replacement["lines"]] == [(sku, 1, "0.00")]
    assert replacement["payment"]["method"] == "exchange" and replacement["total"] == "0.00"
    await wait_order(system, closed["replacement_order_id"], "confirmed")  # through the normal order saga
    await system.billing_requests.drain(0.5)
    assert refunds(system, order_id, ret["return_id"]) == []


async def test_an_exchange_whose_replacement_is_rejected_is_refunded_instead(system: System):
    sku = unique("TEE")
    order_id = await delivered_order(system, {sku: 1}, unit_price="15.50")
    [shipment] = await system.wait_shipments(order_id, 1)
    await system.set_stock(shipment["location_id"], sku, 0)  # the replacement cannot be reserved
    ret = await approved(system, order_id, {sku: 1}, resolution="exchange")
    await receive(system, ret["return_id"], [(sku, 1, "damaged")])  # damaged: nothing restocked either
    [refund] = await wait_refunds(system, order_id, ret["return_id"])
    assert refund == {"order_id": order_id, "return_id": ret["return_id"], "amount": "15.50", "currency": "EUR"}
    replacement = (await get_return(system, ret["return_id"]))["replacement_order_id"]
    await wait_order(system, replacement, "rejected")
    await complete_refund(system, order_id, ret["return_id"], "15.50")
    closed = await wait_return(system, ret["return_id"], "closed")
    assert closed["outcome"] == "refunded"


async def test_returns_killed_mid_saga_restocks_and_refunds_once(system: System):
    sku = unique("TEE")
    order_id = await delivered_order(system, {sku: 2}, unit_price="12.00")
    ret = await approved(system, order_id, {sku: 2})
    # The next saga batch (inventory's StockRestocked) kills returns before its transaction commits.
    await system.restart("returns", OMS_FAULT="saga.before_commit")
    await receive(system, ret["return_id"], [(sku, 2, "resellable")])
    proc = system.services["returns"].proc
    await eventually(lambda: asyncio.sleep(0, proc is not None and proc.poll() is not None),
                     what="returns to kill itself mid-saga")
    await system.restart("returns")
    [refund] = await wait_refunds(system, order_id, ret["return_id"])
    assert refund["amount"] == "24.00"
    await system.wait_stock(sku, on_hand=7)
    await complete_refund(system, order_id, ret["return_id"], "24.00")
    await wait_return(system, ret["return_id"], "closed")
    await system.billing_requests.drain(1.0)
    assert len(restocks(await system.movements(sku), ret["return_id"])) == 1
    assert len(refunds(system, order_id, ret["return_id"])) == 1
    assert (await get_return(system, ret["return_id"]))["outcome"] == "refunded"


async def test_a_return_not_received_in_time_expires_and_its_units_may_be_returned_again(system: System):
    # Last in the module: returns runs with a receipt window of ~17 s for it.
    sku = unique("TEE")
    order_id = await delivered_order(system, {sku: 1})
    await system.restart("returns", RETURN_RECEIPT_DAYS="0.0002")
    try:
        ret = await approved(system, order_id, {sku: 1})
        await wait_order(system, order_id, "return_requested")
        expired = await wait_return(system, ret["return_id"], "closed")
        assert expired["outcome"] == "expired"
        assert [h["status"] for h in expired["history"]][-2:] == ["expired", "closed"]
        await wait_order(system, order_id, "delivered")  # no other return open: back to delivered
        await receive(system, ret["return_id"], [(sku, 1, "resellable")], expect=409)
        again = await approved(system, order_id, {sku: 1})  # the unit is returnable again
        assert again["status"] == "awaiting_receipt"
    finally:
        await system.restart("returns")
