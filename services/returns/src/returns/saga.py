"""The return saga as data (on the shared engine, oms_saga): one saga per return, keyed by its
return_id; its messages carry the order's id (Saga.order_of), so they stay in order with the order's.

    await_receipt  -> (goods received, inspected)       deadline: flagged stuck for the returns desk
    restock        -> RestockV1 to inventory            resellable units only; passes when there are none
    refund         -> RefundRequested to billing        awaits RefundCompleted; passes for an exchange
    exchange       -> ReplacementOrderRequested         awaits the replacement's OrderPlaced; passes for a refund

Cancellable before receipt (ReturnCancellationRequested, an internal event of the API). After
receipt the goods are back on the desk: nothing is undone automatically, each step is sent again on
its deadline and then flagged stuck for an operator. Inventory restocks once per restock_id (the
return_id) and billing refunds once per return_id, so a command sent again never acts twice."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from oms_contracts import billing, inventory, returns
from oms_contracts.base import Contract
from oms_contracts.orders import OrderPlacedV1
from oms_contracts.topics import BILLING_REQUESTS, commands, events
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
)

SAGA_TYPE = "return"
PRODUCER = "returns"
RETURNS_EVENTS = events("returns")
INVENTORY = commands("inventory")


@dataclass(frozen=True)
class Deadlines:
    receipt: float = 45 * 86400.0
    step: float = 30.0
    attempts: int = 3
    refund: float = 86400.0


class ReturnCancellationRequested(Contract):
    """Internal: the API asks the saga to cancel (never on Kafka)."""

    EVENT_TYPE: ClassVar[str] = "ReturnCancellationRequested"
    EVENT_VERSION: ClassVar[int] = 1

    return_id: UUID
    reason: str


def now_iso(v: SagaView) -> str:
    return v.now.isoformat()


def moved(v: SagaView, status: str) -> None:
    """The return's status (the returns table follows it) and its history."""
    v.data["status"] = status
    v.data["history"].append({"status": status, "at": now_iso(v)})


def _order(v: SagaView) -> UUID:
    return UUID(v.data["order_id"])


def _return(v: SagaView) -> UUID:
    return UUID(v.data["return_id"])


def resellable(v: SagaView) -> list[inventory.StockLine]:
    return [inventory.StockLine(sku=li["sku"], quantity=li["quantity"]) for li in v.data["received"]
            if li["condition"] == "resellable" and li["quantity"] > 0]


# --- command builders -----------------------------------------------------------------------------


def restock(v: SagaView) -> inventory.RestockV1:
    return inventory.RestockV1(order_id=_order(v), restock_id=_return(v), location_id=v.data["location_id"],
                               lines=resellable(v), reason=f"return {v.data['return_id']}")


def refund_requested(v: SagaView) -> billing.RefundRequestedV1:
    return billing.RefundRequestedV1(order_id=_order(v), return_id=_return(v), amount=v.data["refund_amount"],
                                     currency=v.data["currency"])


def replacement_requested(v: SagaView) -> returns.ReplacementOrderRequestedV1:
    lines = [returns.ReturnLine(sku=li["sku"], quantity=li["quantity"], reason="exchange")
             for li in _received_by_sku(v)]
    return returns.ReplacementOrderRequestedV1(order_id=_order(v), return_id=_return(v),
                                               replacement_order_id=UUID(v.data["replacement_order_id"]),
                                               channel=v.data["channel"], lines=lines)


def _received_by_sku(v: SagaView) -> list[dict[str, Any]]:
    units: dict[str, int] = {}
    for li in v.data["received"]:
        units[li["sku"]] = units.get(li["sku"], 0) + li["quantity"]
    return [{"sku": sku, "quantity": q} for sku, q in units.items() if q > 0]


# --- events and replies ---------------------------------------------------------------------------


def on_received(v: SagaView, e: returns.ReturnReceivedV1) -> Outcome:
    """The desk inspected the parcel (POST /receive): announced, then restock and refund/exchange."""
    v.data["received"] = [li.model_dump(mode="json") for li in e.lines]
    v.data["location_id"] = e.lines[0].location_id
    v.data["order_status"] = e.order_status
    moved(v, "received")
    return success(emit=(Send(RETURNS_EVENTS, e),), detail=f"received {sum(li.quantity for li in e.lines)} unit(s)")


def on_restocked(v: SagaView, e: inventory.StockRestockedV1) -> Outcome:
    return success(detail=f"StockRestocked ({sum(li.quantity for li in e.lines)} unit(s) at {e.location_id})")


def on_refund_completed(v: SagaView, e: billing.RefundCompletedV1) -> Outcome:
    if str(e.return_id) != v.data["return_id"]:
        return ignore(f"RefundCompleted of return {e.return_id}")
    moved(v, "refunded")
    return success(emit=_closing(v, "refunded", returns.ReturnRefundedV1(
        order_id=_order(v), return_id=_return(v), amount=e.amount, currency=e.currency, refunded_at=v.now,
    )), detail=f"RefundCompleted ({e.amount} {e.currency}, {e.reference})")


def on_replacement_placed(v: SagaView, e: OrderPlacedV1) -> Outcome:
    if str(e.order_id) != v.data["replacement_order_id"]:
        return ignore(f"order {e.order_id} is not this return's replacement")
    moved(v, "exchanged")
    return success(emit=_closing(v, "exchanged", returns.ReturnExchangedV1(
        order_id=_order(v), return_id=_return(v), replacement_order_id=e.order_id, exchanged_at=v.now,
    )), detail=f"replacement order {e.order_id} placed")


def _closing(v: SagaView, outcome: str, event: Contract) -> tuple[Send, ...]:
    moved(v, "closed")
    v.data["outcome"] = outcome
    closed = returns.ReturnClosedV1(order_id=_order(v), return_id=_return(v), outcome=outcome,  # type: ignore[arg-type]
                                    closed_at=v.now, order_status=v.data.get("order_status"))
    return Send(RETURNS_EVENTS, event), Send(RETURNS_EVENTS, closed)


def cancel_policy(v: SagaView, e: ReturnCancellationRequested) -> End | Outcome | None:
    """Cancellable until the goods are received."""
    if v.state == "running" and v.step == "await_receipt":
        moved(v, "cancelled")
        v.data["outcome"] = "cancelled"
        return End("cancelled", None, e.reason)
    return Outcome("ignore", detail=f"return is {v.data['status']}")


def no_status(order_id: UUID, old: str | None, new: str, reason: str | None, at: datetime) -> Send:
    raise AssertionError("the return saga announces no order status: its events carry the order's")


def return_saga(d: Deadlines = Deadlines(), *, producer: str = PRODUCER) -> Saga:
    step = Timeout(d.step, d.attempts, "stuck")
    return Saga(
        name=SAGA_TYPE, producer=producer, status_event=no_status, order_of=_order,
        cancel_on=frozenset({ReturnCancellationRequested.EVENT_TYPE}), cancel=cancel_policy,
        steps=(
            Step("await_receipt", events={"ReturnReceived": on_received}, timeout=Timeout(d.receipt, 1, "stuck")),
            Step("restock", command=Command(INVENTORY, restock), replies={"StockRestocked": on_restocked},
                 passes_if=lambda v: not resellable(v), timeout=step),
            Step("refund", command=Command(BILLING_REQUESTS, refund_requested),
                 events={"RefundCompleted": on_refund_completed},
                 passes_if=lambda v: v.data["resolution"] != "refund",
                 timeout=Timeout(d.refund, d.attempts, "stuck")),
            Step("exchange", command=Command(RETURNS_EVENTS, replacement_requested),
                 events={"OrderPlaced": on_replacement_placed},
                 passes_if=lambda v: v.data["resolution"] != "exchange", timeout=step),
        ),
    )
