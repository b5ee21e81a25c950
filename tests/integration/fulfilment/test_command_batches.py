"""Fulfilment applies a Kafka batch of commands with one read of its orders' state and one INSERT of
every shipment the batch creates; commands of the same order inside one batch still see each other
(a repeat finds the shipments just made, a cancel cancels them, a create after a cancel makes none)."""

from pathlib import Path
from uuid import UUID

import asyncpg
import pytest
from aiokafka import ConsumerRecord

import fulfilment
from fulfilment import consumers
from fulfilment import repository as repo
from fulfilment.domain import DEFAULT_RULES
from fulfilment.handlers import Fulfilment
from oms_carriers.carriers import BuiltinCarrier, Carriers, SerialBlocks
from oms_contracts import new_envelope
from oms_platform.consumer import BatchProcessor
from oms_platform.ids import uuid7
from oms_platform.outbox import Outbox
from tests.integration.fulfilment.support import cancel_command, create_command
from tests.integration.helpers import consumer_record, count_calls, migrated_pool, outbox_by_cause

pytestmark = pytest.mark.infra


@pytest.fixture
async def pool(fresh_db: str):
    async with migrated_pool(fresh_db, Path(fulfilment.__file__).parent / "migrations") as pool:
        yield pool


@pytest.fixture
def processor(pool: asyncpg.Pool) -> BatchProcessor:
    serials = SerialBlocks(lambda n: repo.next_tracking_serials(pool, n), size=10)
    carriers = Carriers([BuiltinCarrier(name, serials) for name in ("oms-post", "oms-express")])
    service = Fulfilment(DEFAULT_RULES, carriers, outbox=Outbox("fulfilment"), sender_name="OMS")
    return BatchProcessor(consumers.command_consumer(service), pool, outbox=Outbox("fulfilment"), group_id="g")


def _record(command, offset: int) -> tuple[ConsumerRecord, UUID]:
    env = new_envelope(command, producer="orchestrator", order_id=command.order_id)
    return consumer_record("oms.fulfilment.commands", env, offset), env.event_id


async def _replies(pool: asyncpg.Pool) -> dict[UUID, dict]:
    return await outbox_by_cause(pool, "oms.fulfilment.events")


async def test_a_batch_reads_its_orders_once_and_writes_its_shipments_in_one_statement(
    pool, processor, monkeypatch
):
    calls = count_calls(monkeypatch, repo, "insert_shipments")
    orders = [uuid7() for _ in range(3)]
    batch = [_record(create_command(o, locations=("LIS-DC", "POR-DC")), i) for i, o in enumerate(orders)]
    await processor.process([rec for rec, _ in batch])

    assert calls == [6]  # three orders, two shipments each: one INSERT at the batch's end
    replies = await _replies(pool)
    numbers = set()
    for _, event_id in batch:
        assert replies[event_id]["event_type"] == "ShipmentsCreated"
        numbers |= {s["tracking_number"] for s in replies[event_id]["payload"]["shipments"]}
    assert len(numbers) == 6
    stored = await pool.fetch("SELECT order_id, tracking_number, status FROM shipments")
    assert {r["tracking_number"] for r in stored} == numbers and {r["status"] for r in stored} == {"created"}


async def test_commands_of_one_order_in_one_batch_see_each_other(pool, processor):
    repeated, cancelled_after, cancelled_before = uuid7(), uuid7(), uuid7()
    first, first_id = _record(create_command(repeated, locations=("LIS-DC", "POR-DC")), 0)
    again, again_id = _record(create_command(repeated, locations=("LIS-DC", "POR-DC")), 1)  # a saga resend
    made, _ = _record(create_command(cancelled_after), 2)
    cancel, cancel_id = _record(cancel_command(cancelled_after), 3)
    early_cancel, _ = _record(cancel_command(cancelled_before), 4)
    late_create, late_id = _record(create_command(cancelled_before), 5)
    await processor.process([first, again, made, cancel, early_cancel, late_create])

    replies = await _replies(pool)
    # The resend answers the shipments the first command made in the same batch: no second set.
    assert replies[again_id]["payload"]["shipments"] == replies[first_id]["payload"]["shipments"]
    assert await pool.fetchval("SELECT count(*) FROM shipments WHERE order_id = $1", repeated) == 2
    # A cancel after a create in the same batch cancels the shipment just made.
    assert replies[cancel_id]["event_type"] == "ShipmentsCancelled"
    assert len(replies[cancel_id]["payload"]["shipment_ids"]) == 1
    assert await pool.fetchval("SELECT status FROM shipments WHERE order_id = $1", cancelled_after) == "cancelled"
    # A create after a cancel in the same batch makes nothing.
    assert replies[late_id]["event_type"] == "ShipmentCreationFailed"
    assert replies[late_id]["payload"]["reason"] == "order_cancelled"
    assert await pool.fetchval("SELECT count(*) FROM shipments WHERE order_id = $1", cancelled_before) == 0
