"""Kafka consumers of order capture: keeps each order's status current from oms.orders.status."""

from oms_contracts.orders import OrderStatusChangedV1
from oms_contracts.topics import ORDERS_STATUS
from oms_platform.consumer import ConsumerSpec, MessageContext
from order_capture import repository as repo


async def on_status_changed(ctx: MessageContext) -> None:
    event = ctx.payload
    assert isinstance(event, OrderStatusChangedV1)
    await repo.apply_status(ctx.conn, event.order_id, event.new_status, event.reason, event.changed_at)


STATUS = ConsumerSpec(name="order-status", topics=[ORDERS_STATUS], handlers={"OrderStatusChanged": on_status_changed})
