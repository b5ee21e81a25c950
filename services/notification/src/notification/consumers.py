"""The Kafka consumer of notification: every topic whose events become emails or webhooks (one group,
so a batch records its customers, email intents and deliveries together, with its inbox claims)."""

import asyncpg

from notification import repository as repo
from notification.domain import SUBSCRIBABLE, TOPICS
from notification.handlers import EventBatch
from oms_contracts import Envelope
from oms_platform.consumer import BatchLocal, ConsumerSpec, MessageContext

_BATCH: BatchLocal[EventBatch] = BatchLocal("notification_events")


def event_consumer(email_attempts: int, webhook_attempts: int) -> ConsumerSpec:
    async def begin(conn: asyncpg.Connection, _: list[Envelope]) -> None:
        # The subscriptions once per batch; one created now gets the events consumed after it.
        _BATCH.set(conn, EventBatch(await repo.active_subscriptions(conn), email_attempts, webhook_attempts))

    async def on_event(ctx: MessageContext) -> None:
        batch = _BATCH.get(ctx.conn)
        assert batch is not None
        batch.add(ctx.envelope)

    async def write(conn: asyncpg.Connection) -> None:
        batch = _BATCH.get(conn)
        if batch is not None:
            await batch.flush(conn)

    return ConsumerSpec(name="events", topics=list(TOPICS), handlers=dict.fromkeys(SUBSCRIBABLE, on_event),
                        before_batch=begin, after_batch=write)
