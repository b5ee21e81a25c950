"""Messages of the tracking service (oms.tracking.events). Tracking also publishes
`ShipmentDelivered` (oms_contracts.fulfilment.ShipmentDeliveredV1) on the same topic when a carrier
reports a shipment delivered: the saga and fulfilment act on it."""

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from oms_contracts.base import Contract

ScanStatus = Literal["in_transit", "out_for_delivery", "delivered", "delivery_failed", "returned_to_sender"]


class CarrierScanRecordedV1(Contract):
    """A carrier's scan of a shipment, accepted once (by the carrier's event id)."""

    EVENT_TYPE: ClassVar[str] = "CarrierScanRecorded"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_id: UUID
    carrier: str
    carrier_event_id: str
    tracking_number: str
    status: ScanStatus
    occurred_at: datetime
    location: str | None = None
    reason: str | None = None


class ShipmentDeliveryFailedV1(Contract):
    """A carrier could not deliver (`delivery_failed`: it will try again or hold the parcel) or is
    sending the parcel back (`returned_to_sender`)."""

    EVENT_TYPE: ClassVar[str] = "ShipmentDeliveryFailed"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_id: UUID
    tracking_number: str
    status: Literal["delivery_failed", "returned_to_sender"]
    reason: str | None = None
    occurred_at: datetime
