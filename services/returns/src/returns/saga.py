"""The return saga as data (on the shared engine, oms_saga): one saga per return, keyed by its
return_id; its messages carry the order's id (Saga.order_of), so they stay in order with the order's.

    step           sends                       awaits                          deadline -> outcome
    await_receipt  -                           the desk's receipt (POST)       receipt window -> ends `expired`
    restock        RestockV1 to inventory      StockRestocked                  sent again, then stuck
    exchange       ReplacementOrderRequested   the replacement confirmed       sent again, then stuck
                                               (rejected/cancelled -> refund)  (placed: replacement window)
    refund         RefundRequested to billing  RefundCompleted                 sent again, then stuck

Before receipt a return is cancelled (ReturnCancellationRequested, an internal event of the API) or
expires; both undo only the approval (the label is void, the units may be returned again). After
receipt the goods are back on the desk and nothing is undone: each step is retried on its deadline
(inventory restocks once per restock_id = return_id, billing refunds once per return_id) and then
flagged stuck for an operator; an exchange whose replacement order is rejected or cancelled is
refunded instead (its compensation). See docs/returns.md."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel

from oms_contracts import billing, inventory, returns
from oms_contracts.base import Contract
from oms_contracts.orders import OrderPlacedV1, OrderStatusChangedV1
from oms_contracts.topics import BILLING_REQUESTS, commands, events
from oms_contracts.types import Money
from oms_saga.definition import (
    Command,
    End,
    Outcome,
    Saga,
    SagaView,
    Send,
    Step,
    Timeout,
    ignore,
    success,
    wait,
)

SAGA_TYPE = "return"
PRODUCER = "returns"
RETURNS_EVENTS = events("returns")
INVENTORY = commands("inventory")


@dataclass(frozen=True)
class Deadlines:
    receipt: float = 30 * 86400.0
    step: float = 30.0
    attempts: int = 3
    refund: float = 86400.0
    replacement: float = 15 * 86400.0  # a placed replacement may be backordered (14 days) before it is decided


# The receipt window passed: the saga ends cancelled with this reason, and the service closes the
# return as expired (handlers.Returns.settle_expired: it needs the order's other returns).
EXPIRED = End("cancelled", None, "expired")


class ReturnCancellationRequested(Contract):
    """Internal: the API asks the saga to cancel (never on Kafka)."""

    EVENT_TYPE: ClassVar[str] = "ReturnCancellationRequested"
    EVENT_VERSION: ClassVar[int] = 1

    return_id: UUID
    reason: str


class PricedReturnLine(BaseModel):
    sku: str
    quantity: int
    reason: str
    unit_price: Money


class StatusAt(BaseModel):
    status: str
    at: datetime


class ReturnData(BaseModel):
    """What the saga keeps of its return (JSON in saga_instances.data); the returns row follows it."""

    return_id: UUID
    order_id: UUID
    channel: str
    resolution: Literal["refund", "exchange"]
    currency: str
    lines: list[PricedReturnLine]
    replacement_order_id: UUID | None = None
    status: str = "awaiting_receipt"
    outcome: str | None = None
    history: list[StatusAt] = []
    received: list[returns.ReceivedLine] = []
    location_id: str | None = None
    refund_amount: Money | None = None
    order_status: str | None = None
    refund_instead: bool = False  # an exchange whose replacement order was rejected or cancelled

    def refunds(self) -> bool:
        return self.resolution == "refund" or self.refund_instead

    def moved(self, status: str, at: datetime) -> None:
        self.status = status
        self.history.append(StatusAt(status=status, at=at))

    def resellable(self) -> list[inventory.StockLine]:
        return [inventory.StockLine(sku=li.sku, quantity=li.quantity) for li in self.received
                if li.condition == "resellable" and li.quantity > 0]

    def received_by_sku(self) -> dict[str, int]:
        units: dict[str, int] = {}
        for li in self.received:
            units[li.sku] = units.get(li.sku, 0) + li.quantity
        return {sku: q for sku, q in units.items() if q > 0}


View = SagaView[ReturnData]


def _order(v: View) -> UUID:
    return v.data.order_id


# --- command builders -----------------------------------------------------------------------------


def restock(v: View) -> inventory.RestockV1:
    assert v.data.location_id is not None
    return inventory.RestockV1(order_id=v.data.order_id, restock_id=v.data.return_id, location_id=v.data.location_id,
                               lines=v.data.resellable(), reason=f"return {v.data.return_id}")


def refund_requested(v: View) -> billing.RefundRequestedV1:
    return billing.RefundRequestedV1(order_id=v.data.order_id, return_id=v.data.return_id,
                                     amount=v.data.refund_amount or Decimal("0.00"), currency=v.data.currency)


def replacement_requested(v: View) -> returns.ReplacementOrderRequestedV1:
    assert v.data.replacement_order_id is not None
    lines = [returns.ReturnLine(sku=sku, quantity=q, reason="exchange") for sku, q in v.data.received_by_sku().items()]
    return returns.ReplacementOrderRequestedV1(order_id=v.data.order_id, return_id=v.data.return_id,
                                               replacement_order_id=v.data.replacement_order_id,
                                               channel=v.data.channel, lines=lines)


# --- events and replies ---------------------------------------------------------------------------


def on_received(v: View, e: returns.ReturnReceivedV1) -> Outcome:
    """The desk inspected the parcel (POST /receive): announced, then restock and refund/exchange."""
    v.data.received = list(e.lines)
    v.data.location_id = e.lines[0].location_id
    v.data.order_status = e.order_status
    v.data.moved("received", v.now)
    return success(emit=(Send(RETURNS_EVENTS, e),), detail=f"received {sum(li.quantity for li in e.lines)} unit(s)")


def on_restocked(v: View, e: inventory.StockRestockedV1) -> Outcome:
    return success(detail=f"StockRestocked ({sum(li.quantity for li in e.lines)} unit(s) at {e.location_id})")


def on_refund_completed(v: View, e: billing.RefundCompletedV1) -> Outcome:
    if e.return_id != v.data.return_id:
        return ignore(f"RefundCompleted of return {e.return_id}")
    v.data.moved("refunded", v.now)
    return success(emit=_closing(v, "refunded", returns.ReturnRefundedV1(
        order_id=v.data.order_id, return_id=v.data.return_id, amount=e.amount, currency=e.currency, refunded_at=v.now,
    )), detail=f"RefundCompleted ({e.amount} {e.currency}, {e.reference})")


def on_replacement_placed(v: View, e: OrderPlacedV1) -> Outcome:
    """Placed is not yet kept: the replacement may still be rejected (out of stock) or cancelled."""
    if e.order_id != v.data.replacement_order_id:
        return ignore(f"order {e.order_id} is not this return's replacement")
    return wait(timeout="placed", detail=f"replacement order {e.order_id} placed")


def on_replacement_status(v: View, e: OrderStatusChangedV1) -> Outcome:
    if e.order_id != v.data.replacement_order_id:
        return ignore(f"order {e.order_id} is not this return's replacement")
    if e.new_status in ("rejected", "cancelled"):
        # The compensation of the exchange: the customer gets the received units' money back instead.
        v.data.refund_instead = True
        return success(detail=f"replacement order {e.new_status} ({e.reason}); refunding instead")
    if e.new_status != "confirmed":
        return wait(timeout="placed", detail=f"replacement order {e.new_status}")
    v.data.moved("exchanged", v.now)
    return success(emit=_closing(v, "exchanged", returns.ReturnExchangedV1(
        order_id=v.data.order_id, return_id=v.data.return_id, replacement_order_id=e.order_id, exchanged_at=v.now,
    )), detail=f"replacement order {e.order_id} confirmed")


def _closing(v: View, outcome: str, event: Contract) -> tuple[Send, ...]:
    v.data.moved("closed", v.now)
    v.data.outcome = outcome
    closed = returns.ReturnClosedV1(order_id=v.data.order_id, return_id=v.data.return_id,
                                    outcome=outcome, closed_at=v.now,
                                    order_status=v.data.order_status)
    return Send(RETURNS_EVENTS, event), Send(RETURNS_EVENTS, closed)


def cancel_policy(v: View, e: ReturnCancellationRequested) -> End | Outcome | None:
    """Cancellable until the goods are received."""
    if v.state == "running" and v.step == "await_receipt":
        v.data.moved("cancelled", v.now)
        v.data.outcome = "cancelled"
        return End("cancelled", None, e.reason)
    return Outcome("ignore", detail=f"return is {v.data.status}")


def no_status(order_id: UUID, old: str | None, new: str, reason: str | None, at: datetime, sequence: int) -> Send:
    raise AssertionError("the return saga announces no order status: its events carry the order's")


def return_saga(d: Deadlines = Deadlines(), *, producer: str = PRODUCER) -> Saga:
    step = Timeout(d.step, d.attempts, "stuck")
    return Saga(
        name=SAGA_TYPE, producer=producer, data=ReturnData, status_event=no_status, order_of=_order,
        cancel_on=frozenset({ReturnCancellationRequested}), cancel=cancel_policy,
        steps=(
            Step("await_receipt", events={returns.ReturnReceivedV1: on_received},
                 timeout=Timeout(d.receipt, 1, EXPIRED)),
            Step("restock", command=Command(INVENTORY, restock), replies={inventory.StockRestockedV1: on_restocked},
                 passes_if=lambda v: not v.data.resellable(), timeout=step),
            Step("exchange", command=Command(RETURNS_EVENTS, replacement_requested),
                 events={OrderPlacedV1: on_replacement_placed, OrderStatusChangedV1: on_replacement_status},
                 passes_if=lambda v: v.data.resolution != "exchange", timeout=step,
                 timeouts={"placed": Timeout(d.replacement, 1, "stuck")}),
            # Last, so that an exchange whose replacement was rejected falls back to it.
            Step("refund", command=Command(BILLING_REQUESTS, refund_requested),
                 events={billing.RefundCompletedV1: on_refund_completed},
                 passes_if=lambda v: not v.data.refunds(),
                 timeout=Timeout(d.refund, d.attempts, "stuck")),
        ),
    )
