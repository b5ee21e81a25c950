"""Runs a saga definition against PostgreSQL: the thin layer around the pure engine.

A consumed batch: lock and read its sagas (one statement), decide event after event in memory, write
every outcome (one statement) and queue the commands in the consumer's outbox, all in the consumer's
batch transaction. A deadline: the ticker locks due sagas (skipping locked ones), decides, writes and
enqueues in its own transaction. A crash anywhere before the commit leaves nothing behind, so the
restarted service decides again from the same state."""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from oms_contracts import Envelope
from oms_platform import faults, outbox
from oms_platform.consumer import BatchLocal, ConsumerSpec, Handler, MessageContext
from oms_saga import engine, metrics, store
from oms_saga.definition import Saga
from oms_saga.state import Incoming, SagaState, Transition

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    """The sagas of the batch being applied, set by before_batch and used by the handlers, which run in
    the same task right after it: read once (locked), decided in memory event after event, and written
    once by after_batch."""

    states: dict[UUID, SagaState | None]
    writes: dict[UUID, store.Write] = field(default_factory=dict)  # saga_id -> what to write


_BATCH: BatchLocal[_Batch] = BatchLocal("saga_batch")


def utcnow() -> datetime:
    return datetime.now(UTC)


class SagaRunner:
    def __init__(self, saga: Saga, clock: Callable[[], datetime] = utcnow):
        self.saga, self.clock = saga, clock

    def _messages(self, tr: Transition) -> list[outbox.OutgoingMessage]:
        return [outbox.envelope_message(topic, env) for topic, env in tr.messages]

    def consumer(self, name: str, topics: list[str], handlers: dict[str, Handler]) -> ConsumerSpec:
        """The consumer that runs this saga: its handlers call start or handle; the batch's sagas are
        read before them and written after them (both hooks belong together)."""
        return ConsumerSpec(name=name, topics=topics, handlers=handlers, before_batch=self.before_batch,
                            after_batch=self.after_batch)

    async def before_batch(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        """ConsumerSpec.before_batch: locks and reads every saga the batch touches in one statement;
        the handlers then take them from here instead of one SELECT each. (Called again for one event
        before it is retried alone: what a failed attempt decided is forgotten with its savepoint.)"""
        ids = sorted({env.order_id for env in envelopes})
        found = await store.load_many(conn, self.saga.name, ids)
        _BATCH.set(conn, _Batch({order_id: found.get(order_id) for order_id in ids}))

    async def after_batch(self, conn: asyncpg.Connection) -> None:
        """ConsumerSpec.after_batch: writes every saga the handlers changed, in one statement."""
        batch = _BATCH.get(conn)
        if batch is not None and batch.writes:
            writes, batch.writes = list(batch.writes.values()), {}
            await store.save_many(conn, writes)

    async def _load(self, conn: asyncpg.Connection, order_id: UUID) -> SagaState | None:
        batch = _BATCH.get(conn)
        if batch is not None and order_id in batch.states:
            return batch.states[order_id]
        return await store.load(conn, self.saga.name, order_id)

    async def start(self, ctx: MessageContext, order_id: UUID, data: BaseModel) -> Transition:
        """Starts the saga of an order from the consumed event (a repeat start changes nothing)."""
        now = self.clock()
        existing = await self._load(ctx.conn, order_id)
        tr = engine.start(self.saga, existing, order_id, data, Incoming.of(ctx.envelope, ctx.payload), now)
        return await self._write(ctx, tr, now)

    async def handle(self, ctx: MessageContext, key: UUID | None = None) -> Transition:
        """Applies a consumed event to its order's saga (or to the saga of `key`, for sagas keyed by
        something other than the order, e.g. a return)."""
        now = self.clock()
        incoming = Incoming.of(ctx.envelope, ctx.payload)
        state = await self._load(ctx.conn, key or incoming.order_id)
        tr = engine.handle(self.saga, state, incoming, now)
        if tr.state is None:
            log.debug("%s for order %s: no %s saga; ignored", incoming.event_type, incoming.order_id, self.saga.name)
        return await self._write(ctx, tr, now)

    async def _write(self, ctx: MessageContext, tr: Transition, now: datetime) -> Transition:
        batch = _BATCH.get(ctx.conn)
        if batch is None:  # not under a consumer with after_batch: write now
            await store.save(ctx.conn, tr, now)
        elif tr.state is not None:
            write = batch.writes.get(tr.state.saga_id)
            if write is None:
                write = batch.writes[tr.state.saga_id] = store.Write(tr.state)
            write.add(tr, now)
            batch.states[tr.state.order_id] = tr.state  # the order's next event in this batch starts here
        # The envelopes carry the ids the saga recorded, so they are queued as they are (what
        # ctx.emit would write: same producer, correlation and causation).
        ctx.outgoing.extend(self._messages(tr))
        faults.crash_point("saga.before_commit")
        # Counted before the batch commits (the platform has no after-commit hook): a batch that is
        # rolled back and redelivered counts twice.
        metrics.observe(self.saga.name, tr)
        return tr

    async def tick(self, pool: asyncpg.Pool, *, limit: int = 200) -> int:
        """Applies due deadlines to up to `limit` sagas in one transaction; returns how many."""
        now = self.clock()
        done: list[Transition] = []
        async with pool.acquire() as conn, conn.transaction():
            states = await store.due(conn, self.saga.name, now, limit)
            writes = []
            for state in states:
                try:
                    tr = engine.tick(self.saga, state, now)
                except Exception:  # one saga's failing decision holds up no other
                    log.exception("deadline of saga %s (order %s) failed", state.saga_id, state.order_id)
                    continue
                writes.append(store.Write.of([tr], now))
                done.append(tr)
            await store.save_many(conn, writes)
            await outbox.enqueue(conn, [m for tr in done for m in self._messages(tr)])
            faults.crash_point("saga.tick_before_commit")
        for tr in done:
            metrics.observe(self.saga.name, tr)
        return len(states)


class DeadlineTicker:
    """Background task: applies due deadlines every `interval` seconds (at once again while batches
    come back full) and keeps the stuck-saga gauge current."""

    def __init__(self, runner: SagaRunner, get_pool: Callable[[], asyncpg.Pool | None], *, interval: float,
                 batch_size: int = 200, gauge_every: float = 5.0):
        self.runner, self.get_pool = runner, get_pool
        self.interval, self.batch_size, self.gauge_every = interval, batch_size, gauge_every
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"saga-ticker-{self.runner.saga.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_gauge = 0.0
        while True:
            try:
                pool = self.get_pool()
                if pool is not None:
                    applied = n = await self.runner.tick(pool, limit=self.batch_size)
                    while n == self.batch_size:
                        n = await self.runner.tick(pool, limit=self.batch_size)
                        applied += n
                    # Deadlines are what flag sagas stuck: count again after any, else now and then.
                    if applied or loop.time() >= next_gauge:
                        async with pool.acquire() as conn:
                            count = await store.stuck_count(conn, self.runner.saga.name)
                        metrics.STUCK.labels(self.runner.saga.name).set(count)
                        next_gauge = loop.time() + self.gauge_every
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("saga deadline tick failed; trying again")
            await asyncio.sleep(self.interval)
