"""Messages exchanged with the billing system (oms.billing.requests / oms.billing.events)."""

from typing import ClassVar
from uuid import UUID

from oms_contracts.base import Contract
from oms_contracts.types import Money


class PaymentConfirmedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "PaymentConfirmed"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    amount: Money
    currency: str
    reference: str


class RefundRequestedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "RefundRequested"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    return_id: UUID
    amount: Money
    currency: str


class PaymentCaptureRequestedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "PaymentCaptureRequested"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_id: UUID
    amount: Money
    currency: str


class InvoiceRequestedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "InvoiceRequested"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    shipment_id: UUID
    amount: Money
    currency: str


class RefundCompletedV1(Contract):
    """The billing system refunded a return (on oms.billing.events)."""

    EVENT_TYPE: ClassVar[str] = "RefundCompleted"
    EVENT_VERSION: ClassVar[int] = 1

    order_id: UUID
    return_id: UUID
    amount: Money
    currency: str
    reference: str
