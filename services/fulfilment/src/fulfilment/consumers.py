"""Kafka consumers of fulfilment: the saga's commands (oms.fulfilment.commands), and deliveries
reported by tracking (oms.tracking.events) that close a dispatched shipment."""

import logging

from fulfilment import repository as repo
from fulfilment.handlers import EVENTS, CommandBatch, Fulfilment
from oms_contracts.fulfilment import CancelShipmentsV1, CreateShipmentsV1, ShipmentDeliveredV1
from oms_contracts.topics import commands, events
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork

log = logging.getLogger(__name__)


def command_consumer(service: Fulfilment) -> ConsumerSpec:
    async def on_create(msg: Message, uow: UnitOfWork[CommandBatch]) -> None:
        assert isinstance(msg.payload, CreateShipmentsV1)
        uow.emit(EVENTS, await service.create_shipments(uow, msg.payload), order_id=msg.payload.order_id)

    async def on_cancel(msg: Message, uow: UnitOfWork[CommandBatch]) -> None:
        assert isinstance(msg.payload, CancelShipmentsV1)
        uow.emit(EVENTS, await service.cancel_shipments(uow, msg.payload), order_id=msg.payload.order_id)

    return ConsumerSpec(
        name="commands", topics=[commands("fulfilment")],
        handlers={"CreateShipments": on_create, "CancelShipments": on_cancel},
        batch_state=CommandBatch,
    )


async def on_delivered(msg: Message, uow: UnitOfWork[None]) -> None:
    event = msg.payload
    assert isinstance(event, ShipmentDeliveredV1)
    if not await repo.mark_delivered(uow.conn, event.shipment_id, event.delivered_at):
        # Unknown, not yet dispatched, or already delivered: nothing to change.
        log.info("delivery of shipment %s changed nothing", event.shipment_id)


DELIVERIES = ConsumerSpec(
    name="deliveries", topics=[events("tracking")], handlers={"ShipmentDelivered": on_delivered}
)
