"""Deadlines through a real orchestrator with short timeouts: a command with no reply is sent again
and then compensated, a payment that never comes cancels the order, a dispatch that never comes
flags the saga stuck."""

import asyncio
import re

import httpx
import pytest

from oms_contracts.topics import commands, events
from tests.integration.orchestrator import replies as r
from tests.integration.orchestrator.driver import Driver

pytestmark = pytest.mark.infra

INV_CMD, INV_EV = commands("inventory"), events("inventory")
FUL_CMD, FUL_EV = commands("fulfilment"), events("fulfilment")
ORCHESTRATOR_ENV = {"STEP_TIMEOUT_SECONDS": "1.5", "STEP_MAX_ATTEMPTS": "2", "PAYMENT_TIMEOUT_SECONDS": "2",
                    "DISPATCH_TIMEOUT_SECONDS": "2"}


async def test_no_reply_is_sent_again_then_compensated(orchestrator: Driver):
    d = orchestrator
    order_id = await d.place()
    first, second = await d.wait_sent(INV_CMD, order_id, "ReserveStock", 2, timeout=10)
    assert first["event_id"] != second["event_id"] and first["payload"] == second["payload"]
    release = await d.command(INV_CMD, order_id, "ReleaseStock")
    assert release["payload"]["reason"] == "inventory_timeout"
    assert (await d.wait_status(order_id, "rejected"))[-1] == ("rejected", "inventory_timeout")
    assert len(d.sent(INV_CMD, order_id, "ReserveStock")) == 2  # STEP_MAX_ATTEMPTS sends, no more
    await d.reply(release, INV_EV, r.released(release))
    saga = await d.wait_state(order_id, "failed")
    reserve = next(s for s in saga["steps"] if s["step"] == "reserve_stock")
    assert reserve["outcome"] == "timed_out" and reserve["attempts"] == 2


async def test_payment_timeout_cancels_and_releases_stock(orchestrator: Driver):
    d = orchestrator
    order_id = await d.place(payment="pending")
    reserve = await d.command(INV_CMD, order_id, "ReserveStock")
    await d.reply(reserve, INV_EV, r.reserved(reserve))
    await d.wait_status(order_id, "awaiting_payment")
    release = await d.command(INV_CMD, order_id, "ReleaseStock")
    assert release["payload"]["reason"] == "payment_timeout"
    assert (await d.wait_status(order_id, "cancelled"))[-1] == ("cancelled", "payment_timeout")
    assert not d.sent(FUL_CMD, order_id)
    await d.reply(release, INV_EV, r.released(release))
    await d.wait_state(order_id, "cancelled")


async def test_dispatch_deadline_flags_the_saga_stuck(orchestrator: Driver):
    d = orchestrator
    order_id = await d.place()
    reserve = await d.command(INV_CMD, order_id, "ReserveStock")
    await d.reply(reserve, INV_EV, r.reserved(reserve))
    create = await d.command(FUL_CMD, order_id, "CreateShipments")
    await d.reply(create, FUL_EV, r.shipments_created(create))
    saga = await d.wait_state(order_id, "running")
    for _ in range(50):
        saga = await d.saga(order_id)
        if saga["stuck"]:
            break
        await asyncio.sleep(0.1)
    assert saga["stuck"] and saga["current_step"] == "await_dispatch"
    assert not d.sent(FUL_CMD, order_id, "CancelShipments")  # goods may be moving: nothing undone
    async with httpx.AsyncClient(timeout=10) as client:
        listed = await client.get(f"{d.url}/v1/sagas", params={"stuck": "true"}, headers=d.headers)
        metrics = await client.get(f"{d.url}/metrics")
    assert str(order_id) in [item["order_id"] for item in listed.json()["items"]]
    stuck = re.search(r'^oms_saga_stuck\{saga_type="order"\} (\S+)$', metrics.text, re.M)
    assert stuck and float(stuck.group(1)) >= 1
