"""Batch consumers: one PostgreSQL transaction per Kafka batch, the inbox for idempotency, retries
with backoff, and a dead-letter topic for messages that keep failing.

For each batch: parse every envelope, apply each event with its handler, and claim the event ids in the
inbox with the batch's outgoing messages in its last statement; if an id was claimed before (a
redelivery), the batch is rolled back and applied again claiming first, so only new events apply.
(Handlers therefore may run for a redelivered event whose effects are then rolled back: a call outside
the database must be idempotent anyway, as every retry may repeat it.) A handler error (or one of the
batch state's load or flush, which may be one message's doing) is redone with each message in its own
savepoint and retried (with backoff) up to max_attempts; then the message goes to `<topic>.dlq`
(through the outbox, in the same transaction) with the error and its original headers, and the batch
moves on; its inbox claim stays, marked dead-lettered, so a replay of it (oms_platform.dlq) is applied
once by this group and skipped by the others. The offsets are committed after the transaction
commits. A database or connection failure aborts the whole batch, which is then redelivered; the
inbox makes the redelivery harmless. An optimistic consumer (ConsumerSpec.optimistic) first tries the
batch without a transaction: its state read without locks, then one statement that writes everything
or, on a conflict, nothing (_run_optimistic); the transaction above only when that finds a conflict.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from aiokafka import ConsumerRecord
from pydantic import BaseModel, ValidationError

from oms_contracts import Envelope, parse_payload
from oms_platform import inbox, metrics, telemetry
from oms_platform.dlq import dead_letter
from oms_platform.outbox import Outbox, OutgoingMessage, UnitOfWork

log = logging.getLogger(__name__)

# Errors that say the database (not the message) is the problem: the batch is retried whole.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


@dataclass(slots=True)
class Message:
    """A consumed message: its envelope, its payload parsed into the contract model of its event type
    and version, and the Kafka record it came in."""

    envelope: Envelope
    payload: BaseModel
    record: ConsumerRecord


class BatchState(Protocol):
    """What a consumer keeps for one batch (ConsumerSpec.batch_state): made fresh for every batch,
    `load` reads (and locks) what the batch's messages need in one statement before the handlers, the
    handlers decide in memory (uow.state), and `flush` writes what they decided in one statement."""

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None: ...

    async def flush(self, conn: asyncpg.Connection) -> None: ...


class OptimisticBatchState(BatchState, Protocol):
    """A batch state that can also work without a transaction (ConsumerSpec.optimistic): `read` reads
    without locking and `write_sql` gives its writes for the batch's one statement, with the check that
    undoes them when what it read was written meanwhile (inbox.claim_optimistic)."""

    async def read(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None: ...

    def write_sql(self, first_param: int) -> inbox.StatementPart: ...


Handler = Callable[[Message, UnitOfWork[Any]], Awaitable[None]]


@dataclass
class ConsumerSpec:
    """A consumer group of a service: the topics it reads and a handler per event type. Event types
    without a handler are skipped (they are for other consumers of the same topic)."""

    name: str
    topics: Sequence[str]
    handlers: dict[str, Handler]
    # Makes the batch state (e.g. the class itself). Per batch: load with the events about to be applied
    # (new, parsed, with a handler), the handlers, then flush, all in the batch's transaction. When
    # messages are applied one by one (after a handler failed), a state is loaded with them all first
    # (its locks), then each attempt gets a fresh state loaded with its one message and flushed inside
    # its savepoint (a failed attempt's decisions go with it).
    batch_state: Callable[[], BatchState] | None = None
    # The handlers touch the database only through an OptimisticBatchState: a batch is then one read and
    # one write statement, no transaction (BatchProcessor._run_optimistic); the usual transaction, with
    # locks and the claim first, when that write finds a conflict.
    optimistic: bool = False


class BatchProcessor:
    def __init__(
        self,
        spec: ConsumerSpec,
        pool: asyncpg.Pool,
        *,
        outbox: Outbox,
        group_id: str,
        max_attempts: int = 3,
        backoff: float = 0.05,
        topic_prefix: str = "",
    ):
        self.spec = spec
        self.topic_prefix = topic_prefix  # of the topics read (KAFKA_TOPIC_PREFIX): dead letters get it too
        self.pool = pool
        self.outbox = outbox  # the service's: producer name, and the relay woken after a commit
        self.group_id = group_id
        self._dead_letter = partial(dead_letter, consumer=group_id, topic_prefix=topic_prefix)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._tracer = telemetry.tracer("oms.consumer")

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        """Applies a batch in one transaction. Fast path: no savepoints, and every outgoing message of
        the batch written with one INSERT. If a handler fails, that transaction is rolled back and the
        batch is applied again with each message in its own savepoint, so the failing message can be
        retried and dead-lettered alone while the rest of the batch commits."""
        started = time.perf_counter()
        parsed: list[tuple[ConsumerRecord, Envelope | None, str | None]] = []
        for rec in records:
            try:
                parsed.append((rec, Envelope.model_validate_json(rec.value), None))
            except (ValidationError, ValueError, TypeError) as exc:
                parsed.append((rec, None, f"invalid envelope: {exc}"))
        replaying = any(inbox.replay_for(rec.headers) is not None for rec, _, _ in parsed)  # rare: claimed first
        try:
            try:
                if not (self.spec.optimistic and not replaying and await self._run_optimistic(parsed)):
                    await self._run(parsed, isolate=False, claim_first=replaying)
            except _AlreadyClaimed:
                metrics.CONSUMER_RECLAIMED.labels(self.spec.name).inc()
                await self._run(parsed, isolate=False, claim_first=True)
        except _HandlerFailed as failed:
            # The failed fast-path call was that event's first attempt.
            attempted = {failed.event_id} if failed.event_id else set()
            await self._run(parsed, isolate=True, claim_first=True, attempted=attempted)
        metrics.child(metrics.CONSUMER_BATCH, self.spec.name).observe(time.perf_counter() - started)

    async def _run(
        self, parsed: list[tuple[ConsumerRecord, Envelope | None, str | None]], *, isolate: bool, claim_first: bool,
        attempted: set[UUID] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        """One transaction for the batch. claim_first: the inbox claim is its first statement (only the
        new events are applied); otherwise every event is applied and claimed with the outgoing
        messages at the end, and _AlreadyClaimed rolls it all back if one was not new."""
        handled = [(rec, env) for rec, env, _ in parsed if env and env.event_type in self.spec.handlers]
        wanted = [env.event_id for rec, env in handled if inbox.replay_for(rec.headers) is None]
        replayed = [env.event_id for rec, env in handled if inbox.replay_for(rec.headers) == self.group_id]
        outgoing: list[OutgoingMessage] = []
        outcomes: list[str] = []
        dead: list[tuple[ConsumerRecord, UUID | None]] = []  # dead-lettered here, with the event id if parsed
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                # One lock order on every path: the batch state's locks (its load: e.g. the sagas of the
                # batch's orders, sorted) before the inbox's (ids claimed sorted), so a consumer claiming
                # first and one claiming at the end, on overlapping events, cannot deadlock.
                preloaded: BatchState | None = None
                if isolate and handled:  # the batch's locks in one sorted statement, before any savepoint
                    await self._lock_all(conn, [env for _, env in handled])
                elif claim_first and handled:  # loaded with every handled event, new or not: the claim comes after
                    preloaded = await self._batch_level(self._load(conn, [env for _, env in handled]))
                fresh = await inbox.claim(conn, self.group_id, wanted, replayed) if claim_first else set(wanted)
                todo: list[tuple[Message, Handler]] = []
                for rec, env, error in parsed:
                    if inbox.replay_for(rec.headers) not in (None, self.group_id):
                        outcomes.append("skipped")  # another group's dead letter: this one applied it
                        continue
                    if env is None:
                        outgoing.append(self._dead_letter(rec, error or "invalid envelope"))
                        dead.append((rec, None))
                        outcomes.append("dead_lettered")
                        continue
                    handler = self.spec.handlers.get(env.event_type)
                    if handler is None:
                        outcomes.append("skipped")
                        continue
                    if env.event_id not in fresh:
                        outcomes.append("duplicate")
                        continue
                    fresh.discard(env.event_id)  # the same event twice in one batch: apply once
                    try:
                        payload = parse_payload(env.event_type, env.event_version, env.payload)
                    except (ValidationError, LookupError) as exc:
                        # A payload that does not parse will not parse on a retry either.
                        outgoing.append(self._dead_letter(rec, f"invalid payload: {exc}"))
                        dead.append((rec, env.event_id))
                        outcomes.append("dead_lettered")
                        continue
                    todo.append((Message(env, payload, rec), handler))
                if isolate and todo:  # each attempt loads its own state (the batch's locks are held)
                    for msg, handler in todo:
                        first = 2 if msg.envelope.event_id in attempted else 1
                        outcome = await self._apply_isolated(conn, msg, handler, outgoing, first)
                        if outcome == "dead_lettered":
                            dead.append((msg.record, msg.envelope.event_id))
                        outcomes.append(outcome)
                elif todo:
                    with self._batch_span(todo):
                        state = preloaded if claim_first else await self._batch_level(
                            self._load(conn, [msg.envelope for msg, _ in todo]))
                        for msg, handler in todo:
                            try:
                                with self._span(msg):
                                    await handler(msg, UnitOfWork(conn, self.outbox.producer, state, msg.envelope,
                                                                  outgoing))
                            except INFRA_ERRORS:
                                raise
                            except Exception as exc:
                                raise _HandlerFailed(msg.envelope.event_id) from exc
                            outcomes.append("applied")
                        if state is not None:
                            await self._batch_level(state.flush(conn))
                if claim_first:
                    written = await self.outbox.write(conn, outgoing)
                else:
                    written = self.outbox.sql(outgoing, 3)
                    if not await inbox.claim_with_messages(conn, self.group_id, wanted, written):
                        raise _AlreadyClaimed()
                await inbox.mark_dead_lettered(conn, self.group_id, [eid for _, eid in dead if eid is not None])
            written.committed()
        self._count(outcomes)
        for rec, _ in dead:
            metrics.DLQ_MESSAGES.labels(rec.topic.removeprefix(self.topic_prefix), self.spec.name).inc()

    async def _run_optimistic(self, parsed: list[tuple[ConsumerRecord, Envelope | None, str | None]]) -> bool:
        """The batch as two statements without a transaction: the state's read, the handlers in memory,
        then one statement with the state's writes, the outgoing messages and the inbox claim, which
        leaves nothing if any event was applied before or what was read has been written meanwhile
        (_AlreadyClaimed: the batch is redone in a transaction, claiming first). False, with nothing
        done, for a batch that needs the careful path anyway (a message to dead-letter)."""
        todo: list[tuple[Message, Handler]] = []
        outcomes: list[str] = []
        seen: set[UUID] = set()
        for rec, env, _ in parsed:
            if env is None:
                return False
            handler = self.spec.handlers.get(env.event_type)
            if handler is None or env.event_id in seen:
                outcomes.append("skipped" if handler is None else "duplicate")
                continue
            seen.add(env.event_id)
            try:
                payload = parse_payload(env.event_type, env.event_version, env.payload)
            except (ValidationError, LookupError):
                return False
            todo.append((Message(env, payload, rec), handler))
        if not todo:
            self._count(outcomes)
            return True
        outgoing: list[OutgoingMessage] = []
        async with self.pool.acquire() as conn:
            with self._batch_span(todo):
                assert self.spec.batch_state is not None
                state: Any = self.spec.batch_state()
                await self._batch_level(state.read(conn, [msg.envelope for msg, _ in todo]))
                for msg, handler in todo:
                    try:
                        with self._span(msg):
                            await handler(msg, UnitOfWork(conn, self.outbox.producer, state, msg.envelope, outgoing))
                    except INFRA_ERRORS:
                        raise
                    except Exception as exc:
                        raise _HandlerFailed(msg.envelope.event_id) from exc
                    outcomes.append("applied")
                part = state.write_sql(1)
                written = self.outbox.sql(outgoing, len(part.params) + 1, only_if=part.gate)
                try:
                    await inbox.claim_optimistic(conn, self.group_id, seen, written, part, len(part.params) + 1)
                except asyncpg.PostgresError as exc:
                    if exc.sqlstate not in inbox.CONFLICT_SQLSTATES:  # e.g. a value refused: message by message
                        log.warning("%s: the batch's write failed (%s); applying it message by message",
                                    self.spec.name, exc)
                        raise _HandlerFailed(None) from exc
                    metrics.CONSUMER_CONFLICTS.labels(self.spec.name).inc()
                    raise _AlreadyClaimed() from exc
            written.committed()
        self._count(outcomes)
        return True

    def _count(self, outcomes: list[str]) -> None:
        for outcome, n in Counter(outcomes).items():
            metrics.child(metrics.CONSUMED, self.spec.name, outcome).inc(n)

    @staticmethod
    async def _batch_level(call: Awaitable[Any]) -> Any:
        """A batch state's load or flush on the fast path. Its error may be one message's doing (e.g. a
        value the database refuses, written by the flush): the batch is redone message by message, where
        each message's load and flush run in its own savepoint, so that message alone is retried and
        dead-lettered and the partitions move on."""
        try:
            return await call
        except INFRA_ERRORS:
            raise
        except Exception as exc:
            raise _HandlerFailed(None) from exc

    async def _lock_all(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        """The isolated path's batch-wide load, in a savepoint: if it fails, each attempt still loads
        (and locks) its own message's part, and the failing one is dead-lettered alone."""
        try:
            async with conn.transaction():
                await self._load(conn, envelopes)
        except INFRA_ERRORS:
            raise
        except Exception:
            log.warning("%s: the batch's state did not load; loading it message by message", self.spec.name,
                        exc_info=True)

    async def _load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> BatchState | None:
        if self.spec.batch_state is None:
            return None
        state = self.spec.batch_state()
        await state.load(conn, envelopes)
        return state

    @contextmanager
    def _batch_span(self, todo: list[tuple[Message, Handler]]) -> Iterator[None]:
        """When tracing: the batch's own database calls (its state's load and flush) in the trace of its
        first message, linked to the others' (no span at all otherwise)."""
        if not telemetry.enabled():
            yield
            return
        first, *rest = (msg for msg, _ in todo)
        links = [telemetry.Link(telemetry.trace.get_current_span(telemetry.extract_context(m.record.headers))
                                .get_span_context()) for m in rest]
        one_order = all(m.envelope.order_id == first.envelope.order_id for m in rest)
        scope = telemetry.order_scope(first.envelope.order_id) if one_order else nullcontext()
        with scope, self._tracer.start_as_current_span(
            f"batch {self.spec.name}", context=telemetry.extract_context(first.record.headers), links=links,
            attributes={"messaging.batch.message_count": len(todo)},
        ):
            yield

    @contextmanager
    def _span(self, msg: Message) -> Iterator[None]:
        """The message's consumer span, with its order on every span and log line inside (when spans
        are not exported, only its trace context, so its messages still carry the trace id)."""
        rec, env = msg.record, msg.envelope
        order_id = str(env.order_id)
        parent = telemetry.extract_context(rec.headers)
        if not telemetry.enabled() and telemetry.has_trace(parent):  # nothing exported: carry its trace on
            with telemetry.order_scope(order_id), telemetry.continued(parent):
                yield
            return
        with telemetry.order_scope(order_id), self._tracer.start_as_current_span(
            f"consume {env.event_type}", context=parent,
            kind=telemetry.trace.SpanKind.CONSUMER,
            attributes={"messaging.destination.name": rec.topic, telemetry.ORDER_ID: order_id},
        ):
            yield

    async def _apply_isolated(
        self, conn: asyncpg.Connection, msg: Message, handler: Handler, outgoing: list[OutgoingMessage],
        first_attempt: int = 1,
    ) -> str:
        for attempt in range(first_attempt, self.max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 2))
            uow: UnitOfWork[Any] = UnitOfWork(conn, self.outbox.producer, None, msg.envelope)
            try:
                with self._span(msg):
                    async with conn.transaction():  # a savepoint: a failed attempt leaves no trace
                        uow.state = await self._load(conn, [msg.envelope])
                        await handler(msg, uow)
                        if uow.state is not None:
                            await uow.state.flush(conn)
                outgoing.extend(uow.messages)
                return "applied"
            except INFRA_ERRORS:
                raise
            except Exception as exc:
                if attempt >= self.max_attempts:
                    log.exception("event %s failed %d times; dead-lettering", msg.envelope.event_id, attempt)
                    outgoing.append(self._dead_letter(msg.record, f"{type(exc).__name__}: {exc}"))
                    return "dead_lettered"
        outgoing.append(self._dead_letter(msg.record, "failed on every attempt"))  # max_attempts == 1
        return "dead_lettered"


class _AlreadyClaimed(Exception):
    """An event of the batch was applied before (a redelivery): the batch is rolled back and redone
    claiming first."""


class _HandlerFailed(Exception):
    """A handler raised on the fast path: the batch is redone message by message."""

    def __init__(self, event_id: UUID | None):  # None: the batch state's load or flush failed
        super().__init__(str(event_id))
        self.event_id = event_id
