"""Given/expect tests of a saga definition, with no broker and no database (after eventuate-tram's
saga test DSL):

    t = given(saga).started(order_id, data)
    t.expect_sent("ReserveStock").expect_state("running", step="reserve_stock")
    t.reply(StockReservedV1(...)).expect_sent("CreateShipments").expect_status("confirmed")
    t.after(31).expect_sent("CreateShipments")          # the deadline passed: sent again
"""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel

from oms_contracts import Envelope, new_envelope
from oms_saga import engine
from oms_saga.definition import Saga
from oms_saga.state import Incoming, SagaState, StatusChange, Transition


class SagaTest:
    def __init__(self, saga: Saga, now: datetime | None = None):
        self.saga = saga
        self.now = now or datetime(2025, 1, 1, tzinfo=UTC)
        self.state: SagaState | None = None
        self.last = Transition(None)
        self.history: list[Transition] = []
        self.order_id: UUID = uuid4()
        self.delivered: list[tuple[Envelope, BaseModel]] = []

    # --- given ------------------------------------------------------------------------------------

    def started(self, order_id: UUID, data: BaseModel) -> "SagaTest":
        """The saga starts for `order_id` with its data (a model of the saga's `data` class)."""
        self.order_id = order_id
        return self._apply(engine.start(self.saga, self.state, order_id, data, None, self.now))

    def reply(self, event: BaseModel, *, to: str | None = None, causation_id: UUID | None = None) -> "SagaTest":
        """A participant's reply to the latest command (of type `to`, when given) sent so far."""
        if causation_id is None:
            causation_id = self.command(to).event_id
        return self.receive(event, causation_id=causation_id)

    def receive(self, event: BaseModel, *, causation_id: UUID | None = None) -> "SagaTest":
        """An event from anyone (not an answer to one of our commands unless causation_id says so)."""
        env = new_envelope(event, producer="test", order_id=self.order_id, causation_id=causation_id)
        return self.deliver(env, event)

    def deliver(self, env: Envelope, event: BaseModel) -> "SagaTest":
        self.delivered.append((env, event))
        return self._apply(engine.handle(self.saga, self.state, Incoming.of(env, event), self.now))

    def redeliver(self) -> "SagaTest":
        """The last message once more, same event id (a broker redelivery that got past the inbox)."""
        assert self.delivered, "nothing delivered yet"
        return self.deliver(*self.delivered[-1])

    def after(self, seconds: float) -> "SagaTest":
        """The clock moves on; the deadline ticker runs."""
        self.now += timedelta(seconds=seconds)
        if self.state is None:
            return self
        return self._apply(engine.tick(self.saga, self.state, self.now))

    def _apply(self, transition: Transition) -> "SagaTest":
        self.last = transition
        self.history.append(transition)
        if transition.state is not None:
            self.state = transition.state
        return self

    @property
    def data(self) -> Any:
        """The saga's data now, as its model (None before it started)."""
        if self.state is None or self.state.state == "pending":
            return None
        return self.saga.data.model_validate(self.state.data)

    # --- what was sent ----------------------------------------------------------------------------

    def sent(self, *, everything: bool = False) -> list[tuple[str, Envelope]]:
        """Messages of the last action (or of every action) other than status changes."""
        source = self.history if everything else [self.last]
        return [(topic, env) for tr in source for topic, env in tr.messages
                if env.event_id not in {c.event_id for c in tr.status_changes}]

    def command(self, event_type: str | None = None) -> Envelope:
        for tr in reversed(self.history):
            for _, env in reversed(tr.messages):
                if event_type is None and str(env.event_id) in self._sent_ids():
                    return env
                if event_type is not None and env.event_type == event_type:
                    return env
        raise AssertionError(f"no command {event_type or '(current step)'} was sent")

    def statuses(self) -> list[StatusChange]:
        return [c for tr in self.history for c in tr.status_changes]

    def _sent_ids(self) -> list[str]:
        return self.state.control.sent if self.state else []

    # --- expect -----------------------------------------------------------------------------------

    def expect_sent(self, *event_types: str) -> "SagaTest":
        got = [env.event_type for _, env in self.sent()]
        assert got == list(event_types), f"sent {got}, expected {list(event_types)}"
        return self

    def expect_nothing_sent(self) -> "SagaTest":
        return self.expect_sent()

    def expect_to(self, event_type: str, topic: str, **fields: Any) -> "SagaTest":
        found = [(t, env) for t, env in self.sent() if env.event_type == event_type]
        assert found, f"{event_type} was not sent; sent {[e.event_type for _, e in self.sent()]}"
        t, env = found[-1]
        assert t == topic, f"{event_type} went to {t}, expected {topic}"
        for key, value in fields.items():
            assert env.payload.get(key) == value, f"{event_type}.{key} = {env.payload.get(key)!r}, expected {value!r}"
        return self

    def expect_status(self, new: str | None, reason: str | None = None) -> "SagaTest":
        """The last action changed the status to `new` (None: it changed nothing)."""
        changes = self.last.status_changes
        if new is None:
            assert not changes, f"status changed: {changes}"
            return self
        assert changes and changes[-1].new == new, f"status changes {changes}, expected {new}"
        if reason is not None:
            assert changes[-1].reason == reason, f"reason {changes[-1].reason!r}, expected {reason!r}"
        return self

    def expect_state(self, state: str, *, step: str | None = "", stuck: bool | None = None) -> "SagaTest":
        assert self.state is not None, "no saga"
        assert self.state.state == state, f"state {self.state.state} (step {self.state.step}), expected {state}"
        if step != "":
            assert self.state.step == step, f"step {self.state.step}, expected {step}"
        if stuck is not None:
            assert self.state.stuck is stuck, f"stuck is {self.state.stuck}"
        return self

    def expect_note(self, disposition: str) -> "SagaTest":
        got = [n.disposition for n in self.last.notes]
        assert disposition in got, f"notes {got}, expected one {disposition}"
        return self

    def expect_unchanged(self) -> "SagaTest":
        assert not self.last.changed and not self.last.messages, "the last action changed the saga"
        return self


def given(saga: Saga, now: datetime | None = None) -> SagaTest:
    return SagaTest(saga, now)
