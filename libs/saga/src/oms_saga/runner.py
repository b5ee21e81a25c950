"""Runs a saga definition against PostgreSQL: the thin layer around the pure engine.

A consumed batch: lock and read its sagas (one statement), decide event after event in memory, write
every outcome (one statement) and queue the commands in the consumer's outbox, all in the consumer's
batch transaction. A deadline: the ticker locks due sagas (skipping locked ones), decides, writes and
enqueues in its own transaction. A crash anywhere before the commit leaves nothing behind, so the
restarted service decides again from the same state."""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from oms_contracts import Envelope
from oms_platform import faults, telemetry
from oms_platform.consumer import ConsumerSpec, Handler, Message, UnitOfWork
from oms_platform.inbox import StatementPart
from oms_platform.outbox import Outbox
from oms_saga import engine, metrics, store
from oms_saga.definition import Saga
from oms_saga.state import Incoming, SagaState, Transition

log = logging.getLogger(__name__)


class SagaBatch:
    """The batch state of a saga's consumer (ConsumerSpec.batch_state): the batch's sagas read (and
    locked) in one statement, decided in memory event after event, and written in one statement.

    Optimistically (ConsumerSpec.optimistic: the consumer's handlers touch nothing but this state) the
    sagas are read without locks or a transaction (`read`) and written by `write_sql` as part of the
    batch's one statement with its inbox claim and outbox rows, which is undone when any saga read was
    written (or created) by another meanwhile: two statements per batch instead of six."""

    def __init__(self, saga_name: str):
        self.saga_name = saga_name
        self.states: dict[UUID, SagaState | None] = {}
        self.writes: dict[UUID, store.Write] = {}  # saga_id -> what to write
        self.versions: dict[UUID, int] = {}  # saga_id -> version read, of every saga read

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        ids = sorted({env.order_id for env in envelopes})
        await store.lock_orders(conn, self.saga_name, ids)  # first: see store.py's lock order
        self._found(ids, await store.load_many(conn, self.saga_name, ids))

    async def read(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        ids = sorted({env.order_id for env in envelopes})
        self._found(ids, await store.read_many(conn, self.saga_name, ids))

    def _found(self, ids: list[UUID], found: dict[UUID, SagaState]) -> None:
        self.states = {order_id: found.get(order_id) for order_id in ids}
        self.versions = {s.saga_id: s.version for s in found.values()}

    async def get(self, conn: asyncpg.Connection, order_id: UUID) -> SagaState | None:
        if order_id not in self.states:  # a saga keyed by another order than the message's
            state = self.states[order_id] = await store.load(conn, self.saga_name, order_id)
            if state is not None:
                self.versions[state.saga_id] = state.version
        return self.states[order_id]

    def record(self, tr: Transition, now: datetime) -> None:
        if tr.state is None:
            return
        write = self.writes.get(tr.state.saga_id)
        if write is None:  # created: no saga of its key was read (the first decision about it)
            write = self.writes[tr.state.saga_id] = store.Write(
                tr.state, created=self.states.get(tr.state.order_id) is None)
        write.add(tr, now)
        self.states[tr.state.order_id] = tr.state  # the order's next event in this batch starts here

    async def flush(self, conn: asyncpg.Connection) -> None:
        writes, self.writes = list(self.writes.values()), {}
        if writes and (lost := await store.save_many(conn, writes)):
            # Another process created one of these sagas after all (not through lock_orders): the
            # consumer applies the batch's events again, message by message, to the existing saga.
            raise store.SagaExists(f"{self.saga_name} sagas {sorted(map(str, lost))} exist already")

    def write_sql(self, first_param: int) -> StatementPart:
        """The optimistic write (see the class): every saga read is checked at the version read."""
        writes, self.writes = list(self.writes.values()), {}
        order_ids = sorted({oid for oid in self.states} | {w.state.order_id for w in writes})
        return store.save_sql(writes, self.versions, first_param, saga_type=self.saga_name, order_ids=order_ids)


def utcnow() -> datetime:
    return datetime.now(UTC)


class SagaRunner:
    def __init__(self, saga: Saga, clock: Callable[[], datetime] = utcnow, *, max_deadline_failures: int = 5,
                 deadline_backoff: float = 5.0):
        self.saga, self.clock = saga, clock
        # A deadline decision that raises is tried again after deadline_backoff * 2^(failures - 1)
        # seconds, and the saga is flagged stuck at the max_deadline_failures-th failure in a row.
        self.max_deadline_failures, self.deadline_backoff = max_deadline_failures, deadline_backoff

    def consumer(self, name: str, topics: list[str], handlers: dict[str, Handler], *,
                 optimistic: bool = False) -> ConsumerSpec:
        """The consumer that runs this saga: its handlers call start or handle, on the batch's SagaBatch.
        optimistic: the handlers do nothing else with the database (see SagaBatch)."""
        return ConsumerSpec(name=name, topics=topics, handlers=handlers,
                            batch_state=partial(SagaBatch, self.saga.name), optimistic=optimistic)

    async def start(self, msg: Message, uow: UnitOfWork[SagaBatch], order_id: UUID, data: BaseModel) -> Transition:
        """Starts the saga of an order from the consumed event (a repeat start changes nothing)."""
        now = self.clock()
        existing = await uow.state.get(uow.conn, order_id)
        tr = engine.start(self.saga, existing, order_id, data, Incoming.of(msg.envelope, msg.payload), now)
        return self._record(uow, tr, now)

    async def handle(self, msg: Message, uow: UnitOfWork[SagaBatch], key: UUID | None = None) -> Transition:
        """Applies a consumed event to its order's saga (or to the saga of `key`, for sagas keyed by
        something other than the order, e.g. a return)."""
        now = self.clock()
        incoming = Incoming.of(msg.envelope, msg.payload)
        state = await uow.state.get(uow.conn, key or incoming.order_id)
        tr = engine.handle(self.saga, state, incoming, now)
        if tr.state is None:
            log.debug("%s for order %s: no %s saga; ignored", incoming.event_type, incoming.order_id, self.saga.name)
        return self._record(uow, tr, now)

    def _record(self, uow: UnitOfWork[SagaBatch], tr: Transition, now: datetime) -> Transition:
        uow.state.record(tr, now)
        # The envelopes carry the ids the saga recorded, so they are sent as they are.
        for topic, env in tr.messages:
            uow.emit(topic, env)
        faults.crash_point("saga.before_commit")
        # Counted before the batch commits (the platform has no after-commit hook): a batch that is
        # rolled back and redelivered counts twice.
        metrics.observe(self.saga.name, tr)
        trace_steps(self.saga.name, tr)
        return tr

    async def tick(self, outbox: Outbox, pool: asyncpg.Pool, *, limit: int = 200) -> int:
        """Applies due deadlines to up to `limit` sagas in one transaction; returns how many."""
        now = self.clock()
        done: list[Transition] = []
        async with outbox.transaction(pool) as uow:
            conn = uow.conn
            states = await store.due(conn, self.saga.name, now, limit)
            writes, failed = [], []
            for state in states:
                try:
                    tr = engine.tick(self.saga, state, now)
                except Exception as exc:  # one saga's failing decision holds up no other
                    log.exception("deadline of saga %s (order %s) failed", state.saga_id, state.order_id)
                    failed.append((state.saga_id, f"{type(exc).__name__}: {exc}"))
                    continue
                writes.append(store.Write.of([tr], now))
                done.append(tr)
            await store.save_many(conn, writes)
            # Deferred (then flagged): else it stays the most overdue, first in every tick, for ever.
            await store.deadline_failed(conn, failed, now, max_failures=self.max_deadline_failures,
                                        backoff=self.deadline_backoff)
            for tr in done:
                for topic, env in tr.messages:
                    uow.emit(topic, env)
            faults.crash_point("saga.tick_before_commit")
        for tr in done:
            metrics.observe(self.saga.name, tr)
            trace_steps(self.saga.name, tr)
        return len(states)


def trace_steps(saga_type: str, tr: Transition) -> None:
    """A span per step row the decision opened or closed (step, attempt, outcome; `started` for a
    step still running), in the trace of the message or deadline that moved the saga."""
    if not telemetry.enabled() or tr.state is None:
        return
    tracer = telemetry.tracer("oms.saga")
    for seq in sorted(tr.steps):
        row = tr.steps[seq]
        tracer.start_span(f"saga {saga_type} {row.step}", attributes={
            "oms.saga.type": saga_type, "oms.saga.step": row.step, "oms.saga.seq": seq, "oms.saga.kind": row.kind,
            "oms.saga.attempt": row.attempts, "oms.saga.outcome": row.outcome or "started",
            telemetry.ORDER_ID: str(tr.state.order_id),
        }).end()


class DeadlineTicker:
    """Background task: applies due deadlines every `interval` seconds (at once again while batches
    come back full) and keeps the stuck-saga gauge current."""

    def __init__(self, runner: SagaRunner, outbox: Outbox, get_pool: Callable[[], asyncpg.Pool | None], *,
                 interval: float, batch_size: int = 200, gauge_every: float = 5.0):
        self.runner, self.outbox, self.get_pool = runner, outbox, get_pool
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
                    applied = n = await self.runner.tick(self.outbox, pool, limit=self.batch_size)
                    while n == self.batch_size:
                        n = await self.runner.tick(self.outbox, pool, limit=self.batch_size)
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
