"""Which event types travel on which topic (CONTRACT.md, Kafka): the public map integrators read.

Each service declares what it sends itself (oms_contracts.publishing.Publishes, next to its code); a
declaration outside this map is refused when it is made, and tests/contracts checks that every entry
here (but the billing system's own events) is sent by some service. Consumers' AsyncAPI documents use
it to say which of the event types a consumer handles arrive on which of its topics."""

from pydantic import BaseModel

from oms_contracts import billing, channels, fulfilment, inventory, orders, returns, tracking
from oms_contracts.topics import (
    BILLING_EVENTS,
    BILLING_REQUESTS,
    CHANNELS_EVENTS,
    ORDERS_EVENTS,
    ORDERS_STATUS,
    commands,
    events,
)

TOPIC_EVENTS: dict[str, tuple[type[BaseModel], ...]] = {
    ORDERS_EVENTS: (orders.OrderPlacedV1, orders.OrderCancellationRequestedV1),
    ORDERS_STATUS: (orders.OrderStatusChangedV1, orders.OrderCancellationRefusedV1),
    BILLING_REQUESTS: (billing.PaymentCaptureRequestedV1, billing.InvoiceRequestedV1, billing.RefundRequestedV1),
    BILLING_EVENTS: (billing.PaymentConfirmedV1, billing.RefundCompletedV1),  # sent by the billing system
    CHANNELS_EVENTS: (channels.ChannelKeyIssuedV1, channels.ChannelKeyRevokedV1),
    commands("inventory"): (inventory.ReserveStockV1, inventory.ReleaseStockV1, inventory.CommitStockV1,
                            inventory.RestockV1),
    events("inventory"): (inventory.StockReservedV1, inventory.StockReservationFailedV1, inventory.StockBackorderedV1,
                          inventory.StockReleasedV1, inventory.StockCommittedV1, inventory.StockRestockedV1,
                          inventory.LowStockV1, inventory.SkuSettingsChangedV1),
    commands("fulfilment"): (fulfilment.CreateShipmentsV1, fulfilment.CancelShipmentsV1),
    events("fulfilment"): (fulfilment.ShipmentsCreatedV1, fulfilment.ShipmentCreationFailedV1,
                           fulfilment.ShipmentStatusChangedV1, fulfilment.ShipmentDispatchedV1,
                           fulfilment.ShipmentsCancelledV1, fulfilment.ShipmentCancellationRefusedV1),
    events("tracking"): (tracking.CarrierScanRecordedV1, fulfilment.ShipmentDeliveredV1,
                         tracking.ShipmentDeliveryFailedV1),
    events("returns"): (returns.ReturnApprovedV1, returns.ReturnReceivedV1, returns.ReturnRefundedV1,
                        returns.ReturnExchangedV1, returns.ReturnClosedV1, returns.ReplacementOrderRequestedV1),
}
# Sent from outside the OMS (no service declares them).
EXTERNAL_TOPICS = (BILLING_EVENTS,)


def models_on(topic: str, event_types: set[str] | None = None) -> tuple[type[BaseModel], ...]:
    """The contract classes that travel on `topic` (only those of `event_types`, if given)."""
    return tuple(m for m in TOPIC_EVENTS.get(topic, ())
                 if event_types is None or vars(m)["EVENT_TYPE"] in event_types)
