"""Orders and participant replies for the order saga's unit tests."""

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4

from oms_contracts import billing, fulfilment, inventory, orders
from oms_saga.testing import SagaTest, given
from orchestrator.domain import Deadlines, initial_data, order_saga

DEADLINES = Deadlines(step=30, attempts=3, payment=3600, backorder=14 * 86400, dispatch=3 * 86400,
                      delivery=30 * 86400)
NOW = datetime(2025, 1, 1, tzinfo=UTC)

LINES = [("TSHIRT-RED-M", 2, "19.90"), ("MUG-1", 1, "7.50")]
# Two locations: one shipment each.
ALLOCATIONS = [("LIS", "TSHIRT-RED-M", 2), ("OPO", "MUG-1", 1)]


def placed(order_id: UUID, *, payment: str = "authorized") -> orders.OrderPlacedV1:
    total = sum((Decimal(p) * q for _, q, p in LINES), Decimal(0))
    return orders.OrderPlacedV1(
        order_id=order_id, channel="web", external_id=f"WEB-{order_id.hex[:8]}", currency="EUR",
        customer=orders.Customer(id="c-42", email="ana@example.com", name="Ana Lima"),
        shipping_address=orders.Address(name="Ana Lima", line1="Rua Augusta 1", city="Lisboa",
                                        postal_code="1100-048", country="PT"),
        shipping_method="standard",
        lines=[orders.OrderLine(sku=s, quantity=q, unit_price=Decimal(p)) for s, q, p in LINES],
        payment=orders.Payment(method="card", status=payment, reference="pay_1", amount=total),
        total=total, created_at=NOW,
    )


def saga_test(*, payment: str = "authorized", deadlines: Deadlines = DEADLINES) -> SagaTest:
    order_id = uuid4()
    return given(order_saga(deadlines), NOW).started(order_id, initial_data(placed(order_id, payment=payment)))


def reserved(t: SagaTest, allocations: list[tuple[str, str, int]] = ALLOCATIONS) -> inventory.StockReservedV1:
    return inventory.StockReservedV1(
        order_id=t.order_id, reservation_id=uuid4(), strategy="split_fewest_locations", reason="test",
        allocations=[inventory.Allocation(location_id=loc, sku=sku, quantity=q) for loc, sku, q in allocations],
    )


def backordered(t: SagaTest) -> inventory.StockBackorderedV1:
    return inventory.StockBackorderedV1(
        order_id=t.order_id, short=[inventory.ShortLine(sku="MUG-1", requested=1, available=0)])


def reservation_failed(t: SagaTest, reason: str = "out_of_stock") -> inventory.StockReservationFailedV1:
    return inventory.StockReservationFailedV1(
        order_id=t.order_id, reason=reason, short=[inventory.ShortLine(sku="MUG-1", requested=1, available=0)])


def released(t: SagaTest) -> inventory.StockReleasedV1:
    return inventory.StockReleasedV1(order_id=t.order_id, released=[], reason="test")


def payment_confirmed(t: SagaTest) -> billing.PaymentConfirmedV1:
    return billing.PaymentConfirmedV1(order_id=t.order_id, amount=Decimal("47.30"), currency="EUR", reference="p")


def shipments_created(t: SagaTest) -> fulfilment.ShipmentsCreatedV1:
    command = t.command("CreateShipments").payload
    return fulfilment.ShipmentsCreatedV1(order_id=t.order_id, shipments=[
        fulfilment.ShipmentInfo(shipment_id=uuid4(), location_id=s["location_id"],
                                lines=[inventory.StockLine(**li) for li in s["lines"]],
                                carrier="ctt", service="standard", tracking_number=f"TN{i}")
        for i, s in enumerate(command["shipments"])
    ])


def shipment_ids(t: SagaTest) -> list[UUID]:
    return [s.shipment_id for s in t.data.shipments]


def dispatched(t: SagaTest, shipment_id: UUID, location_id: str | None = None) -> fulfilment.ShipmentDispatchedV1:
    loc = location_id or next(s.location_id for s in t.data.shipments if s.shipment_id == shipment_id)
    lines = [inventory.StockLine(sku=sku, quantity=q) for lo, sku, q in ALLOCATIONS if lo == loc]
    return fulfilment.ShipmentDispatchedV1(
        order_id=t.order_id, shipment_id=shipment_id, location_id=loc, lines=lines, carrier="ctt",
        service="standard", tracking_number="TN", dispatched_at=NOW)


def delivered(t: SagaTest, shipment_id: UUID) -> fulfilment.ShipmentDeliveredV1:
    return fulfilment.ShipmentDeliveredV1(order_id=t.order_id, shipment_id=shipment_id, tracking_number="TN",
                                          delivered_at=NOW)


def creation_failed(t: SagaTest) -> fulfilment.ShipmentCreationFailedV1:
    return fulfilment.ShipmentCreationFailedV1(order_id=t.order_id, reason="no carrier")


def shipments_cancelled(t: SagaTest) -> fulfilment.ShipmentsCancelledV1:
    return fulfilment.ShipmentsCancelledV1(order_id=t.order_id, shipment_ids=shipment_ids(t), reason="test")


def cancellation_refused(t: SagaTest) -> fulfilment.ShipmentCancellationRefusedV1:
    return fulfilment.ShipmentCancellationRefusedV1(order_id=t.order_id, reason="already_dispatched",
                                                    dispatched_shipment_ids=shipment_ids(t)[:1])


def cancel(t: SagaTest, reason: str = "customer_request") -> orders.OrderCancellationRequestedV1:
    return orders.OrderCancellationRequestedV1(order_id=t.order_id, reason=reason, requested_by="operator")


def to_dispatch(t: SagaTest) -> SagaTest:
    """Drives a fresh saga (authorized payment) to await_dispatch with two shipments."""
    t.reply(reserved(t))
    return t.reply(shipments_created(t))
