"""Fulfilment commands (oms.fulfilment.commands) and events (oms.fulfilment.events)."""

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from oms_contracts.base import Contract
from oms_contracts.inventory import StockLine
from oms_contracts.orders import Address

ShipmentStatus = Literal["created", "picked", "packed", "dispatched", "delivered", "cancelled"]


class ShipmentRequest(Contract):
    location_id: str
    lines: list[StockLine]


class ShipmentInfo(Contract):
    shipment_id: UUID
    location_id: str
    lines: list[StockLine]
    carrier: str
    service: str
    tracking_number: str


# --- commands -------------------------------------------------------------------------------------


class CreateShipmentsV1(Contract):
    """One shipment per location of the reservation. Idempotent per order."""

    EVENT_TYPE: ClassVar[str] = "CreateShipments"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipping_method: Literal["standard", "express"]
    shipping_address: Address
    shipments: list[ShipmentRequest]


class CancelShipmentsV1(Contract):
    """Compensation: cancel the order's shipments; honoured before dispatch, refused after."""

    EVENT_TYPE: ClassVar[str] = "CancelShipments"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    reason: str


# --- events ---------------------------------------------------------------------------------------


class ShipmentsCreatedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "ShipmentsCreated"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipments: list[ShipmentInfo]


class ShipmentCreationFailedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "ShipmentCreationFailed"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    reason: str


class ShipmentStatusChangedV1(Contract):
    """picked / packed (operator transitions); dispatch has its own event below."""

    EVENT_TYPE: ClassVar[str] = "ShipmentStatusChanged"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_id: UUID
    old_status: ShipmentStatus
    new_status: ShipmentStatus
    at: datetime


class ShipmentDispatchedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "ShipmentDispatched"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_id: UUID
    location_id: str
    lines: list[StockLine]
    carrier: str
    service: str
    tracking_number: str
    dispatched_at: datetime


class ShipmentsCancelledV1(Contract):
    EVENT_TYPE: ClassVar[str] = "ShipmentsCancelled"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_ids: list[UUID]
    reason: str


class ShipmentCancellationRefusedV1(Contract):
    """`shipments`: every shipment of the order, as ShipmentsCreated listed them, so that a saga whose
    cancellation overtook ShipmentsCreated (it was compensating when that reply came) can go on with
    them; empty in refusals sent before the field existed."""

    EVENT_TYPE: ClassVar[str] = "ShipmentCancellationRefused"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    reason: str  # e.g. "already_dispatched"
    dispatched_shipment_ids: list[UUID]
    shipments: list[ShipmentInfo] = []


class ShipmentDeliveredV1(Contract):
    """A carrier reported delivery (published by tracking on oms.tracking.events)."""

    EVENT_TYPE: ClassVar[str] = "ShipmentDelivered"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_id: UUID
    tracking_number: str
    delivered_at: datetime
