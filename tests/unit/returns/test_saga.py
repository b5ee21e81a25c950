"""The return saga without broker or database (given/expect on the shared engine)."""

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

from oms_contracts.billing import RefundCompletedV1
from oms_contracts.inventory import StockLine, StockRestockedV1
from oms_contracts.orders import Address, Customer, OrderLine, OrderPlacedV1, OrderStatusChangedV1, Payment
from oms_contracts.returns import ReceivedLine, ReturnReceivedV1
from oms_saga.testing import given
from returns.saga import Deadlines, ReturnCancellationRequested, ReturnData, return_saga

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def started(resolution: str = "refund"):
    order_id, return_id = uuid4(), uuid4()
    data = ReturnData(return_id=return_id, order_id=order_id, channel="web", resolution=resolution, currency="EUR",
                      lines=[{"sku": "A", "quantity": 2, "reason": "x", "unit_price": "19.90"}],
                      replacement_order_id=uuid4(), refund_amount="39.80")
    t = given(return_saga(Deadlines(receipt=100, step=10, attempts=2, refund=50, replacement=300)))
    t.started(return_id, data)
    return t, order_id, return_id


def placed(order_id) -> OrderPlacedV1:
    """The replacement order as order capture places it (price 0.00, paid by the exchange)."""
    return OrderPlacedV1(
        order_id=order_id, channel="web", external_id=f"RMA-{order_id}", currency="EUR",
        customer=Customer(id="c-1", email="ana@example.com", name="Ana Lima"),
        shipping_address=Address(name="Ana Lima", line1="Rua Augusta 1", city="Lisboa", postal_code="1100-048",
                                 country="PT"),
        shipping_method="standard", lines=[OrderLine(sku="A", quantity=1, unit_price=Decimal("0.00"))],
        payment=Payment(method="exchange", status="authorized", reference=str(order_id), amount=Decimal("0.00")),
        total=Decimal("0.00"), created_at=NOW)


def received(order_id, return_id, *conditions: str) -> ReturnReceivedV1:
    got = [ReceivedLine(sku="A", quantity=1, condition=c, location_id="L1") for c in conditions]
    return ReturnReceivedV1(order_id=order_id, return_id=return_id, received_at=NOW, order_status="returned", lines=got)


def test_receipt_restocks_the_resellable_units_then_refunds_and_closes():
    t, order_id, return_id = started()
    t.expect_state("running", step="await_receipt").expect_nothing_sent()
    t.receive(received(order_id, return_id, "resellable", "damaged"))
    t.expect_sent("ReturnReceived", "Restock").expect_state("running", step="restock")
    restock = t.command("Restock")
    assert restock.order_id == order_id  # messages carry the order's id (their key), not the return's
    assert restock.payload["restock_id"] == str(return_id)
    assert restock.payload["lines"] == [{"sku": "A", "quantity": 1}]  # the damaged unit stays out
    t.after(11).expect_sent("Restock")  # no reply within the deadline: sent again
    t.reply(StockRestockedV1(order_id=order_id, restock_id=return_id, location_id="L1",
                             lines=[StockLine(sku="A", quantity=1)]))
    t.expect_to("RefundRequested", "oms.billing.requests", amount="39.80", currency="EUR")
    t.receive(RefundCompletedV1(order_id=order_id, return_id=return_id, amount=Decimal("39.80"), currency="EUR",
                                reference="rf"))
    t.expect_sent("ReturnRefunded", "ReturnClosed").expect_state("completed")
    assert t.state.data["status"] == "closed" and t.state.data["outcome"] == "refunded"


def test_only_damaged_units_skip_the_restock():
    t, order_id, return_id = started()
    t.receive(received(order_id, return_id, "damaged"))
    t.expect_sent("ReturnReceived", "RefundRequested").expect_state("running", step="refund")


def test_an_exchange_asks_for_the_replacement_order():
    t, order_id, return_id = started("exchange")
    t.receive(received(order_id, return_id, "damaged"))
    t.expect_sent("ReturnReceived", "ReplacementOrderRequested").expect_state("running", step="exchange")


def test_cancellable_before_receipt_only():
    t, order_id, return_id = started()
    t.receive(ReturnCancellationRequested(return_id=return_id, reason="changed my mind"))
    t.expect_state("cancelled")
    assert t.state.data["status"] == "cancelled"
    t, order_id, return_id = started()
    t.receive(received(order_id, return_id, "resellable"))
    t.receive(ReturnCancellationRequested(return_id=return_id, reason="late")).expect_state("running", step="restock")
    t.expect_note("refused")


def test_goods_not_received_within_the_window_expire_the_return():
    t, order_id, return_id = started()
    t.after(99).expect_state("running", step="await_receipt", stuck=False)
    t.after(2).expect_state("cancelled").expect_nothing_sent()  # the service closes it as expired
    t.receive(received(order_id, return_id, "resellable")).expect_state("cancelled").expect_nothing_sent()


def replacement_status(t, new: str, reason: str | None = None) -> OrderStatusChangedV1:
    return OrderStatusChangedV1(order_id=t.data.replacement_order_id, old_status="pending", new_status=new,
                                reason=reason, changed_at=NOW)


def test_an_exchange_closes_once_its_replacement_is_confirmed_not_when_placed():
    t, _, return_id = started("exchange")
    order_id = t.data.order_id
    t.receive(received(order_id, return_id, "damaged")).expect_sent("ReturnReceived", "ReplacementOrderRequested")
    t.receive(placed(t.data.replacement_order_id)).expect_state("running", step="exchange").expect_nothing_sent()
    t.after(200).expect_state("running", step="exchange", stuck=False)  # placed: the longer deadline runs
    t.receive(replacement_status(t, "confirmed")).expect_sent("ReturnExchanged", "ReturnClosed")
    t.expect_state("completed")
    assert t.data.outcome == "exchanged" and not t.data.refund_instead


def test_a_rejected_replacement_is_refunded_instead():
    t, _, return_id = started("exchange")
    order_id = t.data.order_id
    t.receive(received(order_id, return_id, "damaged"))
    t.receive(placed(t.data.replacement_order_id))
    t.receive(replacement_status(t, "rejected", "out_of_stock"))
    t.expect_to("RefundRequested", "oms.billing.requests", amount="39.80", currency="EUR",
                return_id=str(return_id)).expect_state("running", step="refund")
    t.receive(RefundCompletedV1(order_id=order_id, return_id=return_id, amount=Decimal("39.80"), currency="EUR",
                                reference="rf"))
    t.expect_sent("ReturnRefunded", "ReturnClosed").expect_state("completed")
    assert t.data.outcome == "refunded" and t.data.refund_instead


def test_a_cancelled_replacement_is_refunded_even_before_its_placement_was_heard():
    t, _, return_id = started("exchange")
    t.receive(received(t.data.order_id, return_id, "damaged"))
    t.receive(replacement_status(t, "cancelled", "customer")).expect_sent("RefundRequested")


def test_another_orders_status_is_not_the_replacements():
    t, _, return_id = started("exchange")
    t.receive(received(t.data.order_id, return_id, "damaged"))
    t.receive(OrderStatusChangedV1(order_id=uuid4(), old_status="pending", new_status="rejected", changed_at=NOW))
    t.expect_state("running", step="exchange").expect_nothing_sent()


def test_every_step_after_receipt_has_a_deadline_then_is_flagged_stuck():
    t, order_id, return_id = started("exchange")
    t.receive(received(order_id, return_id, "resellable"))
    t.after(11).expect_sent("Restock").after(11).expect_state("running", step="restock", stuck=True)
    t.reply(StockRestockedV1(order_id=order_id, restock_id=return_id, location_id="L1",
                             lines=[StockLine(sku="A", quantity=1)]))
    t.expect_sent("ReplacementOrderRequested")
    t.after(11).expect_sent("ReplacementOrderRequested").after(11).expect_state("running", step="exchange", stuck=True)
    t.receive(placed(t.data.replacement_order_id)).expect_state("running", step="exchange", stuck=False)
    t.after(301).expect_state("running", step="exchange", stuck=True)  # placed, never decided
    t.receive(replacement_status(t, "rejected", "out_of_stock")).expect_sent("RefundRequested")
    t.after(51).expect_sent("RefundRequested").after(51).expect_state("running", step="refund", stuck=True)
