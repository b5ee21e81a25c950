"""Kafka consumers of __NAME__: one batch per transaction, the inbox drops redeliveries, a failing
message goes to <topic>.dlq after CONSUMER_MAX_ATTEMPTS (all done by the platform)."""

from __PKG__.handlers import OrdersBatch, Service
from oms_contracts.orders import OrderPlacedV1
from oms_contracts.topics import ORDERS_EVENTS
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork


def orders_consumer(service: Service) -> ConsumerSpec:
    async def on_placed(msg: Message, uow: UnitOfWork[OrdersBatch]) -> None:
        assert isinstance(msg.payload, OrderPlacedV1)  # parsed into its contract model by the platform
        service.order_placed(uow, msg.payload)

    return ConsumerSpec(name="orders", topics=[ORDERS_EVENTS], handlers={"OrderPlaced": on_placed},
                        batch_state=OrdersBatch)
