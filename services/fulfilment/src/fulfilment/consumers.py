"""Kafka consumers of fulfilment: the saga's commands (oms.fulfilment.commands), and deliveries
reported by tracking (oms.tracking.events) that close a dispatched shipment."""

import logging

import asyncpg

from fulfilment import repository as repo
from fulfilment.handlers import EVENTS, CommandBatch, Fulfilment
from oms_contracts import Envelope
from oms_contracts.fulfilment import CancelShipmentsV1, CreateShipmentsV1, ShipmentDeliveredV1
from oms_contracts.topics import commands, events
from oms_platform.consumer import BatchLocal, ConsumerSpec, MessageContext

log = logging.getLogger(__name__)


_BATCH: BatchLocal[CommandBatch] = BatchLocal("fulfilment_commands")


def command_consumer(service: Fulfilment) -> ConsumerSpec:
    async def on_create(ctx: MessageContext) -> None:
        assert isinstance(ctx.payload, CreateShipmentsV1)
        reply = await service.create_shipments(ctx.conn, ctx.payload, _BATCH.get(ctx.conn))
        ctx.emit(EVENTS, reply, order_id=ctx.payload.order_id)

    async def on_cancel(ctx: MessageContext) -> None:
        assert isinstance(ctx.payload, CancelShipmentsV1)
        reply = await service.cancel_shipments(ctx.conn, ctx.payload, _BATCH.get(ctx.conn))
        ctx.emit(EVENTS, reply, order_id=ctx.payload.order_id)

    return ConsumerSpec(
        name="commands", topics=[commands("fulfilment")],
        handlers={"CreateShipments": on_create, "CancelShipments": on_cancel},
        before_batch=_begin, after_batch=_write,
    )


async def _begin(conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
    """The commands of one order are applied one at a time across service instances: the batch locks
    its orders before the first command (and holds them until it commits), then reads their state
    once for the whole batch (after the locks: a batch that held them before has committed)."""
    order_ids = [env.order_id for env in envelopes]
    await repo.lock_orders(conn, order_ids)
    _BATCH.set(conn, CommandBatch(await repo.order_states(conn, order_ids)))


async def _write(conn: asyncpg.Connection) -> None:
    batch = _BATCH.get(conn)
    if batch is not None:
        await batch.flush(conn)


async def on_delivered(ctx: MessageContext) -> None:
    event = ctx.payload
    assert isinstance(event, ShipmentDeliveredV1)
    if not await repo.mark_delivered(ctx.conn, event.shipment_id, event.delivered_at):
        # Unknown, not yet dispatched, or already delivered: nothing to change.
        log.info("delivery of shipment %s changed nothing", event.shipment_id)


DELIVERIES = ConsumerSpec(
    name="deliveries", topics=[events("tracking")], handlers={"ShipmentDelivered": on_delivered}
)
