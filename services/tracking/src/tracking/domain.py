"""Pure rules of tracking (no I/O): what each event adds to an order's timeline, written for a person
and never naming the customer (no email, phone or address), and how warehouse events and carrier scans
move a shipment (never backwards)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from oms_contracts import billing, fulfilment, inventory, orders, returns

# A shipment's life: the warehouse statuses in order, then what the carriers report.
WAREHOUSE = ("created", "picked", "packed", "dispatched")
SCAN_STATUSES = ("in_transit", "out_for_delivery", "delivered", "delivery_failed", "returned_to_sender")
# Nothing moves a shipment out of these (a carrier does not un-deliver a parcel).
FINAL = frozenset({"delivered", "returned_to_sender", "cancelled"})
CARRIER_FINAL = frozenset({"delivered", "returned_to_sender"})


@dataclass(frozen=True)
class Entry:
    """One line of an order's timeline; event_id makes it unique whatever the redeliveries."""

    event_id: UUID
    order_id: UUID
    at: datetime
    type: str
    detail: str


def warehouse_moves(current: str, new: str) -> bool:
    """picked / packed / dispatched / cancelled apply only while the shipment is in the warehouse and
    move it forward: a late or repeated event (or one after a carrier scan) changes nothing."""
    if current not in WAREHOUSE:
        return False
    if new == "cancelled":
        return current != "dispatched"
    return new in WAREHOUSE and WAREHOUSE.index(new) > WAREHOUSE.index(current)


def scan_moves(current: str, current_scan_at: datetime | None, new: str, at: datetime) -> bool:
    """Whether a carrier scan becomes the shipment's status. A final status stays; a delivered or
    returned_to_sender scan always wins over the others (whatever the carrier's clocks); otherwise
    the latest scan by the carrier's own time wins, so a scan arriving late does not move the
    shipment back (an in_transit from before an out_for_delivery), while a new attempt after a
    failed delivery does move it on."""
    if current in FINAL:
        return False
    if new in CARRIER_FINAL or current_scan_at is None:
        return True
    return at >= current_scan_at


# --- timeline details ------------------------------------------------------------------------------

STATUS_TEXT = {
    "pending": "Order received", "awaiting_payment": "Waiting for payment", "confirmed": "Order confirmed",
    "backordered": "Waiting for stock", "partially_shipped": "Partly shipped", "shipped": "Shipped",
    "delivered": "Delivered", "cancelled": "Cancelled", "rejected": "Rejected",
    "return_requested": "Return requested", "partially_returned": "Partly returned", "returned": "Returned",
}
SCAN_TEXT = {
    "in_transit": "In transit", "out_for_delivery": "Out for delivery", "delivered": "Delivered",
    "delivery_failed": "Delivery attempt failed", "returned_to_sender": "Returned to sender",
}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _reason(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def scan_detail(status: str, carrier: str, tracking_number: str, location: str | None, reason: str | None) -> str:
    where = f" at {location}" if location else ""
    why = f": {reason}" if reason else ""
    return f"{SCAN_TEXT.get(status, status)}{where}{why} ({carrier} {tracking_number})"


def _placed(e: orders.OrderPlacedV1) -> str:
    units = sum(li.quantity for li in e.lines)
    return (f"Order {e.external_id} placed through {e.channel}: {_count(units, 'item')}, "
            f"total {format(e.total, 'f')} {e.currency}")


def _status(e: orders.OrderStatusChangedV1) -> str:
    return f"{STATUS_TEXT.get(e.new_status, e.new_status)} (status {e.new_status}){_reason(e.reason)}"


def _created(e: fulfilment.ShipmentsCreatedV1) -> str:
    parcels = ", ".join(f"{s.carrier} {s.tracking_number}" for s in e.shipments)
    return f"{_count(len(e.shipments), 'shipment')} prepared: {parcels}"


def _dispatched(e: fulfilment.ShipmentDispatchedV1) -> str:
    return f"Shipment {e.tracking_number} handed to {e.carrier} ({e.service}) at {e.location_id}"


def _return_lines(lines: list[Any]) -> int:
    return sum(li.quantity for li in lines)


DESCRIBE: dict[str, Callable[[Any], str]] = {
    "OrderPlaced": _placed,
    "OrderStatusChanged": _status,
    "OrderCancellationRequested": lambda e: f"Cancellation requested{_reason(e.reason)}",
    "OrderCancellationRefused": lambda e: f"Cancellation refused{_reason(e.reason)}",
    "PaymentConfirmed": lambda e: f"Payment of {format(e.amount, 'f')} {e.currency} confirmed",
    "StockReserved": lambda e: "Items reserved at " + ", ".join(sorted({a.location_id for a in e.allocations})),
    "StockBackordered": lambda e: "Waiting for stock of " + ", ".join(s.sku for s in e.short),
    "StockReservationFailed": lambda e: f"Items could not be reserved{_reason(e.reason)}",
    "StockReleased": lambda e: f"Reserved items released{_reason(e.reason)}",
    "ShipmentsCreated": _created,
    "ShipmentCreationFailed": lambda e: f"Shipments could not be created{_reason(e.reason)}",
    "ShipmentStatusChanged": lambda e: f"Shipment {e.new_status} at the warehouse",
    "ShipmentDispatched": _dispatched,
    "ShipmentsCancelled": lambda e: f"{_count(len(e.shipment_ids), 'shipment')} cancelled{_reason(e.reason)}",
    "ShipmentCancellationRefused": lambda e: f"Shipments could not be cancelled{_reason(e.reason)}",
    "ReturnApproved": lambda e: f"Return of {_count(_return_lines(e.lines), 'item')} approved ({e.resolution})",
    "ReturnReceived": lambda e: f"Returned {_count(_return_lines(e.lines), 'item')} received",
    "ReturnRefunded": lambda e: f"Refund of {format(e.amount, 'f')} {e.currency} issued",
    "RefundCompleted": lambda e: f"Refund of {format(e.amount, 'f')} {e.currency} completed",
    "ReturnExchanged": lambda e: f"Replacement order {e.replacement_order_id} created",
    "ReturnClosed": lambda e: f"Return closed ({e.outcome})",
}

# The events each topic brings to the timeline (the consumer subscribes to exactly these).
MODELS: dict[str, type[BaseModel]] = {
    "OrderPlaced": orders.OrderPlacedV1, "OrderStatusChanged": orders.OrderStatusChangedV1,
    "OrderCancellationRequested": orders.OrderCancellationRequestedV1,
    "OrderCancellationRefused": orders.OrderCancellationRefusedV1,
    "PaymentConfirmed": billing.PaymentConfirmedV1, "RefundCompleted": billing.RefundCompletedV1,
    "StockReserved": inventory.StockReservedV1, "StockBackordered": inventory.StockBackorderedV1,
    "StockReservationFailed": inventory.StockReservationFailedV1, "StockReleased": inventory.StockReleasedV1,
    "ShipmentsCreated": fulfilment.ShipmentsCreatedV1, "ShipmentCreationFailed": fulfilment.ShipmentCreationFailedV1,
    "ShipmentStatusChanged": fulfilment.ShipmentStatusChangedV1, "ShipmentDispatched": fulfilment.ShipmentDispatchedV1,
    "ShipmentsCancelled": fulfilment.ShipmentsCancelledV1,
    "ShipmentCancellationRefused": fulfilment.ShipmentCancellationRefusedV1,
    "ReturnApproved": returns.ReturnApprovedV1, "ReturnReceived": returns.ReturnReceivedV1,
    "ReturnRefunded": returns.ReturnRefundedV1, "ReturnExchanged": returns.ReturnExchangedV1,
    "ReturnClosed": returns.ReturnClosedV1,
}
assert set(MODELS) == set(DESCRIBE)


def entry_for(event_id: UUID, order_id: UUID, at: datetime, event: BaseModel) -> Entry:
    event_type = event.EVENT_TYPE  # type: ignore[attr-defined]
    return Entry(event_id, order_id, at, event_type, DESCRIBE[event_type](event))


def warehouse_status(event: BaseModel) -> list[tuple[UUID, str]]:
    """The shipment status changes a fulfilment event reports: [(shipment_id, new status)]."""
    if isinstance(event, fulfilment.ShipmentStatusChangedV1):
        return [(event.shipment_id, event.new_status)]
    if isinstance(event, fulfilment.ShipmentDispatchedV1):
        return [(event.shipment_id, "dispatched")]
    if isinstance(event, fulfilment.ShipmentsCancelledV1):
        return [(sid, "cancelled") for sid in event.shipment_ids]
    return []
