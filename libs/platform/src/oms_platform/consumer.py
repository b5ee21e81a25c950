"""Batch consumers: one PostgreSQL transaction per Kafka batch, the inbox for idempotency, retries
with backoff, and a dead-letter topic for messages that keep failing.

For each batch: parse every envelope, claim the new event ids in the inbox, and apply each new event
with its handler inside a savepoint. A handler error is retried (with backoff) up to max_attempts;
then the message goes to `<topic>.dlq` (through the outbox, in the same transaction) with the error
and its original headers, and the batch moves on. The offsets are committed after the transaction
commits. A database or connection failure aborts the whole batch, which is then redelivered; the
inbox makes the redelivery harmless.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import ConsumerRecord
from pydantic import BaseModel, ValidationError

from oms_contracts import Envelope, parse_payload
from oms_contracts.topics import dlq
from oms_platform import inbox, metrics, outbox, telemetry

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
    ):
        self.spec = spec
        self.pool = pool
        self.producer = producer
        self.group_id = group_id
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._tracer = telemetry.tracer("oms.consumer")

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        started = time.perf_counter()
        parsed: list[tuple[ConsumerRecord, Envelope | None, str | None]] = []
        for rec in records:
            try:
                parsed.append((rec, Envelope.model_validate_json(rec.value), None))
            except (ValidationError, ValueError, TypeError) as exc:
                parsed.append((rec, None, f"invalid envelope: {exc}"))
        wanted = [env.event_id for _, env, _ in parsed if env and env.event_type in self.spec.handlers]
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await inbox.claim(conn, self.group_id, wanted)
            for rec, env, error in parsed:
                if env is None:
                    await self._dead_letter(conn, rec, error or "invalid envelope")
                    continue
                handler = self.spec.handlers.get(env.event_type)
                if handler is None:
                    metrics.CONSUMED.labels(self.spec.name, "skipped").inc()
                    continue
                if env.event_id not in fresh:
                    metrics.CONSUMED.labels(self.spec.name, "duplicate").inc()
                    continue
                fresh.discard(env.event_id)  # the same event twice in one batch: apply once
                await self._apply(conn, rec, env, handler)
        metrics.CONSUMER_BATCH.labels(self.spec.name).observe(time.perf_counter() - started)

    async def _apply(self, conn: asyncpg.Connection, rec: ConsumerRecord, env: Envelope, handler: Handler) -> None:
        try:
            payload = parse_payload(env.event_type, env.event_version, env.payload)
        except (ValidationError, LookupError) as exc:
            # A payload that does not parse will not parse on a retry either. (Parsed here, outside
            # the handler's try: a KeyError or ValidationError of the handler is retried like any error.)
            await self._dead_letter(conn, rec, f"invalid payload: {exc}")
            return
        for attempt in range(1, self.max_attempts + 1):
            ctx_trace = telemetry.extract_context(rec.headers)
            try:
                with self._tracer.start_as_current_span(
                    f"consume {env.event_type}", context=ctx_trace, kind=telemetry.trace.SpanKind.CONSUMER
                ) as span:
                    span.set_attribute("messaging.destination.name", rec.topic)
                    span.set_attribute("oms.order_id", str(env.order_id))
                    async with conn.transaction():  # a savepoint: a failed attempt leaves no trace
                        ctx = MessageContext(conn, env, payload, rec, self.producer)
                        await handler(ctx)
                        await outbox.enqueue(conn, ctx.outgoing)
                metrics.CONSUMED.labels(self.spec.name, "applied").inc()
                return
            except INFRA_ERRORS:
                raise
            except Exception as exc:
                if attempt == self.max_attempts:
                    log.exception("event %s failed %d times; dead-lettering", env.event_id, attempt)
                    await self._dead_letter(conn, rec, f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))

    async def _dead_letter(self, conn: asyncpg.Connection, rec: ConsumerRecord, error: str) -> None:
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
        await outbox.enqueue(conn, [outbox.OutgoingMessage(dlq(rec.topic), key, value, headers)])


def subscribe(
    broker: Any, processor: BatchProcessor, *, max_records: int = 500, auto_offset_reset: str = "earliest"
) -> Any:
    """Binds a BatchProcessor to a faststream KafkaBroker as a batch subscriber. Offsets are
    committed only after the batch's transaction commits; on an error the batch is sought back
    and redelivered (after a pause, so a database outage is not a busy loop)."""
    from faststream import AckPolicy
    from faststream.kafka.annotations import KafkaMessage

    subscriber = broker.subscriber(
        *processor.spec.topics,
        group_id=processor.group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=50,
        auto_offset_reset=auto_offset_reset,
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )

    @subscriber
    async def _on_batch(message: KafkaMessage) -> None:
        records = message.raw_message
        if not isinstance(records, tuple | list):
            records = (records,)
        try:
            await processor.process(records)
        except Exception:
            log.exception("batch of %d failed; it will be redelivered", len(records))
            await asyncio.sleep(1.0)
            raise

    return subscriber
