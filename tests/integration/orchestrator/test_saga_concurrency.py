"""Two orchestrator processes on the same orders (a rebalance hands a partition over while its old owner
is still applying a batch) on a real PostgreSQL: each order gets one saga and each command is sent once,
and neither batch fails, whether both create the sagas or one claims its events first (a redelivery, a
replay) while the other claims them at the end (the fast path): one lock order everywhere."""

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord

from oms_contracts import new_envelope
from oms_contracts.orders import OrderCancellationRequestedV1
from oms_platform import db
from oms_platform.consumer import BatchProcessor, ConsumerSpec, Message, UnitOfWork
from oms_platform.inbox import REPLAY_HEADER
from oms_platform.outbox import Outbox
from oms_saga import MIGRATIONS
from oms_saga.runner import SagaRunner
from orchestrator.consumers import saga_consumer
from orchestrator.domain import order_saga
from tests.integration.helpers import consumer_record
from tests.unit.saga.factory import placed

pytestmark = pytest.mark.infra

GROUP = "orchestrator.saga"


@pytest.fixture
async def pool(fresh_db: str):
    pool = await db.create_pool(fresh_db, min_size=2, max_size=6)
    await db.migrate(pool, None, [("saga", MIGRATIONS)])
    yield pool
    await pool.close()


def processor(pool: asyncpg.Pool, *, held: asyncio.Event | None = None, release: asyncio.Event | None = None,
              optimistic: bool = True) -> BatchProcessor:
    """The orchestrator's saga consumer; with `held`/`release`, its first handler call of a batch says
    it got there (the batch's locks taken, or its sagas read when optimistic) and waits to be released."""
    spec = saga_consumer(SagaRunner(order_saga()))
    if held is not None and release is not None:
        spec = ConsumerSpec(spec.name, spec.topics, {t: _held(h, held, release) for t, h in spec.handlers.items()},
                            spec.batch_state, optimistic=optimistic)
    return BatchProcessor(spec, pool, outbox=Outbox("orchestrator"), group_id=GROUP, backoff=0.01)


def _held(handler: Callable[[Message, UnitOfWork[Any]], Awaitable[None]], held: asyncio.Event,
          release: asyncio.Event) -> Callable[[Message, UnitOfWork[Any]], Awaitable[None]]:
    async def wrapped(msg: Message, uow: UnitOfWork[Any]) -> None:
        if not held.is_set():
            held.set()
            await release.wait()
        await handler(msg, uow)

    return wrapped


def isolated_runs(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """A batch run message by message: the path of a batch whose fast or claim-first run failed (e.g.
    on a unique index, or as a deadlock's victim)."""
    runs: list[bool] = []
    original = BatchProcessor._run

    async def spied(self: BatchProcessor, parsed: Any, *, isolate: bool, **kwargs: Any) -> None:
        if isolate:
            runs.append(True)
        return await original(self, parsed, isolate=isolate, **kwargs)

    monkeypatch.setattr(BatchProcessor, "_run", spied)
    return runs


async def run_both(first: Awaitable[None], held: asyncio.Event, release: asyncio.Event,
                   second: Callable[[], Awaitable[None]]) -> None:
    """`first` until its batch holds its locks, then `second` meanwhile; `first` goes on a moment later."""
    one = asyncio.create_task(first)
    await asyncio.wait_for(held.wait(), 10)
    two = asyncio.create_task(second())
    await asyncio.sleep(0.5)
    release.set()
    await asyncio.wait_for(asyncio.gather(one, two), 30)


def records(events: list[Any], *, first_offset: int = 0) -> list[ConsumerRecord]:
    return [consumer_record("oms.orders.events", new_envelope(e, producer="order-capture", order_id=e.order_id),
                            first_offset + i) for i, e in enumerate(events)]


async def sent(pool: asyncpg.Pool, event_type: str) -> dict[UUID, int]:
    found: dict[UUID, int] = {}
    for r in await pool.fetch("SELECT value FROM outbox ORDER BY id"):
        env = orjson.loads(r["value"])
        if env["event_type"] == event_type:
            found[UUID(env["order_id"])] = found.get(UUID(env["order_id"]), 0) + 1
    return found


# The first batch in a transaction with its locks, or optimistic (its write undone and done again in a
# transaction when the other came first); the second optimistic (the orchestrator's fast path).
FIRST = pytest.mark.parametrize("optimistic", [False, True], ids=["locked", "optimistic"])


@FIRST
async def test_two_processes_creating_the_same_sagas_make_one_each_and_neither_batch_fails(pool, monkeypatch,
                                                                                          optimistic):
    orders = [uuid4() for _ in range(3)]
    batch = records([placed(o) for o in orders])
    isolated = isolated_runs(monkeypatch)
    held, release = asyncio.Event(), asyncio.Event()

    # The second process gets the same OrderPlaced events (the partition changed hands) in another order.
    await run_both(processor(pool, held=held, release=release, optimistic=optimistic).process(batch), held, release,
                   lambda: processor(pool).process(list(reversed(batch))))

    assert await pool.fetchval("SELECT count(*) FROM saga_instances") == 3
    assert await sent(pool, "ReserveStock") == {o: 1 for o in orders}
    assert isolated == []  # no batch failed and was redone message by message


@FIRST
async def test_claim_first_and_fast_paths_on_the_same_orders_do_not_deadlock(pool, monkeypatch, optimistic):
    orders = [uuid4() for _ in range(3)]
    await processor(pool).process(records([placed(o) for o in orders]))
    cancels = records([OrderCancellationRequestedV1(order_id=o, reason="customer_request", requested_by="web")
                       for o in orders], first_offset=10)
    # A replayed dead letter (of another group: skipped here) makes a batch claim its events first.
    other = records([placed(uuid4())], first_offset=20)[0]
    replay = dataclasses.replace(other, headers=[(REPLAY_HEADER, b"another.group")])
    isolated = isolated_runs(monkeypatch)
    held, release = asyncio.Event(), asyncio.Event()

    # Fast path first (it holds the sagas, and claims the events at its end); meanwhile the claim-first
    # path on the same events.
    await run_both(processor(pool, held=held, release=release, optimistic=optimistic).process(cancels), held, release,
                   lambda: processor(pool).process([replay, *reversed(cancels)]))

    assert await sent(pool, "ReleaseStock") == {o: 1 for o in orders}
    states = await pool.fetch("SELECT state FROM saga_instances WHERE order_id = ANY($1::uuid[])", orders)
    assert [r["state"] for r in states] == ["compensating"] * 3
    assert isolated == []
