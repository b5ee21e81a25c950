"""Kafka consumer of tracking: the public events of every service (orders, their statuses, stock,
payments, shipments, returns) become the orders' timelines. Carrier scans come over HTTP (api.py)."""

import asyncpg
from pydantic import BaseModel

from oms_contracts import Envelope
from oms_contracts.topics import BILLING_EVENTS, ORDERS_EVENTS, ORDERS_STATUS, events
from oms_platform.consumer import BatchLocal, ConsumerSpec, MessageContext
from tracking.domain import MODELS
from tracking.handlers import Tracking

TOPICS = (ORDERS_EVENTS, ORDERS_STATUS, events("inventory"), events("fulfilment"), BILLING_EVENTS, events("returns"))

_BATCH: BatchLocal[list[tuple[Envelope, BaseModel]]] = BatchLocal("tracking_timeline")


def timeline_consumer(service: Tracking) -> ConsumerSpec:
    """Each handler only collects its event; the batch is written at its end in a few statements."""

    async def collect(ctx: MessageContext) -> None:
        pending = _BATCH.get(ctx.conn)
        assert pending is not None
        pending.append((ctx.envelope, ctx.payload))

    async def begin(conn: asyncpg.Connection, _: list[Envelope]) -> None:
        _BATCH.set(conn, [])

    async def write(conn: asyncpg.Connection) -> None:
        pending = _BATCH.get(conn)
        if pending:
            await service.apply(conn, pending)
            pending.clear()

    return ConsumerSpec(name="timeline", topics=TOPICS, handlers=dict.fromkeys(MODELS, collect),
                        before_batch=begin, after_batch=write)
