"""Cancellation: compensated before any dispatch, refused after (docs/order-saga.md, Cancellation)."""

from oms_contracts import fulfilment
from oms_contracts.topics import ORDERS_STATUS
from orchestrator.domain import FULFILMENT, INVENTORY
from tests.unit.saga.factory import (
    backordered,
    cancel,
    cancellation_refused,
    creation_failed,
    delivered,
    dispatched,
    released,
    reserved,
    saga_test,
    shipment_ids,
    shipments_cancelled,
    shipments_created,
    to_dispatch,
)


def test_cancel_while_reserving_releases_whatever_may_be_held():
    t = saga_test()
    t.receive(cancel(t)).expect_status("cancelled", "customer_request").expect_sent("ReleaseStock")
    t.expect_to("ReleaseStock", INVENTORY, reason="customer_request")
    t.reply(reserved(t), to="ReserveStock").expect_note("stale").expect_nothing_sent()  # late answer
    t.reply(released(t)).expect_state("cancelled", step=None)


def test_cancel_while_backordered():
    t = saga_test()
    t.reply(backordered(t))
    t.receive(cancel(t)).expect_status("cancelled").expect_sent("ReleaseStock")


def test_cancel_awaiting_payment_releases_stock():
    t = saga_test(payment="pending")
    t.reply(reserved(t))
    t.receive(cancel(t)).expect_status("cancelled").expect_sent("ReleaseStock")
    t.reply(released(t)).expect_state("cancelled")


def test_cancel_while_creating_shipments_cancels_them_then_releases_stock():
    t = saga_test()
    t.reply(reserved(t))
    t.receive(cancel(t)).expect_sent("CancelShipments").expect_status(None)
    t.expect_to("CancelShipments", FULFILMENT, reason="customer_request")
    t.expect_state("compensating", step="cancel_shipments")
    t.reply(shipments_cancelled(t)).expect_sent("ReleaseStock").expect_status("cancelled", "customer_request")
    t.reply(released(t)).expect_state("cancelled", step=None).expect_nothing_sent()


def test_cancel_before_dispatch_cancels_shipments_and_releases_stock():
    t = to_dispatch(saga_test())
    t.receive(cancel(t)).expect_sent("CancelShipments").expect_state("compensating", step="cancel_shipments")
    t.reply(shipments_cancelled(t)).expect_sent("ReleaseStock").expect_status("cancelled")
    t.reply(released(t)).expect_state("cancelled", step=None)
    assert [c.new for c in t.statuses()] == ["confirmed", "cancelled"]


def test_cancel_after_a_dispatch_is_refused_and_status_unchanged():
    t = to_dispatch(saga_test())
    first, _ = shipment_ids(t)
    t.receive(dispatched(t, first))
    t.receive(cancel(t)).expect_status(None).expect_note("refused")
    t.expect_sent("OrderCancellationRefused")
    t.expect_to("OrderCancellationRefused", ORDERS_STATUS, reason="already_dispatched", status="partially_shipped")
    t.expect_state("running", step="await_dispatch")


def test_cancel_after_the_saga_ended_is_refused():
    t = saga_test()
    t.reply(reserved(t)).reply(shipments_created(t))
    for sid in shipment_ids(t):
        t.receive(dispatched(t, sid))
    for sid in shipment_ids(t):
        t.receive(delivered(t, sid))
    t.receive(cancel(t)).expect_sent("OrderCancellationRefused").expect_state("completed")
    t.expect_to("OrderCancellationRefused", ORDERS_STATUS, reason="already_delivered", status="delivered")


def test_dispatch_racing_the_cancellation_resumes_the_order():
    """Fulfilment dispatched before it saw CancelShipments: it refuses, and the order goes on."""
    t = to_dispatch(saga_test())
    first, second = shipment_ids(t)
    t.receive(cancel(t)).expect_sent("CancelShipments")
    t.receive(dispatched(t, first)).expect_note("deferred").expect_nothing_sent()
    t.reply(cancellation_refused(t)).expect_state("running", step="await_dispatch")
    t.expect_sent("OrderCancellationRefused", "CommitStock", "PaymentCaptureRequested", "InvoiceRequested")
    t.expect_status("partially_shipped")
    t.receive(dispatched(t, second)).expect_status("shipped")
    assert "cancelled" not in [c.new for c in t.statuses()]


def test_cancel_overtaking_shipment_creation_then_refused_resumes_with_the_refusals_shipments():
    """ShipmentsCreated and a dispatch come while the saga compensates; the refusal lists the shipments."""
    t = saga_test()
    t.reply(reserved(t))
    created = shipments_created(t)
    t.receive(cancel(t)).expect_sent("CancelShipments")
    t.reply(created, to="CreateShipments").expect_note("stale").expect_nothing_sent()
    for s in created.shipments:
        t.receive(dispatched(t, s.shipment_id, s.location_id)).expect_note("deferred")
    refusal = fulfilment.ShipmentCancellationRefusedV1(
        order_id=t.order_id, reason="already_dispatched", dispatched_shipment_ids=[created.shipments[0].shipment_id],
        shipments=created.shipments)
    t.reply(refusal).expect_state("running", step="await_delivery").expect_status("shipped")
    assert [s.shipment_id for s in t.data.shipments] == [s.shipment_id for s in created.shipments]


def test_a_second_cancellation_while_cancelling_changes_nothing():
    t = to_dispatch(saga_test())
    t.receive(cancel(t))
    t.receive(cancel(t)).expect_unchanged()


def test_cancel_while_a_rejection_is_compensated_is_refused():
    t = saga_test()
    t.reply(reserved(t)).reply(creation_failed(t)).expect_state("compensating", step="release_stock")
    t.receive(cancel(t)).expect_sent("OrderCancellationRefused").expect_state("compensating")
    t.expect_to("OrderCancellationRefused", ORDERS_STATUS, reason="already_rejected", status="rejected")


def test_cancel_while_a_payment_timeout_is_compensated_changes_nothing():
    t = saga_test(payment="pending")
    t.reply(reserved(t)).after(3601)
    t.receive(cancel(t)).expect_unchanged().expect_note("ignored")
