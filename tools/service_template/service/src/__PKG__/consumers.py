"""Kafka consumers of __NAME__: one batch per transaction, the inbox drops redeliveries, a failing
message goes to <topic>.dlq after CONSUMER_MAX_ATTEMPTS (all done by the platform)."""

from functools import partial

import asyncpg

from __PKG__.domain import OrderSeen
from __PKG__.handlers import Service
from oms_contracts import Envelope
from oms_contracts.orders import OrderPlacedV1
from oms_contracts.topics import ORDERS_EVENTS
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork


class OrdersBatch:
    """The batch state: what the handlers of one batch decided, written once at its end (flush)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.orders: list[OrderSeen] = []

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        pass  # nothing to read before the handlers

    async def flush(self, conn: asyncpg.Connection) -> None:
        if self.orders:
            orders, self.orders = self.orders, []
            await self.service.save_orders(conn, orders)


async def _on_placed(msg: Message, uow: UnitOfWork[OrdersBatch]) -> None:
    assert isinstance(msg.payload, OrderPlacedV1)  # parsed into its contract model by the platform
    uow.state.service.order_placed(uow.state.orders, msg.payload)


def orders_consumer(service: Service) -> ConsumerSpec:
    return ConsumerSpec(name="orders", topics=[ORDERS_EVENTS], handlers={"OrderPlaced": _on_placed},
                        batch_state=partial(OrdersBatch, service))
