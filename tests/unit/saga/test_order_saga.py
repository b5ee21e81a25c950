"""The order saga, row by row of docs/order-saga.md: given replies, expect commands and statuses."""

from decimal import Decimal

import pytest

from oms_contracts.topics import BILLING_REQUESTS, ORDERS_STATUS
from orchestrator.domain import FULFILMENT, INVENTORY
from tests.unit.saga.factory import (
    backordered,
    creation_failed,
    delivered,
    dispatched,
    payment_confirmed,
    released,
    reservation_failed,
    reserved,
    saga_test,
    shipment_ids,
    shipments_created,
    to_dispatch,
)


def test_start_sends_reserve_stock_to_inventory():
    t = saga_test()
    t.expect_sent("ReserveStock").expect_to("ReserveStock", INVENTORY, destination_country="PT")
    t.expect_state("running", step="reserve_stock").expect_status(None)
    assert t.command("ReserveStock").payload["lines"] == [{"sku": "TSHIRT-RED-M", "quantity": 2},
                                                          {"sku": "MUG-1", "quantity": 1}]


def test_happy_path_two_shipments_to_delivered():
    t = saga_test()
    t.reply(reserved(t)).expect_sent("CreateShipments").expect_status("confirmed")
    t.expect_to("CreateShipments", FULFILMENT, shipping_method="standard")
    assert [s["location_id"] for s in t.command("CreateShipments").payload["shipments"]] == ["LIS", "OPO"]
    t.reply(shipments_created(t)).expect_nothing_sent().expect_state("running", step="await_dispatch")
    first, second = shipment_ids(t)

    t.receive(dispatched(t, first)).expect_status("partially_shipped")
    t.expect_sent("CommitStock", "PaymentCaptureRequested", "InvoiceRequested")
    t.expect_to("CommitStock", INVENTORY, shipment_id=str(first), location_id="LIS")
    t.expect_to("PaymentCaptureRequested", BILLING_REQUESTS, amount="39.80", currency="EUR")
    t.expect_to("InvoiceRequested", BILLING_REQUESTS, amount="39.80", shipment_id=str(first))

    t.receive(dispatched(t, second)).expect_status("shipped").expect_state("running", step="await_delivery")
    t.expect_to("PaymentCaptureRequested", BILLING_REQUESTS, amount="7.50")

    t.receive(delivered(t, first)).expect_status(None).expect_state("running", step="await_delivery")
    t.receive(delivered(t, second)).expect_status("delivered").expect_nothing_sent()
    t.expect_state("completed", step=None)
    assert [c.new for c in t.statuses()] == ["confirmed", "partially_shipped", "shipped", "delivered"]


def test_status_changes_go_to_the_status_topic_with_old_and_new():
    t = saga_test()
    t.reply(reserved(t))
    topic, env = next((tp, e) for tp, e in t.last.messages if e.event_type == "OrderStatusChanged")
    assert topic == ORDERS_STATUS
    assert env.payload["old_status"] == "pending" and env.payload["new_status"] == "confirmed"


def test_out_of_stock_rejects_without_compensation():
    t = saga_test()
    t.reply(reservation_failed(t)).expect_status("rejected", "out_of_stock").expect_nothing_sent()
    t.expect_state("failed", step=None)


def test_backorder_waits_then_stock_arrives_and_order_is_confirmed():
    t = saga_test()
    t.reply(backordered(t)).expect_status("backordered").expect_nothing_sent()
    t.expect_state("running", step="reserve_stock")
    t.after(3600).expect_nothing_sent().expect_state("running", step="reserve_stock")  # no resend
    # Inventory fills the backorder on its own: its StockReserved answers no command of ours.
    t.receive(reserved(t)).expect_status("confirmed").expect_sent("CreateShipments")


def test_backorder_deadline_releases_and_rejects():
    t = saga_test()
    t.reply(backordered(t))
    t.after(14 * 86400 + 1).expect_status("rejected", "backorder_timeout").expect_sent("ReleaseStock")
    t.expect_to("ReleaseStock", INVENTORY, reason="backorder_timeout").expect_state("compensating",
                                                                                    step="release_stock")
    t.reply(released(t)).expect_state("failed", step=None).expect_nothing_sent()


def test_pending_payment_waits_then_is_confirmed():
    t = saga_test(payment="pending")
    t.reply(reserved(t)).expect_status("awaiting_payment").expect_nothing_sent()
    t.expect_state("running", step="payment_gate")
    t.receive(payment_confirmed(t)).expect_status("confirmed").expect_sent("CreateShipments")


@pytest.mark.parametrize("wrong", [{"amount": Decimal("47.29")}, {"currency": "USD"}], ids=["amount", "currency"])
def test_a_payment_of_the_wrong_amount_or_currency_is_not_accepted_and_flags_the_saga(wrong):
    """Issue 13: not taken as the order's payment; the saga keeps waiting on the gate, flagged for an
    operator with the mismatch in the step's detail, and the right confirmation still goes on."""
    t = saga_test(payment="pending")
    t.reply(reserved(t)).expect_status("awaiting_payment")
    t.receive(payment_confirmed(t).model_copy(update=wrong)).expect_nothing_sent().expect_status(None)
    t.expect_state("running", step="payment_gate", stuck=True)
    [detail] = [r.detail for r in t.last.steps.values() if r.detail and r.detail.startswith("stuck:")]
    assert "47.30 EUR" in detail and "not accepted" in detail
    t.receive(payment_confirmed(t)).expect_status("confirmed").expect_sent("CreateShipments")
    t.expect_state("running", step="create_shipments", stuck=False)


def test_payment_confirmed_before_the_gate_is_remembered():
    t = saga_test(payment="pending")
    t.receive(payment_confirmed(t)).expect_note("deferred").expect_nothing_sent()
    t.reply(reserved(t)).expect_sent("CreateShipments")
    assert [c.new for c in t.statuses()] == ["confirmed"]  # never awaiting_payment


def test_payment_timeout_releases_stock_and_cancels():
    t = saga_test(payment="pending")
    t.reply(reserved(t))
    t.after(3599).expect_nothing_sent()
    t.after(2).expect_status("cancelled", "payment_timeout").expect_sent("ReleaseStock")
    t.expect_to("ReleaseStock", INVENTORY, reason="payment_timeout")
    t.reply(released(t)).expect_state("cancelled", step=None)


def test_shipment_creation_failure_releases_stock_and_rejects():
    t = saga_test()
    t.reply(reserved(t))
    t.reply(creation_failed(t)).expect_status("rejected", "shipment_failed").expect_sent("ReleaseStock")
    t.expect_state("compensating", step="release_stock")
    t.reply(released(t)).expect_state("failed", step=None).expect_nothing_sent()


def test_dispatch_deadline_flags_stuck_and_compensates_nothing():
    t = to_dispatch(saga_test())
    t.after(3 * 86400 + 1).expect_nothing_sent().expect_status(None)
    t.expect_state("running", step="await_dispatch", stuck=True)
    t.after(86400).expect_unchanged()  # flagged once, no deadline left
    first, second = shipment_ids(t)
    t.receive(dispatched(t, first)).expect_state("running", step="await_dispatch", stuck=False)
    assert t.state is not None and t.state.deadline_at is not None  # progress: the deadline runs again


def test_delivery_deadline_flags_stuck():
    t = to_dispatch(saga_test())
    for sid in shipment_ids(t):
        t.receive(dispatched(t, sid))
    t.after(30 * 86400 + 1).expect_nothing_sent().expect_state("running", step="await_delivery", stuck=True)


def test_delivery_reported_before_dispatch_is_remembered():
    t = to_dispatch(saga_test())
    first, second = shipment_ids(t)
    t.receive(dispatched(t, first))
    t.receive(delivered(t, first)).expect_note("deferred")
    t.receive(dispatched(t, second)).expect_state("running", step="await_delivery")
    t.receive(delivered(t, second)).expect_state("completed", step=None).expect_status("delivered")


def test_backorder_then_failure_releases_the_backorder():
    t = saga_test()
    t.reply(backordered(t))
    t.reply(reservation_failed(t), to="ReserveStock").expect_status("rejected", "out_of_stock")
    t.expect_sent("ReleaseStock").expect_state("compensating", step="release_stock")
