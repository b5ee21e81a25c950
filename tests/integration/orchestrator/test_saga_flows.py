"""The order saga end to end through a real orchestrator on real Kafka and PostgreSQL; the test plays
inventory, fulfilment, billing and tracking (docs/order-saga.md)."""

import uuid

import httpx
import orjson
import pytest

from oms_contracts import new_envelope
from oms_contracts.topics import BILLING_EVENTS, BILLING_REQUESTS, ORDERS_STATUS, commands, dlq, events
from tests.integration.orchestrator import replies as r
from tests.integration.orchestrator.driver import Driver
from tests.support.kafka import TopicReader

pytestmark = pytest.mark.infra

INV_CMD, INV_EV = commands("inventory"), events("inventory")
FUL_CMD, FUL_EV = commands("fulfilment"), events("fulfilment")
TRACKING_EV = events("tracking")
ORCHESTRATOR_ENV = {"STEP_TIMEOUT_SECONDS": "30", "PAYMENT_TIMEOUT_SECONDS": "60"}


async def to_dispatch(d: Driver, **kw):
    """Places an order and plays inventory and fulfilment up to await_dispatch (two shipments)."""
    order_id = await d.place(**kw)
    reserve = await d.command(INV_CMD, order_id, "ReserveStock")
    await d.reply(reserve, INV_EV, r.reserved(reserve))
    create = await d.command(FUL_CMD, order_id, "CreateShipments")
    created = r.shipments_created(create)
    await d.reply(create, FUL_EV, created)
    return order_id, create, created


async def test_happy_path_to_delivered_with_two_shipments(orchestrator: Driver):
    d = orchestrator
    order_id, create, created = await to_dispatch(d)
    assert [s["location_id"] for s in create["payload"]["shipments"]] == ["LIS", "OPO"]
    first, second = created.shipments

    await d.send(FUL_EV, r.dispatched(first, order_id), order_id=order_id)
    await d.wait_status(order_id, "partially_shipped")
    commit = await d.command(INV_CMD, order_id, "CommitStock")
    assert commit["payload"]["shipment_id"] == str(first.shipment_id) and commit["payload"]["location_id"] == "LIS"
    billing = await d.wait_sent(BILLING_REQUESTS, order_id, "PaymentCaptureRequested")
    assert billing[0]["payload"]["amount"] == "39.80" and billing[0]["payload"]["currency"] == "EUR"
    await d.wait_sent(BILLING_REQUESTS, order_id, "InvoiceRequested")

    await d.send(FUL_EV, r.dispatched(second, order_id), order_id=order_id)
    await d.wait_status(order_id, "shipped")
    await d.wait_sent(INV_CMD, order_id, "CommitStock", 2)
    captures = await d.wait_sent(BILLING_REQUESTS, order_id, "PaymentCaptureRequested", 2)
    assert [c["payload"]["amount"] for c in captures] == ["39.80", "7.50"]
    await d.wait_sent(BILLING_REQUESTS, order_id, "InvoiceRequested", 2)

    await d.send(TRACKING_EV, r.delivered(first, order_id), r.delivered(second, order_id), order_id=order_id)
    statuses = await d.wait_status(order_id, "delivered")
    assert [s for s, _ in statuses] == ["confirmed", "partially_shipped", "shipped", "delivered"]

    saga = await d.saga(order_id)
    assert saga["saga_type"] == "order" and saga["state"] == "completed" and saga["current_step"] is None
    assert not saga["stuck"]
    assert [(s["step"], s["outcome"]) for s in saga["steps"]] == [
        ("reserve_stock", "succeeded"), ("payment_gate", "passed"), ("create_shipments", "succeeded"),
        ("await_dispatch", "succeeded"), ("await_delivery", "succeeded")]
    assert all(s["started_at"] and s["finished_at"] for s in saga["steps"])


async def test_out_of_stock_rejects(orchestrator: Driver):
    d = orchestrator
    order_id = await d.place()
    reserve = await d.command(INV_CMD, order_id, "ReserveStock")
    assert reserve["payload"]["destination_country"] == "PT" and reserve["causation_id"] is not None
    await d.reply(reserve, INV_EV, r.reservation_failed(reserve))
    assert await d.wait_status(order_id, "rejected") == [("rejected", "out_of_stock")]
    assert (await d.saga(order_id))["state"] == "failed"
    assert not d.sent(INV_CMD, order_id, "ReleaseStock")  # nothing was held


async def test_backorder_waits_then_stock_arrives(orchestrator: Driver):
    d = orchestrator
    order_id = await d.place()
    reserve = await d.command(INV_CMD, order_id, "ReserveStock")
    await d.reply(reserve, INV_EV, r.backordered(reserve))
    await d.wait_status(order_id, "backordered")
    saga = await d.saga(order_id)
    assert saga["state"] == "running" and saga["current_step"] == "reserve_stock"
    # Stock arrives later; inventory announces the reservation on its own.
    await d.send(INV_EV, r.reserved(reserve), order_id=order_id)
    assert [s for s, _ in await d.wait_status(order_id, "confirmed")] == ["backordered", "confirmed"]
    await d.command(FUL_CMD, order_id, "CreateShipments")


async def test_pending_payment_is_confirmed_by_billing(orchestrator: Driver):
    d = orchestrator
    order_id = await d.place(payment="pending")
    reserve = await d.command(INV_CMD, order_id, "ReserveStock")
    await d.reply(reserve, INV_EV, r.reserved(reserve))
    await d.wait_status(order_id, "awaiting_payment")
    assert not d.sent(FUL_CMD, order_id)
    await d.send(BILLING_EVENTS, r.payment_confirmed(order_id), order_id=order_id)
    assert [s for s, _ in await d.wait_status(order_id, "confirmed")] == ["awaiting_payment", "confirmed"]
    await d.command(FUL_CMD, order_id, "CreateShipments")


async def test_shipment_creation_failure_releases_stock_and_rejects(orchestrator: Driver):
    d = orchestrator
    order_id = await d.place()
    reserve = await d.command(INV_CMD, order_id, "ReserveStock")
    await d.reply(reserve, INV_EV, r.reserved(reserve))
    create = await d.command(FUL_CMD, order_id, "CreateShipments")
    await d.reply(create, FUL_EV, r.creation_failed(create))
    release = await d.command(INV_CMD, order_id, "ReleaseStock")
    assert release["payload"]["reason"] == "shipment_failed"
    assert (await d.wait_status(order_id, "rejected"))[-1] == ("rejected", "shipment_failed")
    await d.reply(release, INV_EV, r.released(release))
    await d.wait_state(order_id, "failed")


async def test_cancel_before_dispatch_cancels_shipments_and_releases_stock(orchestrator: Driver):
    d = orchestrator
    order_id, _, created = await to_dispatch(d)
    await d.wait_status(order_id, "confirmed")
    await d.cancel(order_id, "changed_mind")
    cancel = await d.command(FUL_CMD, order_id, "CancelShipments")
    assert cancel["payload"]["reason"] == "changed_mind"
    await d.reply(cancel, FUL_EV, r.shipments_cancelled(cancel, created))
    release = await d.command(INV_CMD, order_id, "ReleaseStock")
    assert (await d.wait_status(order_id, "cancelled"))[-1] == ("cancelled", "changed_mind")
    await d.reply(release, INV_EV, r.released(release))
    await d.wait_state(order_id, "cancelled")


async def test_cancel_after_dispatch_is_refused(orchestrator: Driver):
    d = orchestrator
    order_id, _, created = await to_dispatch(d)
    await d.send(FUL_EV, r.dispatched(created.shipments[0], order_id), order_id=order_id)
    await d.wait_status(order_id, "partially_shipped")
    await d.cancel(order_id)
    refused = await d.wait_sent(ORDERS_STATUS, order_id, "OrderCancellationRefused")
    assert refused[0]["payload"]["reason"] == "already_dispatched"
    assert refused[0]["payload"]["status"] == "partially_shipped"
    await d.readers[ORDERS_STATUS].drain(0.5)
    assert d.statuses(order_id)[-1] == ("partially_shipped", None)
    assert not d.sent(FUL_CMD, order_id, "CancelShipments") and not d.sent(INV_CMD, order_id, "ReleaseStock")


async def test_the_same_reply_twice_makes_one_transition(orchestrator: Driver):
    d = orchestrator
    order_id = await d.place()
    reserve = await d.command(INV_CMD, order_id, "ReserveStock")
    event = r.reserved(reserve)
    envs = await d.reply(reserve, INV_EV, event, event)  # the answer twice, with two event ids
    await d.resend(INV_EV, envs[:1])  # and the first one redelivered (same event id)
    await d.command(FUL_CMD, order_id, "CreateShipments")
    await d.wait_status(order_id, "confirmed")
    await d.readers[FUL_CMD].drain(1.0)
    await d.readers[ORDERS_STATUS].drain(0.1)
    assert len(d.sent(FUL_CMD, order_id, "CreateShipments")) == 1
    assert [s for s, _ in d.statuses(order_id)] == ["confirmed"]
    saga = await d.saga(order_id)
    assert [s["step"] for s in saga["steps"]].count("reserve_stock") == 1
    assert [n["disposition"] for n in saga["ignored_messages"]] == ["stale"]


async def test_saga_api_answers_not_found_and_needs_the_operator_token(orchestrator: Driver):
    async with httpx.AsyncClient(timeout=10) as client:
        missing = await client.get(f"{orchestrator.url}/v1/sagas/{uuid.uuid4()}", headers=orchestrator.headers)
        no_token = await client.get(f"{orchestrator.url}/v1/sagas")
        listed = await client.get(f"{orchestrator.url}/v1/sagas", params={"state": "completed", "limit": 1},
                                  headers=orchestrator.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert no_token.status_code == 401
    assert listed.status_code == 200 and set(listed.json()) == {"items", "next_cursor"}
    assert all(item["state"] == "completed" for item in listed.json()["items"])


async def test_sagas_are_listed_newest_first_a_page_at_a_time(orchestrator: Driver):
    d = orchestrator
    placed = []
    for _ in range(2):  # one after the other: the saga ids (UUIDv7) follow
        placed.append(await d.place())
        await d.command(INV_CMD, placed[-1], "ReserveStock")
    pages, cursor = [], None
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(2):
            params = {"state": "running", "limit": 1, **({"cursor": cursor} if cursor else {})}
            body = (await client.get(f"{d.url}/v1/sagas", params=params, headers=d.headers)).json()
            pages.append(body["items"])
            cursor = body["next_cursor"]
        bad = await client.get(f"{d.url}/v1/sagas", params={"cursor": "nonsense"}, headers=d.headers)
    assert [p[0]["order_id"] for p in pages] == [str(placed[1]), str(placed[0])]
    assert pages[0][0]["current_step"] == "reserve_stock" and "steps" not in pages[0][0]
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "cursor"


async def test_a_payment_the_saga_cannot_store_is_dead_lettered_and_the_partitions_move_on(orchestrator: Driver):
    """Issue 13, 2a: the reference goes into the step's detail, which PostgreSQL's jsonb refuses (\\u0000),
    so the batch's flush fails, not a handler. That message alone is retried and dead-lettered."""
    d = orchestrator
    poisoned, healthy = await d.place(payment="pending"), await d.place(payment="pending")
    for order_id in (poisoned, healthy):
        reserve = await d.command(INV_CMD, order_id, "ReserveStock")
        await d.reply(reserve, INV_EV, r.reserved(reserve))
        await d.wait_status(order_id, "awaiting_payment")
    dead = await TopicReader(d.bootstrap, d.prefix + dlq(BILLING_EVENTS)).start()
    try:
        bad = new_envelope(r.payment_confirmed(poisoned).model_copy(update={"reference": "pay\x00x"}),
                           producer="test", order_id=poisoned)
        good = new_envelope(r.payment_confirmed(healthy), producer="test", order_id=healthy)
        await d.resend(BILLING_EVENTS, [bad, good])  # one batch, the poisoned message first
        await d.wait_status(healthy, "confirmed", timeout=30)
        await dead.wait_for(lambda recs: any(orjson.loads(x.value)["event_id"] == str(bad.event_id) for x in recs))
        [record] = dead.records
        assert dict(record.headers)["dlq.error"].startswith(b"UntranslatableCharacterError")
    finally:
        await dead.stop()
    assert "confirmed" not in [s for s, _ in d.statuses(poisoned)]
    # The partition moved on: the order's next (good) payment is applied.
    await d.send(BILLING_EVENTS, r.payment_confirmed(poisoned), order_id=poisoned)
    await d.wait_status(poisoned, "confirmed", timeout=30)
