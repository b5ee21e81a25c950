"""Kafka consumer of tracking: the public events of every service (orders, their statuses, stock,
payments, shipments, returns) become the orders' timelines. Carrier scans come over HTTP (api.py)."""

from functools import partial
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from oms_contracts import Envelope
from oms_contracts.orders import OrderPlacedV1
from oms_contracts.topics import BILLING_EVENTS, ORDERS_EVENTS, ORDERS_STATUS, events
from oms_platform import telemetry
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork
from tracking.domain import MODELS
from tracking.handlers import Tracking

TOPICS = (ORDERS_EVENTS, ORDERS_STATUS, events("inventory"), events("fulfilment"), BILLING_EVENTS, events("returns"))


class TimelineBatch:
    """The batch state: each handler only collects its event; the batch is written at its end in a few
    statements (Tracking.apply)."""

    def __init__(self, service: Tracking) -> None:
        self.service = service
        self.pending: list[tuple[Envelope, BaseModel]] = []
        self.traces: dict[UUID, str] = {}  # order id -> its OrderPlaced's traceparent

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        """Reads nothing here: Tracking.apply reads what the whole batch needs at once, in flush."""

    async def flush(self, conn: asyncpg.Connection) -> None:
        if self.pending:
            pending, traces, self.pending, self.traces = self.pending, self.traces, [], {}
            await self.service.apply(conn, pending, traces)


async def _collect(msg: Message, uow: UnitOfWork[TimelineBatch]) -> None:
    uow.state.pending.append((msg.envelope, msg.payload))
    if isinstance(msg.payload, OrderPlacedV1) and (parent := telemetry.traceparent_of(msg.record.headers)):
        uow.state.traces[msg.payload.order_id] = parent


def timeline_consumer(service: Tracking) -> ConsumerSpec:
    return ConsumerSpec(name="timeline", topics=TOPICS, handlers=dict.fromkeys(MODELS, _collect),
                        batch_state=partial(TimelineBatch, service))
