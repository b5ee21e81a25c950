"""The Kafka consumer of notification: every topic whose events become emails or webhooks (one group,
so a batch records its customers, email intents and deliveries together, with its inbox claims)."""

from functools import partial

from notification.domain import SUBSCRIBABLE, TOPICS
from notification.handlers import EventBatch
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork


async def _on_event(msg: Message, uow: UnitOfWork[EventBatch]) -> None:
    uow.state.add(msg.envelope)


def event_consumer(email_attempts: int, webhook_attempts: int) -> ConsumerSpec:
    return ConsumerSpec(name="events", topics=list(TOPICS), handlers=dict.fromkeys(SUBSCRIBABLE, _on_event),
                        batch_state=partial(EventBatch, email_attempts, webhook_attempts))
