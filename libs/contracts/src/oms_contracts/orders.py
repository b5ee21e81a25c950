"""Events of order capture (oms.orders.events) and of the orchestrator (oms.orders.status)."""

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from oms_contracts.base import Contract
from oms_contracts.types import Money

OrderStatus = Literal[
    "pending",
    "awaiting_payment",
    "confirmed",
    "backordered",
    "partially_shipped",
    "shipped",
    "delivered",
    "cancelled",
    "rejected",
    "return_requested",
    "partially_returned",
    "returned",
]


class Customer(Contract):
    id: str
    email: str
    name: str
    phone: str | None = None


class Address(Contract):
    name: str
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    country: str


class OrderLine(Contract):
    sku: str
    quantity: int
    unit_price: Money


class Payment(Contract):
    method: str
    status: Literal["authorized", "pending"]
    reference: str | None = None
    amount: Money


class OrderPlacedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "OrderPlaced"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    channel: str
    external_id: str
    currency: str
    customer: Customer
    shipping_address: Address
    shipping_method: Literal["standard", "express"]
    lines: list[OrderLine]
    payment: Payment
    total: Money
    created_at: datetime


class OrderCancellationRequestedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "OrderCancellationRequested"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    reason: str
    requested_by: str


class OrderCancellationRefusedV1(Contract):
    """The saga refused a cancellation (e.g. already dispatched); the status is unchanged."""

    EVENT_TYPE: ClassVar[str] = "OrderCancellationRefused"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    reason: str
    status: OrderStatus


class OrderStatusChangedV1(Contract):
    """`sequence`: the order's status changes numbered 1, 2, 3... by the orchestrator (in the
    transaction that announces each), so a reader keeps the highest, whatever the delivery order or
    the clocks of the processes that announced them; absent in events announced before it existed
    (then `changed_at` orders them)."""

    EVENT_TYPE: ClassVar[str] = "OrderStatusChanged"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    old_status: OrderStatus | None
    new_status: OrderStatus
    reason: str | None = None
    changed_at: datetime
    sequence: int | None = Field(default=None, ge=1)

    def newer_than(self, other: "OrderStatusChangedV1") -> bool:
        """Whether this change comes after `other` (of the same order): by sequence when both have
        one, else by time (a tie: this one, the later delivered)."""
        if self.sequence is not None and other.sequence is not None:
            return self.sequence > other.sequence
        return self.changed_at >= other.changed_at
