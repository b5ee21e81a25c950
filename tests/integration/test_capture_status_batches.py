"""Order capture follows oms.orders.status a batch at a time: per order the latest change wins, an
older one (redelivered or reordered) never overwrites a newer status, and a batch of many orders is
written with one statement (with its inbox claim, outside any transaction: the consumer is optimistic
and its write never conflicts)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import ConsumerRecord

import order_capture
from oms_contracts import new_envelope
from oms_contracts.orders import OrderStatusChangedV1
from oms_platform.consumer import BatchProcessor
from oms_platform.outbox import Outbox
from order_capture import consumers
from order_capture import repository as repo
from tests.integration.helpers import consumer_record, count_transactions, migrated_pool

pytestmark = pytest.mark.infra
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def capture_pool(fresh_db: str):
    async with migrated_pool(fresh_db, Path(order_capture.__file__).parent / "migrations") as pool:
        yield pool


async def _order(pool: asyncpg.Pool):
    order_id = uuid4()
    await pool.execute(
        """INSERT INTO orders (order_id, channel, external_id, customer_id, customer, shipping_address,
               shipping_method, currency, total, payment, lines, created_at, updated_at)
           VALUES ($1, 'web', $2, 'c', '{}', '{}', 'standard', 'EUR', 1, '{}', '[]', $3, $3)""",
        order_id, order_id.hex, T0,
    )
    return order_id


def _record(order_id, old, new, at, offset) -> ConsumerRecord:
    env = new_envelope(OrderStatusChangedV1(order_id=order_id, old_status=old, new_status=new, reason=None,
                                            changed_at=at), producer="orchestrator", order_id=order_id)
    return consumer_record("oms.orders.status", env, offset)


async def test_the_latest_change_per_order_wins_and_one_statement_writes_the_batch(capture_pool, monkeypatch):
    a, b = await _order(capture_pool), await _order(capture_pool)
    calls: list[int] = []
    part = repo.apply_statuses_part

    def counted(changes, first_param):
        calls.append(len(changes))
        return part(changes, first_param)

    monkeypatch.setattr(repo, "apply_statuses_part", counted)
    began = count_transactions(monkeypatch)
    processor = BatchProcessor(consumers.STATUS, capture_pool, outbox=Outbox("order-capture"), group_id="g")
    await processor.process([
        _record(a, "pending", "confirmed", T0 + timedelta(seconds=1), 0),
        _record(b, "pending", "rejected", T0 + timedelta(seconds=1), 1),
        _record(a, "confirmed", "shipped", T0 + timedelta(seconds=3), 2),
        _record(a, "confirmed", "partially_shipped", T0 + timedelta(seconds=2), 3),  # older, arrives later
    ])
    assert calls == [2] and began == []
    rows = dict(await capture_pool.fetch("SELECT order_id, status FROM orders"))
    assert rows == {a: "shipped", b: "rejected"}
    # A redelivered older change (a new event id: the inbox does not catch it) changes nothing.
    await processor.process([_record(a, "pending", "confirmed", T0 + timedelta(seconds=1), 4)])
    assert await capture_pool.fetchval("SELECT status FROM orders WHERE order_id = $1", a) == "shipped"
