"""The order saga of docs/order-saga.md, as data: steps, their commands, what each reply means, the
compensations and the deadlines. Pure: no I/O (the engine in oms_saga runs it)."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel

from oms_contracts import billing, fulfilment, inventory, orders, tracking
from oms_contracts.topics import BILLING_REQUESTS, ORDERS_STATUS, commands
from oms_saga.definition import (
    Command,
    Compensation,
    End,
    Outcome,
    Saga,
    SagaView,
    Send,
    Step,
    Timeout,
    failure,
    ignore,
    resume,
    stuck,
    success,
    wait,
)

SAGA_TYPE = "order"
PRODUCER = "orchestrator"
INVENTORY = commands("inventory")
FULFILMENT = commands("fulfilment")

# Order status changes the saga may make (CONTRACT.md, Order statuses).
ALLOWED_STATUS_CHANGES: dict[str, frozenset[str]] = {
    "pending": frozenset({"backordered", "awaiting_payment", "confirmed", "rejected", "cancelled"}),
    "backordered": frozenset({"awaiting_payment", "confirmed", "rejected", "cancelled"}),
    "awaiting_payment": frozenset({"confirmed", "rejected", "cancelled"}),
    "confirmed": frozenset({"partially_shipped", "shipped", "rejected", "cancelled"}),
    "partially_shipped": frozenset({"shipped"}),
    "shipped": frozenset({"delivered"}),
    # After delivery the status follows the order's returns (returns.py), never backwards; back to
    # delivered only when the order's only return was cancelled before any unit came back.
    "delivered": frozenset({"return_requested", "partially_returned", "returned"}),
    "return_requested": frozenset({"partially_returned", "returned", "delivered"}),
    "partially_returned": frozenset({"returned"}),
}


@dataclass(frozen=True)
class Deadlines:
    step: float = 30.0
    attempts: int = 3
    payment: float = 3600.0
    backorder: float = 14 * 86400.0
    dispatch: float = 3 * 86400.0
    delivery: float = 30 * 86400.0


def rejected(reason: str) -> End:
    return End("failed", "rejected", reason)


# --- what the saga keeps ---------------------------------------------------------------------------


class PricedLine(BaseModel):
    sku: str
    quantity: int
    unit_price: Decimal


class ShipmentRef(BaseModel):
    shipment_id: UUID
    location_id: str


class OrderData(BaseModel):
    """What the order saga keeps of its order, and what it learns on the way. Stored as JSON in
    saga_instances.data (money as decimal strings, ids as strings): the shape the saga wrote before it
    was typed, so rows written then load unchanged (no migration)."""

    lines: list[PricedLine]
    currency: str
    payment_status: Literal["authorized", "pending"]
    shipping_method: Literal["standard", "express"]
    shipping_address: orders.Address
    allocations: list[inventory.Allocation] = []
    shipments: list[ShipmentRef] = []
    dispatched: list[UUID] = []
    delivered: list[UUID] = []
    total: Decimal | None = None  # the order's total (sagas started before it was kept: None)

    def payment_due(self) -> Decimal:
        """What a payment confirmation must cover: the order's total (the lines' sum for older sagas)."""
        return self.total if self.total is not None else sum(
            (li.unit_price * li.quantity for li in self.lines), Decimal(0))

    def shipment_amount(self, lines: list[inventory.StockLine]) -> Decimal:
        prices = {li.sku: li.unit_price for li in self.lines}
        return sum((prices.get(li.sku, Decimal(0)) * li.quantity for li in lines), Decimal(0))

    def shipment_ids(self) -> set[UUID]:
        return {s.shipment_id for s in self.shipments}


View = SagaView[OrderData]


def initial_data(order: orders.OrderPlacedV1) -> OrderData:
    return OrderData(
        lines=[PricedLine(sku=li.sku, quantity=li.quantity, unit_price=li.unit_price) for li in order.lines],
        currency=order.currency, payment_status=order.payment.status, shipping_method=order.shipping_method,
        shipping_address=order.shipping_address, total=order.total,
    )


# --- command builders -----------------------------------------------------------------------------


def reserve_stock(v: View) -> inventory.ReserveStockV1:
    return inventory.ReserveStockV1(
        order_id=v.order_id, destination_country=v.data.shipping_address.country,
        lines=[inventory.StockLine(sku=li.sku, quantity=li.quantity) for li in v.data.lines],
    )


def release_stock(v: View) -> inventory.ReleaseStockV1:
    return inventory.ReleaseStockV1(order_id=v.order_id, reason=v.end.reason if v.end else "compensation")


def create_shipments(v: View) -> fulfilment.CreateShipmentsV1:
    by_location: dict[str, list[inventory.StockLine]] = defaultdict(list)
    for a in v.data.allocations:
        by_location[a.location_id].append(inventory.StockLine(sku=a.sku, quantity=a.quantity))
    return fulfilment.CreateShipmentsV1(
        order_id=v.order_id, shipping_method=v.data.shipping_method, shipping_address=v.data.shipping_address,
        shipments=[fulfilment.ShipmentRequest(location_id=loc, lines=lines) for loc, lines in by_location.items()],
    )


def cancel_shipments(v: View) -> fulfilment.CancelShipmentsV1:
    return fulfilment.CancelShipmentsV1(order_id=v.order_id, reason=v.end.reason if v.end else "compensation")


# --- replies --------------------------------------------------------------------------------------


def on_reserved(v: View, e: inventory.StockReservedV1) -> Outcome:
    v.data.allocations = list(e.allocations)
    return success(detail=f"StockReserved ({e.strategy})")


def on_backordered(v: View, e: inventory.StockBackorderedV1) -> Outcome:
    # Inventory sends StockReserved on its own when stock arrives: accept it without causation.
    short = ", ".join(s.sku for s in e.short)
    return wait(status="backordered", reason="awaiting_stock", timeout="backorder", loose=True,
                detail=f"StockBackordered ({short})")


def on_reservation_failed(_: View, e: inventory.StockReservationFailedV1) -> Outcome:
    return failure(rejected(e.reason), detail=f"StockReservationFailed ({e.reason})")


def payment_authorized(v: View) -> bool:
    return v.data.payment_status == "authorized"


def on_payment_confirmed(v: View, e: billing.PaymentConfirmedV1) -> Outcome:
    due = v.data.payment_due()
    if e.amount != due or e.currency != v.data.currency:
        # Not this order's payment: flagged for an operator (who refunds or cancels), still waiting on
        # the gate (the payment deadline is off while flagged); a matching confirmation goes on.
        return stuck(f"PaymentConfirmed {e.amount} {e.currency} ({e.reference}) not accepted: "
                     f"the order is {due} {v.data.currency}")
    return success(detail=f"PaymentConfirmed ({e.reference})")


def on_shipments_created(v: View, e: fulfilment.ShipmentsCreatedV1) -> Outcome:
    v.data.shipments = [ShipmentRef(shipment_id=s.shipment_id, location_id=s.location_id) for s in e.shipments]
    return success(detail=f"ShipmentsCreated ({len(e.shipments)})")


def on_shipment_creation_failed(_: View, e: fulfilment.ShipmentCreationFailedV1) -> Outcome:
    return failure(rejected("shipment_failed"), detail=f"ShipmentCreationFailed ({e.reason})")


def on_dispatched(v: View, e: fulfilment.ShipmentDispatchedV1) -> Outcome:
    sid, known = e.shipment_id, v.data.shipment_ids()
    if sid in v.data.dispatched:
        return ignore(f"shipment {sid} already dispatched")
    if sid not in known:
        return ignore(f"shipment {sid} is not one of this order's")
    v.data.dispatched.append(sid)
    amount, currency = v.data.shipment_amount(e.lines), v.data.currency
    emit = (
        Send(INVENTORY, inventory.CommitStockV1(order_id=v.order_id, shipment_id=e.shipment_id,
                                                location_id=e.location_id, lines=e.lines)),
        Send(BILLING_REQUESTS, billing.PaymentCaptureRequestedV1(order_id=v.order_id, shipment_id=e.shipment_id,
                                                                 amount=amount, currency=currency)),
        Send(BILLING_REQUESTS, billing.InvoiceRequestedV1(order_id=v.order_id, shipment_id=e.shipment_id,
                                                          amount=amount, currency=currency)),
    )
    detail = f"ShipmentDispatched {len(v.data.dispatched)}/{len(known)}"
    if known <= set(v.data.dispatched):
        return success(status="shipped", emit=emit, detail=detail)
    return wait(status="partially_shipped", emit=emit, detail=detail)


def on_delivered(v: View, e: fulfilment.ShipmentDeliveredV1) -> Outcome:
    sid, known = e.shipment_id, v.data.shipment_ids()
    if sid in v.data.delivered or sid not in known:
        return ignore(f"shipment {sid} already delivered or not this order's")
    v.data.delivered.append(sid)
    detail = f"ShipmentDelivered {len(v.data.delivered)}/{len(known)}"
    return success(status="delivered", detail=detail) if known <= set(v.data.delivered) else wait(detail=detail)


def on_delivery_failed(v: View, e: tracking.ShipmentDeliveryFailedV1) -> Outcome:
    """delivery_failed: recorded, and the saga keeps waiting (carriers try again or hold the parcel
    for pickup; the delivery deadline still runs). returned_to_sender: the parcel will not reach the
    customer, so an operator decides (reship, refund, contact the customer): the saga is flagged."""
    sid, known = e.shipment_id, v.data.shipment_ids()
    if sid not in known or sid in v.data.delivered:
        return ignore(f"shipment {sid} already delivered or not this order's")
    reason = f": {e.reason}" if e.reason else ""
    if e.status == "returned_to_sender":
        return stuck(f"shipment {sid} returned to sender{reason}")
    return wait(detail=f"ShipmentDeliveryFailed {sid}{reason}")


def on_shipment_cancellation_refused(v: View, e: fulfilment.ShipmentCancellationRefusedV1) -> Outcome:
    """A shipment left before the cancellation reached fulfilment: the order goes on. The refusal
    lists the order's shipments: a cancellation that overtook ShipmentsCreated (which came while the
    saga was compensating, and was not applied then) leaves the saga without them. Dispatches that
    came meanwhile were remembered, and await_dispatch applies them on entry."""
    if e.shipments:
        v.data.shipments = [ShipmentRef(shipment_id=s.shipment_id, location_id=s.location_id) for s in e.shipments]
    if v.end is not None and v.end.state == "cancelled" and v.data.shipments:
        return resume("await_dispatch", emit=(_refusal(v, "already_dispatched"),),
                      detail=f"ShipmentCancellationRefused ({e.reason})")
    return stuck(f"shipments could not be cancelled ({e.reason})")


# --- cancellation and status ----------------------------------------------------------------------


def _refusal(v: View, reason: str) -> Send:
    return Send(ORDERS_STATUS, orders.OrderCancellationRefusedV1(order_id=v.order_id, reason=reason,
                                                                 status=v.status or "pending"))


def cancel_policy(v: View, e: orders.OrderCancellationRequestedV1) -> End | Outcome | None:
    """Cancellable until a shipment is dispatched; refused once one is, or when the saga ended."""
    if v.state == "compensating" and v.end is not None:
        if v.end.state == "cancelled":
            return None  # the same cancellation asked again
        return ignore_with(_refusal(v, f"already_{v.end.status}"), f"already ending as {v.end.status}")
    if v.state in ("completed", "failed", "cancelled"):
        return ignore_with(_refusal(v, f"already_{v.status}"), f"saga {v.state}")
    if v.data.dispatched:
        return ignore_with(_refusal(v, "already_dispatched"), "a shipment was dispatched")
    return End("cancelled", "cancelled", e.reason)


def ignore_with(message: Send, detail: str) -> Outcome:
    return Outcome("ignore", emit=(message,), detail=detail)


def status_event(order_id: UUID, old: str | None, new: str, reason: str | None, at: datetime,
                 sequence: int) -> Send:
    return Send(ORDERS_STATUS, orders.OrderStatusChangedV1(order_id=order_id, old_status=old, new_status=new,
                                                           reason=reason, changed_at=at, sequence=sequence))


def order_saga(d: Deadlines = Deadlines(), *, producer: str = PRODUCER) -> Saga:
    step = Timeout(d.step, d.attempts, "stuck")
    return Saga(
        name=SAGA_TYPE, producer=producer, data=OrderData, status_event=status_event, initial_status="pending",
        cancel_on={orders.OrderCancellationRequestedV1}, cancel=cancel_policy,
        remember={billing.PaymentConfirmedV1, fulfilment.ShipmentDispatchedV1, fulfilment.ShipmentDeliveredV1,
                  tracking.ShipmentDeliveryFailedV1},
        steps=(
            Step(
                "reserve_stock", command=Command(INVENTORY, reserve_stock),
                replies={inventory.StockReservedV1: on_reserved, inventory.StockBackorderedV1: on_backordered,
                         inventory.StockReservationFailedV1: on_reservation_failed},
                compensation=Compensation("release_stock", Command(INVENTORY, release_stock),
                                          {inventory.StockReleasedV1}, step),
                timeout=Timeout(d.step, d.attempts, rejected("inventory_timeout")),
                timeouts={"backorder": Timeout(d.backorder, 1, rejected("backorder_timeout"))},
            ),
            Step(
                "payment_gate", events={billing.PaymentConfirmedV1: on_payment_confirmed},
                passes_if=payment_authorized,
                timeout=Timeout(d.payment, 1, End("cancelled", "cancelled", "payment_timeout")),
                status="awaiting_payment",
            ),
            Step(
                "create_shipments", command=Command(FULFILMENT, create_shipments),
                replies={fulfilment.ShipmentsCreatedV1: on_shipments_created,
                         fulfilment.ShipmentCreationFailedV1: on_shipment_creation_failed},
                compensation=Compensation(
                    "cancel_shipments", Command(FULFILMENT, cancel_shipments), {fulfilment.ShipmentsCancelledV1},
                    step, refusals={fulfilment.ShipmentCancellationRefusedV1: on_shipment_cancellation_refused},
                ),
                timeout=Timeout(d.step, d.attempts, rejected("fulfilment_timeout")),
                status="confirmed",
            ),
            Step("await_dispatch", events={fulfilment.ShipmentDispatchedV1: on_dispatched},
                 timeout=Timeout(d.dispatch, 1, "stuck")),
            Step("await_delivery",
                 events={fulfilment.ShipmentDeliveredV1: on_delivered,
                         tracking.ShipmentDeliveryFailedV1: on_delivery_failed},
                 timeout=Timeout(d.delivery, 1, "stuck")),
        ),
    )
