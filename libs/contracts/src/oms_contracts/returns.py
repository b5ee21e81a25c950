"""Messages of the returns service (oms.returns.events, oms.returns.commands)."""

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from oms_contracts.base import Contract
from oms_contracts.types import Money

Resolution = Literal["refund", "exchange"]
Condition = Literal["resellable", "damaged"]
# What the order shows once a return exists (CONTRACT.md, Order statuses).
OrderReturnStatus = Literal["return_requested", "partially_returned", "returned"]


class ReturnLine(Contract):
    sku: str
    quantity: int
    reason: str


class ReceivedLine(Contract):
    sku: str
    quantity: int
    condition: Condition
    location_id: str


class ReturnApprovedV1(Contract):
    """A return authorisation (RMA) was accepted: the customer may send the goods."""

    EVENT_TYPE: ClassVar[str] = "ReturnApproved"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    return_id: UUID
    channel: str
    resolution: Resolution
    lines: list[ReturnLine]
    approved_at: datetime
    # The order's status because of its returns (return_requested while goods are on their way).
    order_status: OrderReturnStatus


class ReturnReceivedV1(Contract):
    """The goods of a return arrived and were inspected."""

    EVENT_TYPE: ClassVar[str] = "ReturnReceived"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    return_id: UUID
    lines: list[ReceivedLine]
    received_at: datetime
    # partially_returned while some delivered units are still with the customer, else returned.
    order_status: OrderReturnStatus


class ReturnRefundedV1(Contract):
    """Billing completed the return's refund."""

    EVENT_TYPE: ClassVar[str] = "ReturnRefunded"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    return_id: UUID
    amount: Money
    currency: str
    refunded_at: datetime


class ReturnExchangedV1(Contract):
    """The replacement order of an exchange was placed."""

    EVENT_TYPE: ClassVar[str] = "ReturnExchanged"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    return_id: UUID
    replacement_order_id: UUID
    exchanged_at: datetime


class ReturnClosedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "ReturnClosed"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    return_id: UUID
    outcome: Literal["refunded", "exchanged", "cancelled", "expired"]
    closed_at: datetime
    # The order's status because of its returns once this one closed (None: no effect left, e.g.
    # the only return was cancelled before receipt and the order is back to delivered).
    order_status: OrderReturnStatus | Literal["delivered"] | None = None


class ReplacementOrderRequestedV1(Contract):
    """Returns asks order capture to place an exchange's replacement order in the original order's
    channel, through the normal flow (the id is chosen by returns, so a redelivery places it once).
    The envelope's order_id is the ORIGINAL order (its messages stay in order); the replacement's id
    is replacement_order_id."""

    EVENT_TYPE: ClassVar[str] = "ReplacementOrderRequested"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    return_id: UUID
    replacement_order_id: UUID
    channel: str
    lines: list[ReturnLine]
