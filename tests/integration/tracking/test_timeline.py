"""Tracking's consumer and live-stream listener on a real PostgreSQL: a Kafka batch of the OMS's events
becomes timeline entries, statuses and shipments in a few set-based statements; a redelivery adds
nothing; late events do not move an order or a shipment back; and a timeline insert committed on any
connection wakes the streams of that order, also after the listener lost its connection."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

import tracking
from oms_contracts import new_envelope, orders
from oms_contracts.fulfilment import ShipmentDispatchedV1, ShipmentInfo, ShipmentsCreatedV1, ShipmentStatusChangedV1
from oms_contracts.inventory import StockLine
from oms_platform.consumer import BatchProcessor
from oms_platform.outbox import Outbox
from tests.integration.helpers import consumer_record, count_calls, migrated_pool
from tests.support.polling import eventually
from tests.unit.saga.factory import placed
from tracking import repository as repo
from tracking.consumers import timeline_consumer
from tracking.domain import Entry
from tracking.handlers import Tracking
from tracking.stream import APPLICATION_NAME, TimelineListener

pytestmark = pytest.mark.infra
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
async def pool(fresh_db: str):
    async with migrated_pool(fresh_db, Path(tracking.__file__).parent / "migrations") as pool:
        yield pool


def processor(pool: asyncpg.Pool, group: str = "tracking.timeline") -> BatchProcessor:
    service = Tracking(outbox=Outbox("tracking"), link_secret="s", public_url="http://t")
    return BatchProcessor(timeline_consumer(service), pool, outbox=Outbox("tracking"), group_id=group)


def status(order_id: UUID, old: str | None, new: str, minutes: int) -> orders.OrderStatusChangedV1:
    return orders.OrderStatusChangedV1(order_id=order_id, old_status=old, new_status=new,
                                       changed_at=T0 + timedelta(minutes=minutes))


def journey(order_id: UUID, shipment_id: UUID) -> list:
    line = StockLine(sku="TEE", quantity=1)
    return [
        ("oms.orders.events", placed(order_id)),
        ("oms.orders.status", status(order_id, "pending", "confirmed", 1)),
        ("oms.fulfilment.events", ShipmentsCreatedV1(order_id=order_id, shipments=[ShipmentInfo(
            shipment_id=shipment_id, location_id="LIS", lines=[line], carrier="oms-post", service="standard",
            tracking_number="OMS1PT")])),
        ("oms.fulfilment.events", ShipmentDispatchedV1(
            order_id=order_id, shipment_id=shipment_id, location_id="LIS", lines=[line], carrier="oms-post",
            service="standard", tracking_number="OMS1PT", dispatched_at=T0)),
        # Late: a packed after the dispatch, a status older than the one shown.
        ("oms.fulfilment.events", ShipmentStatusChangedV1(order_id=order_id, shipment_id=shipment_id,
                                                          old_status="picked", new_status="packed", at=T0)),
        ("oms.orders.status", status(order_id, "confirmed", "shipped", 3)),
        ("oms.orders.status", status(order_id, "pending", "confirmed", 1)),
    ]


def records(events: list, first_offset: int = 0) -> list:
    out = []
    for i, (topic, event) in enumerate(events):
        env = new_envelope(event, producer="test", order_id=event.order_id)
        out.append(consumer_record(topic, env, first_offset + i))
    return out


async def test_a_batch_is_written_set_based_and_late_events_move_nothing_back(pool, monkeypatch):
    calls = count_calls(monkeypatch, repo, "insert_entries")
    order_id, shipment_id = uuid4(), uuid4()
    batch = records(journey(order_id, shipment_id))
    await processor(pool).process(batch)

    assert calls == [7]  # one statement for the batch's entries
    async with pool.acquire() as conn:
        view = await Tracking(outbox=Outbox("t"), link_secret="s", public_url="http://t").load(conn, order_id, None)
    assert view["channel"] == "web" and view["status"] == "shipped"
    assert view["shipments"][0]["status"] == "dispatched"
    assert [e["type"] for e in view["timeline"]].count("OrderStatusChanged") == 3
    assert "ana@example.com" not in str(view) and "Rua Augusta" not in str(view)

    # Redelivered to the same group: the inbox drops it. Replayed to another group (a reset offset):
    # the entries' unique event ids keep the timeline as it was.
    await processor(pool).process(batch)
    await processor(pool, "tracking.replay").process(batch)
    assert await pool.fetchval("SELECT count(*) FROM timeline WHERE order_id = $1", order_id) == 7


async def test_the_higher_status_sequence_wins_whatever_the_clocks(pool):
    """Statuses numbered by the orchestrator: the final one, stamped earlier by another process's clock,
    arrives first (its own batch) and then with the earlier one in a batch: it stays."""
    order_id = uuid4()

    def numbered(old: str, new: str, minutes: int, sequence: int) -> orders.OrderStatusChangedV1:
        return status(order_id, old, new, minutes).model_copy(update={"sequence": sequence})

    await processor(pool).process(records([("oms.orders.events", placed(order_id)),
                                           ("oms.orders.status", numbered("confirmed", "cancelled", 1, 2))]))
    await processor(pool).process(records([("oms.orders.status", numbered("pending", "confirmed", 5, 1))], 2))
    await processor(pool).process(records([("oms.orders.status", numbered("confirmed", "cancelled", 1, 2)),
                                           ("oms.orders.status", numbered("pending", "confirmed", 5, 1))], 3))
    async with pool.acquire() as conn:
        view = await Tracking(outbox=Outbox("t"), link_secret="s", public_url="http://t").load(conn, order_id, None)
    assert view["status"] == "cancelled"


async def test_an_insert_on_any_connection_wakes_the_orders_streams_also_after_a_lost_connection(
    pool, fresh_db: str
):
    listener = TimelineListener(fresh_db, keepalive=0.5)
    await listener.start()
    order_id, other_order = uuid4(), uuid4()
    wake, other = listener.add(order_id), listener.add(other_order)
    try:
        await eventually(lambda: _true(listener.connected), what="the listener to connect")
        wake.clear(), other.clear()

        async def insert() -> None:
            async with pool.acquire() as conn, conn.transaction():
                await repo.insert_entries(conn, [Entry(uuid4(), order_id, T0, "Test", "detail")])

        await insert()
        await asyncio.wait_for(wake.wait(), 5)
        assert not other.is_set()  # only the streams of that order wake

        # The database drops the listener's connection: it reconnects and wakes every stream.
        wake.clear()
        killed = await pool.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE application_name = $1 AND datname = current_database()",
                                     APPLICATION_NAME)
        assert killed == 1
        await asyncio.wait_for(other.wait(), 15)
        await eventually(lambda: _true(listener.connected), what="the listener to reconnect")
        wake.clear()
        await insert()
        await asyncio.wait_for(wake.wait(), 5)
    finally:
        listener.remove(order_id, wake)
        listener.remove(other_order, other)
        await listener.stop()
    assert listener.subscribers() == 0


async def _true(value: bool) -> bool:
    return value

