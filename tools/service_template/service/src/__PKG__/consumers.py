"""Kafka consumers of __NAME__: one batch per transaction, the inbox drops redeliveries, a failing
message goes to <topic>.dlq after CONSUMER_MAX_ATTEMPTS (all done by the platform)."""

import asyncpg

from __PKG__.domain import OrderSeen
from __PKG__.handlers import Service
from oms_contracts import Envelope
from oms_contracts.orders import OrderPlacedV1
from oms_contracts.topics import ORDERS_EVENTS
from oms_platform.consumer import BatchLocal, ConsumerSpec, MessageContext

# What the handlers of one batch decided, written once at its end (after_batch).
_ORDERS: BatchLocal[list[OrderSeen]] = BatchLocal("__PKG___orders")


def orders_consumer(service: Service) -> ConsumerSpec:
    async def begin(conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        _ORDERS.set(conn, [])

    async def on_placed(ctx: MessageContext) -> None:
        assert isinstance(ctx.payload, OrderPlacedV1)  # parsed into its contract model by the platform
        orders = _ORDERS.get(ctx.conn)
        assert orders is not None
        service.order_placed(orders, ctx.payload)

    async def write(conn: asyncpg.Connection) -> None:
        orders = _ORDERS.get(conn)
        if orders:
            await service.save_orders(conn, orders)
            orders.clear()

    return ConsumerSpec(name="orders", topics=[ORDERS_EVENTS], handlers={"OrderPlaced": on_placed},
                        before_batch=begin, after_batch=write)
