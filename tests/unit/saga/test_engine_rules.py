"""Engine rules on the order saga: step deadlines (resend, then compensate), stale and duplicate
replies, compensations that are never confirmed, events before the saga starts."""

from decimal import Decimal
from uuid import uuid4

from oms_contracts import new_envelope
from oms_contracts.billing import PaymentConfirmedV1
from oms_contracts.inventory import Allocation, StockReservedV1
from oms_saga import engine
from oms_saga.state import Incoming
from orchestrator.domain import initial_data, order_saga
from tests.unit.saga.factory import (
    ALLOCATIONS,
    DEADLINES,
    NOW,
    delivered,
    dispatched,
    payment_confirmed,
    placed,
    released,
    reserved,
    saga_test,
    shipment_ids,
    shipments_cancelled,
    shipments_created,
    to_dispatch,
)


def test_no_reply_sends_again_then_compensates_with_inventory_timeout():
    t = saga_test()
    first = t.command("ReserveStock").event_id
    t.after(29).expect_nothing_sent()
    t.after(2).expect_sent("ReserveStock").expect_state("running", step="reserve_stock")
    second = t.command("ReserveStock").event_id
    assert second != first and t.state is not None and t.state.attempts == 2
    t.after(31).expect_sent("ReserveStock")
    t.after(31).expect_sent("ReleaseStock").expect_status("rejected", "inventory_timeout")
    t.expect_state("compensating", step="release_stock")
    t.reply(released(t)).expect_state("failed", step=None)


def test_a_reply_to_an_earlier_attempt_of_the_current_step_counts():
    t = saga_test()
    first = t.command("ReserveStock").event_id
    t.after(31).expect_sent("ReserveStock")
    t.reply(reserved(t), causation_id=first).expect_sent("CreateShipments")


def test_fulfilment_timeout_cancels_shipments_and_releases_stock():
    t = saga_test()
    t.reply(reserved(t))
    t.after(31).expect_sent("CreateShipments")
    t.after(31).expect_sent("CreateShipments")
    t.after(31).expect_sent("CancelShipments").expect_status(None)
    t.expect_to("CancelShipments", "oms.fulfilment.commands", reason="fulfilment_timeout")
    t.reply(shipments_cancelled(t)).expect_sent("ReleaseStock").expect_status("rejected", "fulfilment_timeout")
    t.reply(released(t)).expect_state("failed")


def test_release_never_confirmed_is_stuck_after_the_attempts():
    t = saga_test(payment="pending")
    t.reply(reserved(t)).after(3601).expect_sent("ReleaseStock")
    t.after(31).expect_sent("ReleaseStock")
    t.after(31).expect_sent("ReleaseStock")
    t.after(31).expect_nothing_sent().expect_state("compensating", step="release_stock", stuck=True)
    t.reply(released(t)).expect_state("cancelled", step=None, stuck=False)


def test_stale_reply_with_a_foreign_causation_is_ignored_and_recorded():
    t = saga_test()
    t.reply(reserved(t), causation_id=uuid4()).expect_unchanged().expect_note("stale")
    t.expect_state("running", step="reserve_stock")


def test_reply_for_a_step_no_longer_current_is_ignored():
    t = saga_test()
    t.reply(reserved(t))
    t.reply(reserved(t), to="ReserveStock").expect_unchanged().expect_note("stale")


def test_the_same_reply_twice_makes_one_transition():
    t = saga_test()
    command = t.command("ReserveStock")
    event = reserved(t)
    env = new_envelope(event, producer="inventory", order_id=t.order_id, causation_id=command.event_id)
    t.deliver(env, event).expect_sent("CreateShipments")
    t.deliver(env, event).expect_unchanged().expect_note("stale")
    assert len([c for c in t.statuses() if c.new == "confirmed"]) == 1


def test_a_shipment_dispatched_twice_commits_stock_once():
    t = to_dispatch(saga_test())
    first, _ = shipment_ids(t)
    t.receive(dispatched(t, first)).expect_sent("CommitStock", "PaymentCaptureRequested", "InvoiceRequested")
    t.receive(dispatched(t, first)).expect_unchanged().expect_note("ignored")


def test_replies_after_the_end_are_ignored():
    t = saga_test()
    t.reply(reserved(t))
    t.reply(shipments_created(t))
    for sid in shipment_ids(t):
        t.receive(dispatched(t, sid))
    for sid in shipment_ids(t):
        t.receive(delivered(t, sid))
    t.expect_state("completed")
    t.receive(payment_confirmed(t)).expect_unchanged().expect_note("ignored")
    t.receive(dispatched(t, shipment_ids(t)[0])).expect_unchanged()
    t.after(100 * 86400).expect_unchanged()


def test_payment_confirmed_before_the_order_creates_a_pending_saga():
    saga, order_id = order_saga(DEADLINES), uuid4()
    early = PaymentConfirmedV1(order_id=order_id, amount=Decimal("47.30"), currency="EUR", reference="p")
    env = new_envelope(early, producer="billing", order_id=order_id)
    pending = engine.handle(saga, None, Incoming.of(env, early), NOW)
    assert pending.state is not None and pending.state.state == "pending" and not pending.messages

    started = engine.start(saga, pending.state, order_id, initial_data(placed(order_id, payment="pending")), None, NOW)
    assert started.state is not None and started.state.saga_id == pending.state.saga_id
    reserve = started.messages[0][1]
    reply = StockReservedV1(order_id=order_id, reservation_id=uuid4(), strategy="s", reason="r",
                            allocations=[Allocation(location_id=lo, sku=s, quantity=q) for lo, s, q in ALLOCATIONS])
    renv = new_envelope(reply, producer="inventory", order_id=order_id, causation_id=reserve.event_id)
    after = engine.handle(saga, started.state, Incoming.of(renv, reply), NOW)
    assert [e.event_type for _, e in after.messages] == ["CreateShipments", "OrderStatusChanged"]
    assert [c.new for c in after.status_changes] == ["confirmed"]


def test_an_unknown_event_with_no_saga_creates_nothing():
    saga = order_saga(DEADLINES)
    t = saga_test()
    event = released(t)
    env = new_envelope(event, producer="inventory", order_id=uuid4())
    assert engine.handle(saga, None, Incoming.of(env, event), NOW).state is None


def test_a_second_start_changes_nothing():
    t = saga_test()
    assert t.state is not None
    again = engine.start(order_saga(DEADLINES), t.state, t.order_id, initial_data(placed(t.order_id)), None, NOW)
    assert not again.changed and not again.messages


def test_history_rows_close_with_outcomes():
    t = to_dispatch(saga_test())
    rows = {r.seq: r for tr in t.history for r in tr.steps.values()}
    assert [(r.step, r.outcome) for r in rows.values()] == [
        ("reserve_stock", "succeeded"), ("payment_gate", "passed"), ("create_shipments", "succeeded"),
        ("await_dispatch", None)]
    assert all(r.finished_at is not None for r in rows.values() if r.outcome)
