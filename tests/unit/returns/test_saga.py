"""The return saga without broker or database (given/expect on the shared engine)."""

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

from oms_contracts.billing import RefundCompletedV1
from oms_contracts.inventory import StockLine, StockRestockedV1
from oms_contracts.returns import ReceivedLine, ReturnReceivedV1
from oms_saga.testing import given
from returns.saga import Deadlines, ReturnCancellationRequested, ReturnData, return_saga

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def started(resolution: str = "refund"):
    order_id, return_id = uuid4(), uuid4()
    data = ReturnData(return_id=return_id, order_id=order_id, channel="web", resolution=resolution, currency="EUR",
                      lines=[{"sku": "A", "quantity": 2, "reason": "x", "unit_price": "19.90"}],
                      replacement_order_id=uuid4(), refund_amount="39.80")
    t = given(return_saga(Deadlines(receipt=100, step=10, attempts=2, refund=50))).started(return_id, data)
    return t, order_id, return_id


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


def test_goods_that_never_arrive_flag_the_return_for_the_desk():
    t, _, _ = started()
    t.after(101).expect_state("running", step="await_receipt", stuck=True)
