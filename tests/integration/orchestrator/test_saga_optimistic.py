"""The order saga's consumer writes optimistically (ConsumerSpec.optimistic, SagaBatch.read/write_sql):
its sagas read without locks or a transaction, then one statement with the sagas, the outbox rows and
the inbox claim, undone when a saga was written meanwhile or an event was applied before; the batch is
then applied in a transaction (locks, claim first). Real PostgreSQL, no broker."""

from typing import Any
from uuid import UUID

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord

from oms_contracts import new_envelope
from oms_platform import db, metrics
from oms_platform.consumer import BatchProcessor
from oms_platform.outbox import Outbox
from oms_saga import MIGRATIONS, store
from oms_saga.runner import SagaRunner
from orchestrator.consumers import saga_consumer
from orchestrator.domain import Deadlines, order_saga
from tests.integration.helpers import count_transactions
from tests.unit.saga.factory import dispatched, saga_test, shipment_ids, to_dispatch

pytestmark = pytest.mark.infra

SAGA = order_saga(Deadlines(step=1, attempts=2))


@pytest.fixture
async def saga_pool(fresh_db: str):
    pool = await db.create_pool(fresh_db, min_size=1, max_size=4)
    await db.migrate(pool, MIGRATIONS)
    yield pool
    await pool.close()


def _record(env, offset: int) -> ConsumerRecord:
    return ConsumerRecord("oms.fulfilment.events", 0, offset, 0, 0, str(env.order_id).encode(),
                          orjson.dumps(env.model_dump(mode="json")), None, 0, 0, [])


async def _dispatch_batch(pool: asyncpg.Pool) -> tuple[Any, list[ConsumerRecord]]:
    """A saga waiting for its two shipments' dispatch, stored, and the batch reporting both."""
    t = to_dispatch(saga_test())
    async with pool.acquire() as conn, conn.transaction():
        await store.save_many(conn, [store.Write.of(t.history, t.now)])
    envs = [new_envelope(dispatched(t, sid), producer="fulfilment", order_id=t.order_id) for sid in shipment_ids(t)]
    return t, [_record(env, i) for i, env in enumerate(envs)]


async def _outcome(pool: asyncpg.Pool, order_id: UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        saga = await store.load(conn, "order", order_id)
        topics = [r["topic"] for r in await conn.fetch("SELECT topic FROM outbox ORDER BY id")]
        claimed = await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'g'")
    assert saga is not None
    return {"step": saga.step, "status": saga.status, "version": saga.version, "claimed": claimed,
            "commands": topics.count("oms.inventory.commands"), "billing": topics.count("oms.billing.requests")}


def _processor(pool: asyncpg.Pool) -> BatchProcessor:
    spec = saga_consumer(SagaRunner(SAGA))
    assert spec.optimistic
    return BatchProcessor(spec, pool, outbox=Outbox("orchestrator"), group_id="g")


def _conflicts() -> float:
    return metrics.CONSUMER_CONFLICTS.labels("saga")._value.get()


async def test_a_batch_is_written_by_one_statement_without_a_transaction(saga_pool: asyncpg.Pool, monkeypatch):
    t, records = await _dispatch_batch(saga_pool)
    began = count_transactions(monkeypatch)
    before = _conflicts()
    await _processor(saga_pool).process(records)
    assert began == [] and _conflicts() == before
    assert await _outcome(saga_pool, t.order_id) == {
        "step": "await_delivery", "status": "shipped", "version": 1, "claimed": 2, "commands": 2, "billing": 4}


async def test_a_saga_written_after_the_read_undoes_the_batch_which_is_applied_again(
        saga_pool: asyncpg.Pool, monkeypatch):
    t, records = await _dispatch_batch(saga_pool)
    read_many = store.read_many

    async def read_then_written(conn, saga_type, order_ids):
        found = await read_many(conn, saga_type, order_ids)
        async with saga_pool.acquire() as other:  # another writer (a ticker, a replica) comes first
            await other.execute("UPDATE saga_instances SET version = version + 1 WHERE order_id = ANY($1::uuid[])",
                                order_ids)
        return found

    monkeypatch.setattr(store, "read_many", read_then_written)
    before = _conflicts()
    await _processor(saga_pool).process(records)
    assert _conflicts() == before + 1
    # Applied once, in the transaction that followed: the other writer's version, then this batch's.
    assert await _outcome(saga_pool, t.order_id) == {
        "step": "await_delivery", "status": "shipped", "version": 2, "claimed": 2, "commands": 2, "billing": 4}


async def test_a_redelivered_batch_conflicts_on_its_claim_and_has_no_second_effect(saga_pool: asyncpg.Pool):
    t, records = await _dispatch_batch(saga_pool)
    processor = _processor(saga_pool)
    await processor.process(records)
    first = await _outcome(saga_pool, t.order_id)
    before = _conflicts()
    await processor.process(records)
    assert _conflicts() == before + 1
    assert await _outcome(saga_pool, t.order_id) == first


async def test_every_other_write_of_a_saga_row_raises_its_version(saga_pool: asyncpg.Pool):
    """A failed deadline decision and the status after the order's returns write the row outside
    save_many: they raise the version too, so an optimistic batch that read the saga before is undone."""
    from orchestrator import repository as orchestrator_repo

    t, _ = await _dispatch_batch(saga_pool)
    async with saga_pool.acquire() as conn:
        saga = await store.load(conn, "order", t.order_id)
        assert saga is not None
        await store.deadline_failed(conn, [(saga.saga_id, "boom")], t.now, max_failures=5, backoff=1.0)
        await orchestrator_repo.set_status(conn, saga.saga_id, "returned", 9)
        after = await store.load(conn, "order", t.order_id)
    assert after is not None and after.version == saga.version + 2
