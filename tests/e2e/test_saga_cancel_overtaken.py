"""A cancellation that overtakes shipment creation, then a refused shipment cancellation, every service a
real process: the saga was compensating when ShipmentsCreated and ShipmentDispatched came, fulfilment
refuses to cancel a dispatched shipment, and the order goes on (shipped, then delivered) instead of
the saga being stuck.

The interleaving is forced with crash points (OMS_FAULT=relay.before_publish: the process SIGKILLs
itself when its relay is about to publish, its messages committed in its outbox): fulfilment's
ShipmentsCreated is held back until the saga has turned to compensating, and the orchestrator's
CancelShipments until the shipment has been dispatched."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.system import System, unique

pytestmark = pytest.mark.infra

HOLD = {"OMS_FAULT": "relay.before_publish"}


@pytest.fixture(scope="module")
async def system(infra, log_dir) -> AsyncIterator[System]:
    # No step deadline while a participant is held back: the saga would send its command again.
    system = await System.start(infra, log_dir, env={"orchestrator": {"STEP_TIMEOUT_SECONDS": "600"}})
    yield system
    await system.stop()


async def exited(system: System, service: str) -> None:
    code = await asyncio.to_thread(system.services[service].wait_exit, 90)
    assert code == -9, f"{service} exited with {code}"  # its crash point, not another failure


async def test_cancel_overtaking_shipment_creation_then_refused_resumes_the_order(system: System):
    sku, loc = unique("TEE"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 5)

    # 1. Fulfilment creates the shipment, and dies before its ShipmentsCreated is published.
    await system.restart("fulfilment", **HOLD)
    order_id = await system.place({sku: 1}, unit_price="12.50")
    await exited(system, "fulfilment")

    # 2. The saga, still awaiting shipments, takes the cancellation and turns to compensating; the
    #    orchestrator dies before its CancelShipments is published.
    await system.restart("orchestrator", **HOLD)
    await system.cancel(order_id)
    await exited(system, "orchestrator")

    # 3. Fulfilment back: ShipmentsCreated goes out (to a saga that is compensating), and the warehouse
    #    dispatches the shipment before any cancellation reached fulfilment.
    await system.restart("fulfilment")
    [shipment] = await system.wait_shipments(order_id, 1)
    await system.dispatch(shipment["shipment_id"])

    # 4. The orchestrator back: CancelShipments goes out and is refused (already dispatched). The saga
    #    learns the shipments from the refusal and applies the dispatch it remembered.
    await system.restart("orchestrator")
    status_events = system.status_events
    assert status_events is not None
    [refusal] = await system.wait_published(status_events, order_id, "OrderCancellationRefused")
    assert refusal["payload"]["reason"] == "already_dispatched"
    await system.wait_status(order_id, "shipped")
    saga = await system.saga(order_id)
    assert (saga["state"], saga["current_step"], saga["stuck"]) == ("running", "await_delivery", False)
    assert [(s["step"], s["outcome"]) for s in saga["steps"]][-3:] == [
        ("cancel_shipments", "refused"), ("await_dispatch", "succeeded"), ("await_delivery", None)]

    # The dispatched shipment is billed and its stock committed, once; then it is delivered.
    billing = system.billing_requests
    assert billing is not None
    [capture] = await system.wait_published(billing, order_id, "PaymentCaptureRequested")
    assert capture["payload"]["amount"] == "12.50"
    await system.wait_stock(sku, on_hand=4, reserved=0)
    await system.deliver(shipment)
    await system.wait_status(order_id, "delivered")
    await billing.drain(0.5)
    assert len(system.published(billing, order_id, "PaymentCaptureRequested")) == 1
