"""The engine's persistence on a real PostgreSQL (no broker): a transition round-trips through its
tables, and the deadline ticker skips sagas another transaction holds."""

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord

from oms_contracts import new_envelope
from oms_contracts.inventory import StockReservedV1
from oms_platform import db
from oms_platform.consumer import BatchProcessor
from oms_platform.outbox import Outbox
from oms_saga import MIGRATIONS, engine, store
from oms_saga.runner import SagaRunner
from oms_saga.state import Incoming
from orchestrator.consumers import saga_consumer
from orchestrator.domain import Deadlines, initial_data, order_saga
from tests.unit.saga.factory import dispatched, placed, saga_test, shipment_ids, to_dispatch
from tests.unit.saga.test_typed_data import LEGACY

pytestmark = pytest.mark.infra

SAGA = order_saga(Deadlines(step=1, attempts=2))


@pytest.fixture
async def saga_pool(fresh_db: str):
    pool = await db.create_pool(fresh_db, min_size=1, max_size=4)
    await db.migrate(pool, MIGRATIONS)  # the engine's own folder: the tables alone
    yield pool
    await pool.close()


async def _started(pool: asyncpg.Pool, now: datetime):
    order_id = uuid4()
    tr = engine.start(SAGA, None, order_id, initial_data(placed(order_id)), None, now)
    async with pool.acquire() as conn, conn.transaction():
        await store.save(conn, tr, now)
    return order_id, tr


async def test_a_saga_round_trips_with_its_history(saga_pool: asyncpg.Pool):
    now = datetime.now(UTC)
    order_id, tr = await _started(saga_pool, now)
    async with saga_pool.acquire() as conn, conn.transaction():
        loaded = await store.load(conn, "order", order_id)
    assert loaded == tr.state
    async with saga_pool.acquire() as conn:
        steps = await conn.fetch("SELECT step, kind, attempts, outcome FROM saga_steps ORDER BY seq")
    assert [tuple(s) for s in steps] == [("reserve_stock", "forward", 1, None)]


async def test_the_ticker_resends_due_commands_and_skips_locked_sagas(saga_pool: asyncpg.Pool):
    now = datetime.now(UTC) - timedelta(seconds=5)
    free_order, _ = await _started(saga_pool, now)
    held_order, _ = await _started(saga_pool, now)
    runner = SagaRunner(SAGA)
    async with saga_pool.acquire() as holder, holder.transaction():
        await store.load(holder, "order", held_order)  # a consumer holds this one
        assert await asyncio.wait_for(runner.tick(Outbox("orchestrator"), saga_pool), 5) == 1
    async with saga_pool.acquire() as conn:
        attempts = dict(await conn.fetch("SELECT order_id, attempts FROM saga_instances"))
        outbox = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'oms.inventory.commands'")
    assert attempts == {free_order: 2, held_order: 1}
    assert outbox == 1  # the resent ReserveStock, in the ticker's transaction
    assert await runner.tick(Outbox("orchestrator"), saga_pool) == 1  # released: its turn now


async def test_notes_are_kept_for_stale_replies(saga_pool: asyncpg.Pool):
    now = datetime.now(UTC)
    order_id, tr = await _started(saga_pool, now)
    event = StockReservedV1(order_id=order_id, reservation_id=uuid4(), allocations=[], strategy="s", reason="r")
    env = new_envelope(event, producer="inventory", order_id=order_id, causation_id=uuid4())  # not our command
    stale = engine.handle(SAGA, tr.state, Incoming.of(env, event), now)
    assert not stale.changed and stale.notes
    async with saga_pool.acquire() as conn, conn.transaction():
        await store.save(conn, stale, now)
    async with saga_pool.acquire() as conn:
        notes = await conn.fetch("SELECT event_type, event_id, disposition FROM saga_log")
    assert [tuple(n) for n in notes] == [("StockReserved", env.event_id, "stale")]


def _record(env, offset: int) -> ConsumerRecord:
    return ConsumerRecord("oms.fulfilment.events", 0, offset, 0, 0, str(env.order_id).encode(),
                          orjson.dumps(env.model_dump(mode="json")), None, 0, 0, [])


async def test_events_of_one_order_in_one_batch_build_on_each_other(saga_pool: asyncpg.Pool):
    """The batch's sagas are locked and read once (SagaBatch.load); the second dispatch of the batch
    sees the first one's effect."""
    t = to_dispatch(saga_test())  # a saga at await_dispatch with two shipments, decided in memory
    async with saga_pool.acquire() as conn, conn.transaction():
        for tr in t.history:
            await store.save(conn, tr, t.now)
    runner = SagaRunner(SAGA)
    processor = BatchProcessor(saga_consumer(runner), saga_pool, outbox=Outbox("orchestrator"), group_id="g")
    events = [dispatched(t, sid) for sid in shipment_ids(t)]
    envs = [new_envelope(e, producer="fulfilment", order_id=t.order_id) for e in events]
    await processor.process([_record(env, i) for i, env in enumerate(envs)])
    async with saga_pool.acquire() as conn:
        saga = await store.load(conn, "order", t.order_id)
        topics = [r["topic"] for r in await conn.fetch("SELECT topic FROM outbox ORDER BY id")]
    assert saga is not None and saga.step == "await_delivery" and saga.status == "shipped"
    assert topics.count("oms.inventory.commands") == 2 and topics.count("oms.billing.requests") == 4


async def test_a_batch_of_many_sagas_is_written_with_one_statement(saga_pool: asyncpg.Pool, monkeypatch):
    """Sagas are decided in memory event after event and written once per batch (SagaBatch.flush)."""
    sagas = [to_dispatch(saga_test()) for _ in range(5)]
    async with saga_pool.acquire() as conn, conn.transaction():
        for t in sagas:
            await store.save_many(conn, [store.Write.of(t.history, t.now)])
    calls = []
    save_params = store.save_params

    def counted(writes, checked):  # the parameters of the one write, optimistic (save_sql) or not
        writes = list(writes)
        calls.append(len(writes))
        return save_params(writes, checked)

    monkeypatch.setattr(store, "save_params", counted)
    runner = SagaRunner(SAGA)
    processor = BatchProcessor(saga_consumer(runner), saga_pool, outbox=Outbox("orchestrator"), group_id="g")
    envs = [new_envelope(dispatched(t, sid), producer="fulfilment", order_id=t.order_id)
            for t in sagas for sid in shipment_ids(t)]
    await processor.process([_record(env, i) for i, env in enumerate(envs)])
    assert calls == [5]  # ten events, five sagas, one statement
    async with saga_pool.acquire() as conn:
        states = {r["status"] for r in await conn.fetch("SELECT status FROM saga_instances")}
        rows = await conn.fetchval(
            "SELECT count(*) FROM saga_steps WHERE step = 'await_dispatch' AND outcome = 'succeeded'")
    assert states == {"shipped"} and rows == 5


async def test_an_event_retried_alone_keeps_nothing_of_its_failed_attempt(saga_pool: asyncpg.Pool, monkeypatch):
    """A handler fails once: the batch is applied again message by message; the failed attempt's
    in-memory decision is forgotten, so the retry applies the event once, from the stored state."""
    t = to_dispatch(saga_test())
    async with saga_pool.acquire() as conn, conn.transaction():
        await store.save_many(conn, [store.Write.of(t.history, t.now)])
    first, second = shipment_ids(t)
    runner = SagaRunner(SAGA)
    spec = saga_consumer(runner)
    handle, failed = spec.handlers["ShipmentDispatched"], []

    async def flaky(msg, uow):
        await handle(msg, uow)  # decides (and records the decision in memory), then fails
        if msg.payload.shipment_id == second and not failed:
            failed.append(1)
            raise RuntimeError("flaky")

    spec.handlers["ShipmentDispatched"] = flaky
    processor = BatchProcessor(spec, saga_pool, outbox=Outbox("orchestrator"), group_id="g", backoff=0.01)
    envs = [new_envelope(dispatched(t, sid), producer="fulfilment", order_id=t.order_id) for sid in (first, second)]
    await processor.process([_record(env, i) for i, env in enumerate(envs)])
    async with saga_pool.acquire() as conn:
        saga = await store.load(conn, "order", t.order_id)
        commits = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'oms.inventory.commands'")
        notes = await conn.fetchval("SELECT count(*) FROM saga_log")
    assert failed and saga is not None and saga.status == "shipped"
    assert saga.data["dispatched"] == [str(first), str(second)]
    assert commits == 2 and notes == 0  # one CommitStock per shipment; the retry was not taken for a duplicate


async def test_a_saga_stored_before_its_data_was_typed_goes_on(saga_pool: asyncpg.Pool):
    """A row whose data is the untyped saga's JSON (tests/unit/saga/test_typed_data.LEGACY) loads,
    takes the next dispatch, and is written back in the same shape: no migration is needed."""
    t = to_dispatch(saga_test())
    async with saga_pool.acquire() as conn, conn.transaction():
        for tr in t.history:
            await store.save(conn, tr, t.now)
        legacy = {**LEGACY, "dispatched": []}
        legacy["shipments"] = [{"shipment_id": str(sid), "location_id": loc}
                               for sid, loc in zip(shipment_ids(t), ["LIS", "OPO"], strict=True)]
        await conn.execute("UPDATE saga_instances SET data = $1::text::jsonb WHERE order_id = $2",
                           orjson.dumps(legacy).decode(), t.order_id)
    first = shipment_ids(t)[0]
    env = new_envelope(dispatched(t, first), producer="fulfilment", order_id=t.order_id)
    await BatchProcessor(saga_consumer(SagaRunner(SAGA)), saga_pool, outbox=Outbox("orchestrator"),
                         group_id="g").process([_record(env, 0)])
    async with saga_pool.acquire() as conn:
        saga = await store.load(conn, "order", t.order_id)
        billed = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = 'oms.billing.requests'")
    assert saga is not None and saga.status == "partially_shipped" and billed == 2
    assert saga.data == {**legacy, "dispatched": [str(first)], "total": None}  # total: added since


async def test_a_failing_deadline_is_deferred_then_flagged_and_holds_up_no_other(saga_pool: asyncpg.Pool):
    """Issue 13: sagas whose deadline decision keeps failing (here: data that no longer parses) were
    retried at every tick, first as the most overdue, and as many as a tick takes starved the rest."""
    now = datetime.now(UTC) - timedelta(seconds=5)
    bad = [(await _started(saga_pool, now - timedelta(seconds=1)))[0] for _ in range(3)]
    good, _ = await _started(saga_pool, now)
    await saga_pool.execute("UPDATE saga_instances SET data = '{}' WHERE order_id = ANY($1::uuid[])", bad)
    runner, outbox = SagaRunner(SAGA, max_deadline_failures=2, deadline_backoff=60), Outbox("orchestrator")
    for _ in range(2):  # a tick takes three: the bad ones first, then (deferred) no longer
        await runner.tick(outbox, saga_pool, limit=3)
    rows = {r["order_id"]: r for r in await saga_pool.fetch(
        "SELECT order_id, attempts, stuck, deadline_at, deadline_failures FROM saga_instances")}
    assert rows[good]["attempts"] == 2  # its ReserveStock was resent
    assert all(rows[b]["deadline_failures"] == 1 and not rows[b]["stuck"] for b in bad)
    assert all(rows[b]["deadline_at"] > datetime.now(UTC) + timedelta(seconds=30) for b in bad)  # backoff
    await saga_pool.execute("UPDATE saga_instances SET deadline_at = $2 WHERE order_id = ANY($1::uuid[])", bad, now)
    await runner.tick(outbox, saga_pool, limit=3)  # the second failure in a row: flagged for an operator
    async with saga_pool.acquire() as conn:
        assert await store.stuck_count(conn, "order") == 3
        assert await conn.fetchval("SELECT count(*) FROM saga_instances WHERE deadline_at IS NOT NULL "
                                   "AND order_id = ANY($1::uuid[])", bad) == 0
        notes = await conn.fetch("SELECT disposition, detail FROM saga_log WHERE event_type = 'deadline'")
    assert sorted(n["disposition"] for n in notes) == ["deadline_failed"] * 3 + ["deadline_failed_stuck"] * 3
    assert all("ValidationError" in n["detail"] for n in notes)
