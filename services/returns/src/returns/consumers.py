"""Kafka consumers of returns.

- copies: returns' own copy of the facts it decides on (orders with their prices, shipments,
  deliveries, SKU settings), from other services' events; no synchronous call to any of them.
- saga: replies and events its return sagas await (inventory's StockRestocked, billing's
  RefundCompleted, the replacement order's OrderPlaced), each routed to the saga of its return."""

from uuid import UUID

from oms_contracts.billing import RefundCompletedV1
from oms_contracts.fulfilment import ShipmentDeliveredV1, ShipmentsCreatedV1
from oms_contracts.inventory import SkuSettingsChangedV1, StockRestockedV1
from oms_contracts.orders import OrderPlacedV1, OrderStatusChangedV1
from oms_contracts.topics import BILLING_EVENTS, ORDERS_EVENTS, ORDERS_STATUS, events
from oms_platform import telemetry
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork
from oms_saga.runner import SagaBatch, SagaRunner
from returns import repository as repo

# The payment method of an exchange's replacement order (order capture places it so, with the return
# id as the payment reference): that is how its OrderPlaced finds its return.
EXCHANGE_PAYMENT = "exchange"


async def on_order_placed(msg: Message, uow: UnitOfWork[None]) -> None:
    o = msg.payload
    assert isinstance(o, OrderPlacedV1)
    await repo.upsert_orders(uow.conn, [{
        "order_id": o.order_id, "channel": o.channel, "external_id": o.external_id, "currency": o.currency,
        "customer": o.customer.model_dump(mode="json"), "shipping_address": o.shipping_address.model_dump(mode="json"),
        "lines": [li.model_dump(mode="json") for li in o.lines], "created_at": o.created_at,
        "order_traceparent": telemetry.traceparent_of(msg.record.headers),  # later actions link to it
    }])


async def on_shipments_created(msg: Message, uow: UnitOfWork[None]) -> None:
    e = msg.payload
    assert isinstance(e, ShipmentsCreatedV1)
    await repo.upsert_shipments(uow.conn, [(s.shipment_id, e.order_id, s.location_id,
                                            [li.model_dump(mode="json") for li in s.lines]) for s in e.shipments])


async def on_shipment_delivered(msg: Message, uow: UnitOfWork[None]) -> None:
    e = msg.payload
    assert isinstance(e, ShipmentDeliveredV1)
    await repo.add_deliveries(uow.conn, [(e.order_id, e.shipment_id, e.delivered_at)])


async def on_status_changed(msg: Message, uow: UnitOfWork[None]) -> None:
    e = msg.payload
    assert isinstance(e, OrderStatusChangedV1)
    if e.new_status == "delivered":
        await repo.add_deliveries(uow.conn, [(e.order_id, None, e.changed_at)])


async def on_sku_settings(msg: Message, uow: UnitOfWork[None]) -> None:
    e = msg.payload
    assert isinstance(e, SkuSettingsChangedV1)
    await repo.upsert_sku_settings(uow.conn, [(e.sku, e.returnable, e.changed_at)])


COPIES = ConsumerSpec(
    name="copies",
    topics=[ORDERS_EVENTS, ORDERS_STATUS, events("fulfilment"), events("tracking"), events("inventory")],
    handlers={"OrderPlaced": on_order_placed, "ShipmentsCreated": on_shipments_created,
              "ShipmentDelivered": on_shipment_delivered, "OrderStatusChanged": on_status_changed,
              "SkuSettingsChanged": on_sku_settings},
)


def return_of(msg: Message) -> UUID | None:
    """The return a message is about (None: not about a return)."""
    p = msg.payload
    if isinstance(p, StockRestockedV1):
        return p.restock_id  # returns restock with restock_id = return_id
    if isinstance(p, RefundCompletedV1):
        return p.return_id
    if isinstance(p, OrderPlacedV1) and p.payment.method == EXCHANGE_PAYMENT and p.payment.reference:
        try:
            return UUID(p.payment.reference)
        except ValueError:
            return None
    return None


# The replacement order's statuses that decide an exchange (the others are not looked up).
REPLACEMENT_DECIDED = frozenset({"confirmed", "rejected", "cancelled"})


async def replacement_return(msg: Message, uow: UnitOfWork[SagaBatch]) -> UUID | None:
    """The return whose replacement order a status change is about (None: not a replacement)."""
    p = msg.payload
    if isinstance(p, OrderStatusChangedV1) and p.new_status in REPLACEMENT_DECIDED:
        return await repo.return_of_replacement(uow.conn, p.order_id)
    return None


def saga_consumer(runner: SagaRunner) -> ConsumerSpec:
    async def apply(msg: Message, uow: UnitOfWork[SagaBatch]) -> None:
        key = return_of(msg) or await replacement_return(msg, uow)
        if key is None:
            return
        tr = await runner.handle(msg, uow, key)
        if tr.state is not None and tr.changed:
            # The return's row follows its saga (status, history, outcome) in the same transaction.
            await repo.update_return(uow.conn, tr.state.order_id, tr.state.data, tr.state.updated_at)

    return runner.consumer("saga", [events("inventory"), BILLING_EVENTS, ORDERS_EVENTS, ORDERS_STATUS],
                           {t: apply for t in ("StockRestocked", "RefundCompleted", "OrderPlaced",
                                               "OrderStatusChanged")})

