"""Batch consumers: one PostgreSQL transaction per Kafka batch, the inbox for idempotency, retries
with backoff, and a dead-letter topic for messages that keep failing.

For each batch: parse every envelope, apply each event with its handler, and claim the event ids in the
inbox with the batch's outgoing messages in its last statement; if an id was claimed before (a
redelivery), the batch is rolled back and applied again claiming first, so only new events apply.
(Handlers therefore may run for a redelivered event whose effects are then rolled back: a call outside
the database must be idempotent anyway, as every retry may repeat it.) A handler error is redone with
each message in its own savepoint and retried (with backoff) up to max_attempts; then the message goes
to `<topic>.dlq` (through the outbox, in the same transaction) with the error and its original
headers, and the batch moves on. The offsets are committed after the transaction
commits. A database or connection failure aborts the whole batch, which is then redelivered; the
inbox makes the redelivery harmless.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
from aiokafka import ConsumerRecord
from pydantic import BaseModel, ValidationError

from oms_contracts import Envelope, parse_payload
from oms_contracts.topics import dlq
from oms_platform import inbox, metrics, outbox, telemetry

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors that say the database (not the message) is the problem: the batch is retried whole.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


@dataclass
class MessageContext:
    """What a handler gets: the open connection (inside the batch transaction), the envelope, the
    parsed payload, and `emit` to send messages through the outbox in the same transaction."""

    conn: asyncpg.Connection
    envelope: Envelope
    payload: BaseModel
    record: ConsumerRecord
    producer: str
    outgoing: list[outbox.OutgoingMessage] = field(default_factory=list)

    def emit(self, topic: str, event: BaseModel, *, order_id: UUID | None = None) -> Envelope:
        """Queues an event caused by this message (same correlation id, causation = this event)."""
        env, msg = outbox.event_message(
            topic,
            event,
            producer=self.producer,
            order_id=order_id or self.envelope.order_id,
            correlation_id=self.envelope.correlation_id,
            causation_id=self.envelope.event_id,
        )
        self.outgoing.append(msg)
        return env


Handler = Callable[[MessageContext], Awaitable[None]]


@dataclass
class ConsumerSpec:
    """A consumer group of a service: the topics it reads and a handler per event type. Event types
    without a handler are skipped (they are for other consumers of the same topic)."""

    name: str
    topics: Sequence[str]
    handlers: dict[str, Handler]
    # Called once per batch, in its transaction, before the handlers, with the events about to be
    # applied (new, parsed, with a handler): e.g. to lock every row the batch touches in one sorted
    # statement, so concurrent consumers cannot deadlock.
    before_batch: Callable[[asyncpg.Connection, list[Envelope]], Awaitable[None]] | None = None
    # Called after the handlers, in the same transaction, before the outgoing messages are written:
    # e.g. to write in one statement what every handler of the batch decided in memory. When messages
    # are applied one by one (after a handler failed), it runs after each, inside its savepoint, and
    # before_batch is called again with just the message about to be retried.
    after_batch: Callable[[asyncpg.Connection], Awaitable[None]] | None = None


class BatchLocal(Generic[T]):
    """State of one consumed batch: set by a before_batch hook, read by the batch's handlers and its
    after_batch hook, which run right after it in the same task and on the same connection (e.g. rows
    read once for the whole batch, or changes written once at its end). Another connection (an HTTP
    request's, or the next batch's before it is set) sees None."""

    def __init__(self, name: str):
        self._var: ContextVar[tuple[Any, T] | None] = ContextVar(name, default=None)

    def set(self, conn: asyncpg.Connection, value: T) -> None:
        self._var.set((conn, value))

    def get(self, conn: asyncpg.Connection) -> T | None:
        item = self._var.get()
        return item[1] if item is not None and item[0] is conn else None


class BatchProcessor:
    def __init__(
        self,
        spec: ConsumerSpec,
        pool: asyncpg.Pool,
        *,
        producer: str,
        group_id: str,
        max_attempts: int = 3,
        backoff: float = 0.05,
        topic_prefix: str = "",
        relay: outbox.OutboxRelay | None = None,
    ):
        self.spec = spec
        self.topic_prefix = topic_prefix  # of the topics read (KAFKA_TOPIC_PREFIX): dead letters get it too
        self.pool = pool
        self.producer = producer
        self.group_id = group_id
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.relay = relay  # this process's relay: woken directly after a commit while it leads
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
        try:
            try:
                await self._run(parsed, isolate=False, claim_first=False)
            except _AlreadyClaimed:
                metrics.CONSUMER_RECLAIMED.labels(self.spec.name).inc()
                await self._run(parsed, isolate=False, claim_first=True)
        except _HandlerFailed as failed:
            # The failed fast-path call was that event's first attempt.
            await self._run(parsed, isolate=True, claim_first=True, attempted={failed.event_id})
        metrics.CONSUMER_BATCH.labels(self.spec.name).observe(time.perf_counter() - started)

    async def _run(
        self, parsed: list[tuple[ConsumerRecord, Envelope | None, str | None]], *, isolate: bool, claim_first: bool,
        attempted: set[UUID] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        """One transaction for the batch. claim_first: the inbox claim is its first statement (only the
        new events are applied); otherwise every event is applied and claimed with the outgoing
        messages at the end, and _AlreadyClaimed rolls it all back if one was not new."""
        wanted = [env.event_id for _, env, _ in parsed if env and env.event_type in self.spec.handlers]
        outgoing: list[outbox.OutgoingMessage] = []
        outcomes: list[str] = []
        wake_here = self.relay is not None and self.relay.leads
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await inbox.claim(conn, self.group_id, wanted) if claim_first else set(wanted)
            todo: list[tuple[ConsumerRecord, Envelope, BaseModel, Handler]] = []
            for rec, env, error in parsed:
                if env is None:
                    outgoing.append(self._dead_letter(rec, error or "invalid envelope"))
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
                    continue
                todo.append((rec, env, payload, handler))
            if self.spec.before_batch is not None and todo:
                await self.spec.before_batch(conn, [env for _, env, _, _ in todo])
            for rec, env, payload, handler in todo:
                if isolate:
                    first = 2 if env.event_id in attempted else 1
                    outcomes.append(await self._apply_isolated(conn, rec, env, payload, handler, outgoing, first))
                else:
                    ctx = MessageContext(conn, env, payload, rec, self.producer, outgoing)
                    try:
                        with self._span(rec, env):
                            await handler(ctx)
                    except INFRA_ERRORS:
                        raise
                    except Exception as exc:
                        raise _HandlerFailed(env.event_id) from exc
                    outcomes.append("applied")
            if self.spec.after_batch is not None and todo and not isolate:
                await self.spec.after_batch(conn)
            if claim_first:
                await outbox.enqueue(conn, outgoing, notify=not wake_here)
            elif not await inbox.claim_with_messages(conn, self.group_id, wanted, outgoing, notify=not wake_here):
                raise _AlreadyClaimed()
        if wake_here and outgoing:
            self.relay.wake()  # type: ignore[union-attr]
        for outcome in outcomes:
            metrics.CONSUMED.labels(self.spec.name, outcome).inc()

    def _span(self, rec: ConsumerRecord, env: Envelope) -> Any:
        span = self._tracer.start_as_current_span(
            f"consume {env.event_type}", context=telemetry.extract_context(rec.headers),
            kind=telemetry.trace.SpanKind.CONSUMER,
            attributes={"messaging.destination.name": rec.topic, "oms.order_id": str(env.order_id)},
        )
        return span

    async def _apply_isolated(
        self, conn: asyncpg.Connection, rec: ConsumerRecord, env: Envelope, payload: BaseModel, handler: Handler,
        outgoing: list[outbox.OutgoingMessage], first_attempt: int = 1,
    ) -> str:
        for attempt in range(first_attempt, self.max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 2))
            ctx = MessageContext(conn, env, payload, rec, self.producer)
            try:
                with self._span(rec, env):
                    async with conn.transaction():  # a savepoint: a failed attempt leaves no trace
                        await handler(ctx)
                        if self.spec.after_batch is not None:
                            await self.spec.after_batch(conn)
                outgoing.extend(ctx.outgoing)
                return "applied"
            except INFRA_ERRORS:
                raise
            except Exception as exc:
                if self.spec.before_batch is not None:  # forget what the failed attempt decided
                    await self.spec.before_batch(conn, [env])
                if attempt >= self.max_attempts:
                    log.exception("event %s failed %d times; dead-lettering", env.event_id, attempt)
                    outgoing.append(self._dead_letter(rec, f"{type(exc).__name__}: {exc}"))
                    return "dead_lettered"
        outgoing.append(self._dead_letter(rec, "failed on every attempt"))  # max_attempts == 1
        return "dead_lettered"

    def _dead_letter(self, rec: ConsumerRecord, error: str) -> outbox.OutgoingMessage:
        metrics.CONSUMED.labels(self.spec.name, "dead_lettered").inc()
        log.warning("dead-lettering %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, error)
        headers = [(k, v.decode("utf-8", "replace")) for k, v in (rec.headers or []) if v is not None]
        headers += [
            ("dlq.error", error[:2000]),
            ("dlq.original_topic", rec.topic),
            ("dlq.original_partition", str(rec.partition)),
            ("dlq.original_offset", str(rec.offset)),
            ("dlq.consumer", self.group_id),
            ("dlq.failed_at", datetime.now(UTC).isoformat()),
        ]
        key = rec.key.decode("utf-8", "replace") if rec.key else ""
        value = rec.value if isinstance(rec.value, bytes) else bytes(rec.value or b"")
        return outbox.OutgoingMessage(dlq(rec.topic.removeprefix(self.topic_prefix)), key, value, headers)


class _AlreadyClaimed(Exception):
    """An event of the batch was applied before (a redelivery): the batch is rolled back and redone
    claiming first."""


class _HandlerFailed(Exception):
    """A handler raised on the fast path: the batch is redone message by message."""

    def __init__(self, event_id: UUID):
        super().__init__(str(event_id))
        self.event_id = event_id


class OffsetCommitter:
    """Commits a consumer's processed offsets at most every `interval` seconds (0: after every batch).

    A batch's effects and its inbox rows are committed to PostgreSQL before its offsets are recorded
    here, so an offset committed late only means more redelivery after a crash or a rebalance (at
    most `interval` of batches), which the inbox makes harmless; it saves the Kafka round trip and the
    broker's write of every small batch's offsets. The offsets committed are the processed ones
    (never a fetched batch not yet applied), and `flush` commits what is left when the service stops."""

    def __init__(self, interval: float):
        self.interval = interval
        self.consumer: Any = None
        self._pending: dict[Any, int] = {}
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None

    async def processed(self, consumer: Any, records: Sequence[ConsumerRecord]) -> None:
        from aiokafka import TopicPartition

        self.consumer = consumer
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            self._pending[tp] = max(self._pending.get(tp, 0), rec.offset + 1)
        loop = asyncio.get_running_loop()
        if loop.time() - self._last >= self.interval:
            await self.flush()
        elif self._timer is None:
            self._timer = loop.call_at(self._last + self.interval, self._commit_later)

    def _commit_later(self) -> None:
        self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.flush())

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending or self.consumer is None:
            return
        offsets, self._pending = self._pending, {}
        self._last = asyncio.get_running_loop().time()
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - e.g. partitions moved to another member: it redelivers them
            log.info("offsets %s not committed (%s: %s); those batches may be redelivered",
                     {f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()}, type(exc).__name__, exc)


def subscribe(
    broker: Any, processor: BatchProcessor, *, max_records: int = 500, auto_offset_reset: str = "earliest",
    session_timeout_ms: int = 10_000, poll_ms: int = 500, commit_interval: float = 0.2,
    group_instance_id: str | None = None,
) -> Any:
    """Binds a BatchProcessor to a faststream KafkaBroker as a batch subscriber. Offsets are
    committed only after the batch's transaction commits (by an OffsetCommitter, at most every
    `commit_interval` seconds: `subscriber.committer`); on an error the batch is sought back and
    redelivered (after a pause, so a database outage is not a busy loop).

    Records are handed over as soon as they arrive: a poll waits up to `poll_ms` for the first one
    and returns at once when there is any. (faststream's own batch poll sleeps another batch_timeout_ms
    after every empty poll, so a record arriving to an idle consumer waited up to that long at every
    hop of the saga; `_poll_without_idle_sleep` replaces it.) The envelopes are parsed by the
    processor, so faststream's own JSON decoding of every record is skipped."""
    from faststream import AckPolicy
    from faststream.message import AckStatus

    subscriber = broker.subscriber(
        *(processor.topic_prefix + t for t in processor.spec.topics),
        group_id=processor.group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=poll_ms,
        auto_offset_reset=auto_offset_reset,
        session_timeout_ms=session_timeout_ms,
        group_instance_id=group_instance_id,
        heartbeat_interval_ms=max(1000, session_timeout_ms // 4),
        ack_policy=AckPolicy.NACK_ON_ERROR,  # an error seeks every partition back to the batch's start
        decoder=_the_message,
    )
    subscriber.get_msg = _poll_without_idle_sleep(poll_ms, max_records)
    committer = subscriber.committer = OffsetCommitter(commit_interval)

    @subscriber
    async def _on_batch(message: Any) -> None:  # the KafkaMessage itself (see _the_message)
        records = message.raw_message
        if not isinstance(records, tuple | list):
            records = (records,)
        try:
            await processor.process(records)
        except Exception:
            log.exception("batch of %d failed; it will be redelivered", len(records))
            await asyncio.sleep(1.0)
            raise
        # The offsets go through the committer, not faststream's ack (a commit per batch).
        message.committed = AckStatus.ACKED
        await committer.processed(subscriber.consumer, records)

    return subscriber


async def _the_message(message: Any) -> Any:
    """faststream decoder: the handler gets the message itself (it reads message.raw_message, never a
    decoded body), so with the runtime's apply_types=False no dependency injection runs per batch
    (resolving a `KafkaMessage` parameter through FastDepends ran in a worker thread, every batch)."""
    return message


def _poll_without_idle_sleep(poll_ms: int, max_records: int) -> Callable[[Any], Awaitable[tuple]]:
    """The batch subscriber's get_msg (faststream 0.6, pinned in uv.lock; tests/unit/test_subscriber.py
    checks it is the one used): every record available, waiting for the first up to poll_ms, and no
    sleep after an empty poll (the loop polls again at once)."""

    async def get_msg(consumer: Any) -> tuple:
        batches = await consumer.getmany(timeout_ms=poll_ms, max_records=max_records)
        return tuple(rec for records in batches.values() for rec in records)

    return get_msg
