"""Random sequences of replies, stale replies, events, cancellations and clock jumps against the
order saga: whatever happens, its invariants hold."""

from uuid import uuid4

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from oms_saga.state import TERMINAL
from oms_saga.testing import SagaTest
from orchestrator.domain import ALLOWED_STATUS_CHANGES
from tests.unit.saga import factory as f

# reply kind -> (the command it answers, the event builder)
REPLIES = {
    "reserved": ("ReserveStock", f.reserved),
    "backordered": ("ReserveStock", f.backordered),
    "reservation_failed": ("ReserveStock", f.reservation_failed),
    "released": ("ReleaseStock", f.released),
    "created": ("CreateShipments", f.shipments_created),
    "creation_failed": ("CreateShipments", f.creation_failed),
    "cancelled": ("CancelShipments", f.shipments_cancelled),
    "cancel_refused": ("CancelShipments", f.cancellation_refused),
}
COMMAND_TOPICS = {"oms.inventory.commands", "oms.fulfilment.commands", "oms.billing.requests"}

progress = st.tuples(st.just("progress"), st.just(""), st.integers(0, 2))
reply = st.tuples(st.just("reply"), st.sampled_from(sorted(REPLIES)), st.booleans())
event_ = st.tuples(st.just("event"), st.sampled_from(["payment", "dispatched", "delivered", "backorder_filled"]),
                   st.integers(0, 2))
cancel = st.tuples(st.just("cancel"), st.just(""), st.just(0))
tick = st.tuples(st.just("tick"), st.sampled_from([1, 1, 10, 31, 3601, 4 * 86400, 15 * 86400, 31 * 86400]), st.just(0))
again = st.tuples(st.just("again"), st.just(""), st.just(0))
# Mostly moves that make progress, so that sequences reach every step; the rest disturb them.
actions = st.one_of(*[progress] * 12, reply, reply, event_, event_, cancel, tick, again)


def _act(t: SagaTest, action: tuple) -> bool:
    """Plays one action; False when it does not apply (e.g. a reply to a command never sent)."""
    kind, what, arg = action
    if kind == "progress":
        return _progress(t, arg)
    if kind == "reply":
        command, build = REPLIES[what]
        sent = [env for _, env in t.sent(everything=True) if env.event_type == command]
        if not sent or (what in ("created", "cancelled", "cancel_refused") and not _creatable(t, what)):
            return False
        t.reply(build(t), causation_id=uuid4() if arg else sent[-1].event_id)
    elif kind == "event":
        ids = f.shipment_ids(t) if t.data and t.data.shipments else []
        if what == "payment":
            t.receive(f.payment_confirmed(t))
        elif what == "backorder_filled":
            t.receive(f.reserved(t))
        elif not ids:
            return False
        elif what == "dispatched":
            t.receive(f.dispatched(t, ids[arg % len(ids)]))
        else:
            t.receive(f.delivered(t, ids[arg % len(ids)]))
    elif kind == "cancel":
        t.receive(f.cancel(t))
    elif kind == "tick":
        t.after(what)
    elif kind == "again":
        if not t.delivered:
            return False
        t.redeliver()
    return True


# What moves each step forward: a reply to its command, or an event.
GOOD = {"reserve_stock": "reserved", "create_shipments": "created", "release_stock": "released",
        "cancel_shipments": "cancelled", "payment_gate": "payment", "await_dispatch": "dispatched",
        "await_delivery": "delivered"}


def _progress(t: SagaTest, arg: int) -> bool:
    step = t.state.step if t.state else None
    if step is None:
        return False
    what = GOOD[step]
    if what in REPLIES:
        return _act(t, ("reply", what, False))
    if what in ("dispatched", "delivered") and t.data is not None:
        ids, done = f.shipment_ids(t), getattr(t.data, what)
        arg = next((i for i, sid in enumerate(ids) if sid not in done), arg)
    return _act(t, ("event", what, arg))


def _creatable(t: SagaTest, what: str) -> bool:
    if what == "created":
        return bool(t.command("CreateShipments").payload["shipments"])
    return bool(t.data and t.data.shipments)


def _check(t: SagaTest, was_terminal: bool, reservation_held: bool) -> None:
    s = t.state
    assert s is not None
    # Ends in a terminal state, or waits on exactly one step (with a deadline unless flagged stuck).
    if s.state in TERMINAL:
        assert s.step is None and s.deadline_at is None
        assert {"completed": "delivered", "failed": "rejected", "cancelled": "cancelled"}[s.state] == s.status
    else:
        assert s.step is not None and (s.deadline_at is not None) != s.stuck
    for change in t.last.status_changes:
        assert change.new in ALLOWED_STATUS_CHANGES.get(change.old or "", ()), f"{change.old} -> {change.new}"
    sent = t.sent()
    if was_terminal:
        assert all(topic not in COMMAND_TOPICS for topic, _ in sent), f"sent after the end: {sent}"
    everything = [env for _, env in t.sent(everything=True)]
    if reservation_held and s.status in ("rejected", "cancelled"):
        assert any(env.event_type == "ReleaseStock" for env in everything), "stock kept after rejection"
    commits = [env.payload["shipment_id"] for env in everything if env.event_type == "CommitStock"]
    assert len(commits) == len(set(commits)), "stock committed twice for a shipment"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payment=st.sampled_from(["authorized", "pending"]), script=st.lists(actions, min_size=8, max_size=50))
def test_invariants_hold_for_any_sequence(payment: str, script: list[tuple]) -> None:
    t = f.saga_test(payment=payment)
    reservation_held = False
    for action in script:
        was_terminal = t.state is not None and t.state.state in TERMINAL
        if not _act(t, action):
            continue
        applied = t.last.changed and not any(n.disposition == "stale" for n in t.last.notes)
        if action[0] == "reply" and action[1] in ("reserved", "backordered") and applied:
            reservation_held = True
        if action[0] == "event" and action[1] == "backorder_filled" and applied:
            reservation_held = True
        if t.last.steps and any(r.outcome == "timed_out" and r.step == "reserve_stock" for r in t.last.steps.values()):
            reservation_held = True
        _check(t, was_terminal, reservation_held)
    assert t.state is not None
    event(f"ends {t.state.state}{' stuck' if t.state.stuck else ''} at {t.state.step}")
