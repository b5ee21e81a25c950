"""Crashes: the orchestrator killed (SIGKILL) inside a batch transaction and in the middle of a saga
carries on where it stopped after a restart, and never sends a command twice for one step attempt."""

from collections import Counter
from pathlib import Path

import pytest

from oms_contracts.topics import BILLING_REQUESTS, commands, events
from tests.integration.orchestrator import replies as r
from tests.integration.orchestrator.process import launch, shutdown
from tests.support.infra import Infra

pytestmark = pytest.mark.infra

INV_CMD, INV_EV = commands("inventory"), events("inventory")
FUL_CMD, FUL_EV = commands("fulfilment"), events("fulfilment")


async def test_killed_orchestrator_finishes_the_saga_without_duplicate_commands(infra: Infra, log_dir: Path):
    # Dies inside the transaction of the first batch it handles (the OrderPlaced): nothing committed.
    svc, d = await launch(infra, log_dir, {"OMS_FAULT": "saga.before_commit"}, start=False)
    try:
        order_id = await d.place()
        svc.start(wait=False)
        assert svc.wait_exit(timeout=60) == -9
        del svc.env["OMS_FAULT"]  # every later start runs without the crash point
        svc.start()
        reserve = await d.command(INV_CMD, order_id, "ReserveStock", timeout=30)
        await d.reply(reserve, INV_EV, r.reserved(reserve))
        create = await d.command(FUL_CMD, order_id, "CreateShipments")
        created = r.shipments_created(create)
        await d.reply(create, FUL_EV, created)
        await d.wait_status(order_id, "confirmed")
        await d.wait_state(order_id, "running")

        # Killed mid-saga; the carriers and warehouse go on meanwhile.
        svc.kill()
        first, second = created.shipments
        await d.send(FUL_EV, r.dispatched(first, order_id), r.dispatched(second, order_id), order_id=order_id)
        await d.send(events("tracking"), r.delivered(first, order_id), r.delivered(second, order_id),
                     order_id=order_id)
        svc.start()
        statuses = await d.wait_status(order_id, "delivered", timeout=40)
        assert [s for s, _ in statuses] == ["confirmed", "partially_shipped", "shipped", "delivered"]
        assert (await d.saga(order_id))["state"] == "completed"

        await d.wait_sent(INV_CMD, order_id, "CommitStock", 2)
        await d.wait_sent(BILLING_REQUESTS, order_id, "PaymentCaptureRequested", 2)
        await d.wait_sent(BILLING_REQUESTS, order_id, "InvoiceRequested", 2)
        for topic in (INV_CMD, FUL_CMD, BILLING_REQUESTS):
            await d.readers[topic].drain(0.5)  # anything sent twice would be here by now
        # One message per step attempt: a copy would carry a new event id (a relay's republish of the
        # same row keeps its id, which consumers' inboxes drop).
        for topic in (INV_CMD, FUL_CMD, BILLING_REQUESTS):
            sent = d.sent(topic, order_id)
            kinds = Counter((e["event_type"], e["payload"].get("shipment_id")) for e in {e["event_id"]: e
                                                                                         for e in sent}.values())
            assert all(n == 1 for n in kinds.values()), f"{topic}: {kinds}"
        assert len({e["event_id"] for e in d.sent(INV_CMD, order_id, "CommitStock")}) == 2
        assert len({e["event_id"] for e in d.sent(BILLING_REQUESTS, order_id)}) == 4
    finally:
        await shutdown(infra, svc, d)
