"""Inventory commands (oms.inventory.commands) and events (oms.inventory.events).

Replies to a command carry the command's event_id as their envelope causation_id, so the saga can tell
a reply to the current attempt from a late one."""

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from oms_contracts.base import Contract


class StockLine(Contract):
    sku: str
    quantity: int


class Allocation(Contract):
    """Units of one SKU taken from one location."""

    location_id: str
    sku: str
    quantity: int


class ShortLine(Contract):
    sku: str
    requested: int
    available: int


# --- commands -------------------------------------------------------------------------------------


class ReserveStockV1(Contract):
    """Reserve every line for the order, sourcing from the fewest locations, destination country first.
    Idempotent per order: a second ReserveStock for an order that holds a reservation replies with it."""

    EVENT_TYPE: ClassVar[str] = "ReserveStock"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    lines: list[StockLine]
    destination_country: str


class ReleaseStockV1(Contract):
    """Compensation: give back whatever the order holds (reservation or backorder). Idempotent."""

    EVENT_TYPE: ClassVar[str] = "ReleaseStock"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    reason: str


class CommitStockV1(Contract):
    """A shipment left the building: its reserved units leave on_hand. Idempotent per shipment."""

    EVENT_TYPE: ClassVar[str] = "CommitStock"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_id: UUID
    location_id: str
    lines: list[StockLine]


class RestockV1(Contract):
    """Units come back into on_hand at a location (e.g. a resellable return). Idempotent per restock_id."""

    EVENT_TYPE: ClassVar[str] = "Restock"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    restock_id: UUID
    location_id: str
    lines: list[StockLine]
    reason: str


# --- events ---------------------------------------------------------------------------------------


class StockReservedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "StockReserved"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    reservation_id: UUID
    allocations: list[Allocation]
    # How the locations were chosen: "single_location_in_country", "single_location",
    # "split_fewest_locations", with a human-readable reason.
    strategy: str
    reason: str


class StockReservationFailedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "StockReservationFailed"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    reason: Literal["out_of_stock", "unknown_sku", "invalid_request"]
    short: list[ShortLine]


class StockBackorderedV1(Contract):
    """Not enough stock, but every short SKU allows backorders: the order waits in line (arrival order)
    and gets a StockReserved when stock arrives."""

    EVENT_TYPE: ClassVar[str] = "StockBackordered"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    short: list[ShortLine]


class StockReleasedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "StockReleased"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    released: list[Allocation]
    reason: str


class StockCommittedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "StockCommitted"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_id: UUID
    location_id: str
    lines: list[StockLine]


class StockRestockedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "StockRestocked"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    restock_id: UUID
    location_id: str
    lines: list[StockLine]


class LowStockV1(Contract):
    """Available units of a SKU (over all locations) fell under its low_stock_threshold."""

    EVENT_TYPE: ClassVar[str] = "LowStock"
    EVENT_VERSION: ClassVar[int] = 1

    sku: str
    available: int
    threshold: int
    at: datetime


class SkuSettingsChangedV1(Contract):
    """An operator changed a SKU's settings (PUT /v1/skus/{sku}); other services keep their own copy
    (returns: `returnable`). Published on oms.inventory.events; the envelope's order_id is the SKU's
    key as for LowStock (inventory's sku_key), so one SKU's changes stay in order."""

    EVENT_TYPE: ClassVar[str] = "SkuSettingsChanged"
    EVENT_VERSION: ClassVar[int] = 1

    sku: str
    allow_backorder: bool
    low_stock_threshold: int
    returnable: bool
    changed_at: datetime
