"""Participants' events for the orchestrator's integration tests, built from the commands it sent."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from oms_contracts import billing, fulfilment, inventory

# Two locations, so the order leaves in two shipments.
ALLOCATIONS = [("LIS", "TSHIRT-RED-M", 2), ("OPO", "MUG-1", 1)]


def _order(command: dict) -> uuid.UUID:
    return uuid.UUID(command["order_id"])


def reserved(command: dict) -> inventory.StockReservedV1:
    return inventory.StockReservedV1(
        order_id=_order(command), reservation_id=uuid.uuid4(), strategy="split_fewest_locations", reason="test",
        allocations=[inventory.Allocation(location_id=loc, sku=s, quantity=q) for loc, s, q in ALLOCATIONS])


def reservation_failed(command: dict) -> inventory.StockReservationFailedV1:
    return inventory.StockReservationFailedV1(
        order_id=_order(command), reason="out_of_stock",
        short=[inventory.ShortLine(sku="MUG-1", requested=1, available=0)])


def backordered(command: dict) -> inventory.StockBackorderedV1:
    return inventory.StockBackorderedV1(
        order_id=_order(command), short=[inventory.ShortLine(sku="MUG-1", requested=1, available=0)])


def released(command: dict) -> inventory.StockReleasedV1:
    return inventory.StockReleasedV1(order_id=_order(command), released=[], reason=command["payload"]["reason"])


def shipments_created(command: dict) -> fulfilment.ShipmentsCreatedV1:
    return fulfilment.ShipmentsCreatedV1(order_id=_order(command), shipments=[
        fulfilment.ShipmentInfo(shipment_id=uuid.uuid4(), location_id=s["location_id"],
                                lines=[inventory.StockLine(**li) for li in s["lines"]], carrier="ctt",
                                service="standard", tracking_number=f"TN{i}")
        for i, s in enumerate(command["payload"]["shipments"])
    ])


def creation_failed(command: dict) -> fulfilment.ShipmentCreationFailedV1:
    return fulfilment.ShipmentCreationFailedV1(order_id=_order(command), reason="no carrier for the address")


def shipments_cancelled(command: dict, created: fulfilment.ShipmentsCreatedV1) -> fulfilment.ShipmentsCancelledV1:
    return fulfilment.ShipmentsCancelledV1(order_id=_order(command), reason=command["payload"]["reason"],
                                           shipment_ids=[s.shipment_id for s in created.shipments])


def dispatched(shipment: fulfilment.ShipmentInfo, order_id: uuid.UUID) -> fulfilment.ShipmentDispatchedV1:
    return fulfilment.ShipmentDispatchedV1(
        order_id=order_id, shipment_id=shipment.shipment_id, location_id=shipment.location_id,
        lines=shipment.lines, carrier=shipment.carrier, service=shipment.service,
        tracking_number=shipment.tracking_number, dispatched_at=datetime.now(UTC))


def delivered(shipment: fulfilment.ShipmentInfo, order_id: uuid.UUID) -> fulfilment.ShipmentDeliveredV1:
    return fulfilment.ShipmentDeliveredV1(order_id=order_id, shipment_id=shipment.shipment_id,
                                          tracking_number=shipment.tracking_number, delivered_at=datetime.now(UTC))


def payment_confirmed(order_id: uuid.UUID) -> billing.PaymentConfirmedV1:
    return billing.PaymentConfirmedV1(order_id=order_id, amount=Decimal("47.30"), currency="EUR", reference="pay_1")
