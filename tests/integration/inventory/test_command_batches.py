"""Inventory applies a Kafka batch of ReserveStock commands with one read of their stock (locked) and
one statement storing every outcome; each command still sees the units the earlier ones took, and any
other command in the batch (release, restock...) finds in the database what the earlier ones decided."""

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import asyncpg
import pytest
from aiokafka import ConsumerRecord

import inventory
from inventory import consumers
from inventory import repository as repo
from oms_platform.consumer import BatchProcessor
from oms_platform.ids import uuid7
from oms_platform.outbox import Outbox
from tests.integration.helpers import consumer_record, count_calls, migrated_pool, outbox_by_cause
from tests.integration.inventory.support import envelope, release_command, reserve_command, restock_command

pytestmark = pytest.mark.infra


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(fresh_db, Path(inventory.__file__).parent / "migrations") as p:
        await p.execute("INSERT INTO locations (location_id, name, country) VALUES ('L1', 'L1', 'PT'), "
                        "('L2', 'L2', 'ES')")
        await p.execute("INSERT INTO stock (sku, location_id, on_hand) VALUES ('HOT', 'L1', 5), ('HOT', 'L2', 3), "
                        "('COLD', 'L1', 100)")
        yield p


@pytest.fixture
def processor(pool: asyncpg.Pool) -> BatchProcessor:
    spec = consumers.commands_consumer(backorder_scan_limit=100)
    return BatchProcessor(spec, pool, outbox=Outbox("inventory"), group_id="g")


def _record(command, offset: int) -> tuple[ConsumerRecord, UUID]:
    env = envelope(command)
    return consumer_record("oms.inventory.commands", env, offset), env.event_id


async def _replies(pool: asyncpg.Pool) -> dict[UUID, dict]:
    return await outbox_by_cause(pool, "oms.inventory.events")


async def _reserved(pool: asyncpg.Pool, sku: str) -> int:
    return await pool.fetchval("SELECT coalesce(sum(reserved), 0) FROM stock WHERE sku = $1", sku)


async def test_a_batch_of_reservations_for_the_last_units_grants_exactly_the_stock_in_one_write(
    pool, processor, monkeypatch
):
    writes = count_calls(monkeypatch, repo, "insert_reservations")
    batch = [_record(reserve_command(uuid7(), {"HOT": 1}, "PT" if i % 2 else "ES"), i) for i in range(11)]
    await processor.process([rec for rec, _ in batch])

    assert writes == [11]  # eleven outcomes, one statement
    replies = await _replies(pool)
    outcomes = [replies[event_id]["event_type"] for _, event_id in batch]
    assert outcomes == ["StockReserved"] * 8 + ["StockReservationFailed"] * 3  # in arrival order
    assert await _reserved(pool, "HOT") == 8
    assert await pool.fetchval("SELECT min(on_hand - reserved) FROM stock") == 0
    stored = await pool.fetch("SELECT status, count(*) FROM reservations GROUP BY status ORDER BY status")
    assert [tuple(r) for r in stored] == [("failed", 3), ("reserved", 8)]
    # Each reply names the units its own reservation holds, and together they are exactly the stock.
    allocated = [a for _, e in batch[:8] for a in replies[e]["payload"]["allocations"]]
    assert sorted((a["location_id"], a["quantity"]) for a in allocated) == [("L1", 1)] * 5 + [("L2", 1)] * 3


async def test_other_commands_and_repeats_in_a_batch_see_what_earlier_reservations_decided(pool, processor):
    a, b, c, d = uuid7(), uuid7(), uuid7(), uuid7()
    reserve_a, reserve_a_id = _record(reserve_command(a, {"COLD": 60}), 0)
    again_a, again_a_id = _record(reserve_command(a, {"COLD": 60}), 1)  # a saga resend: same outcome
    release_a, release_a_id = _record(release_command(a), 2)
    reserve_b, reserve_b_id = _record(reserve_command(b, {"COLD": 70}), 3)  # fits only once A let go
    reserve_c, reserve_c_id = _record(reserve_command(c, {"HOT": 9}), 4)  # 8 in stock: refused
    restock, _ = _record(restock_command(uuid7(), "L1", {"HOT": 1}), 5)
    reserve_d, reserve_d_id = _record(reserve_command(d, {"HOT": 9}), 6)  # fits after the restock
    await processor.process([reserve_a, again_a, release_a, reserve_b, reserve_c, restock, reserve_d])

    replies = await _replies(pool)
    assert replies[reserve_a_id]["event_type"] == replies[again_a_id]["event_type"] == "StockReserved"
    assert replies[again_a_id]["payload"] == replies[reserve_a_id]["payload"]
    assert replies[release_a_id]["event_type"] == "StockReleased"
    assert replies[release_a_id]["payload"]["released"] == [{"location_id": "L1", "sku": "COLD", "quantity": 60}]
    assert replies[reserve_b_id]["event_type"] == "StockReserved"
    assert replies[reserve_c_id]["event_type"] == "StockReservationFailed"
    assert replies[reserve_d_id]["event_type"] == "StockReserved"
    assert await _reserved(pool, "COLD") == 70 and await _reserved(pool, "HOT") == 9
    statuses = dict(await pool.fetch("SELECT order_id, status FROM reservations WHERE order_id = ANY($1)",
                                     [a, b, c, d]))
    assert statuses == {a: "released", b: "reserved", c: "failed", d: "reserved"}
