"""The base of one engine decision: outputs (messages, status changes, history rows, notes) and
step moves. Pure: no I/O, the clock is `now`."""

from abc import ABC, abstractmethod
from datetime import datetime, timedelta

from pydantic import BaseModel

from oms_contracts import Envelope, new_envelope
from oms_saga.definition import Command, End, EventKey, Saga, SagaView, Send, Step, Timeout
from oms_saga.state import COMPLETED, RUNNING, Control, Incoming, Note, SagaState, StatusChange, StepRecord, Transition


class Decision(ABC):
    """One decision in progress: a working copy of the state and what has been produced so far, and
    the moves every decision uses (send, announce, open a step, enter the next one)."""

    def __init__(self, saga: Saga, state: SagaState, now: datetime, trigger: Incoming | None):
        self.saga, self.s, self.now, self.trigger = saga, state, now, trigger
        self.c: Control = state.control
        self.t = Transition(state)
        # The saga's data as its model, parsed from the JSON in the state when a builder, handler or
        # policy first needs it, and written back to the state as JSON when the decision is done.
        self._data: BaseModel | None = None
        self._forward = {st.name for st in saga.steps}

    def set_data(self, data: BaseModel) -> None:
        self._data = data

    def done(self, before: SagaState | None) -> Transition:
        if self._data is not None:  # handlers may have changed it
            self.s.data = self._data.model_dump(mode="json")
        self.t.changed = before is None or self.s != before
        if self.t.changed:
            self.s.updated_at = self.now
        return self.t

    # --- outputs ----------------------------------------------------------------------------------

    def view(self) -> SagaView:
        # Handlers run only once the saga started, when its data is set (None only while pending).
        end = End(**self.c.end) if self.c.end else None
        if self._data is None:
            self._data = self.saga.data.model_validate(self.s.data)
        return SagaView(self.s.order_id, self.s.state, self.s.step, self.s.status, self._data, end, self.now)

    def send(self, message: Send) -> Envelope:
        trig = self.trigger
        order_id = self.saga.order_of(self.view()) if self.saga.order_of else self.s.order_id
        env = new_envelope(
            message.event, producer=self.saga.producer, order_id=order_id,
            correlation_id=(trig.correlation_id if trig else None) or order_id,
            causation_id=trig.event_id if trig else None, occurred_at=self.now,
        )
        self.t.messages.append((message.topic, env))
        return env

    def announce(self, status: str | None, reason: str | None) -> None:
        if status is None or status == self.s.status:
            return
        self.c.status_seq += 1  # in the saga's row, written in the transaction that publishes the event
        env = self.send(self.saga.status_event(self.s.order_id, self.s.status, status, reason, self.now,
                                               self.c.status_seq))
        self.t.status_changes.append(StatusChange(self.s.status, status, reason, env.event_id))
        self.s.status, self.s.status_reason = status, reason

    def note(self, inc: Incoming, disposition: str, detail: str | None) -> None:
        self.t.notes.append(Note(inc.event_type, inc.event_id, inc.causation_id, disposition, detail))

    def row(self, outcome: str | None = None, detail: str | None = None) -> None:
        """Writes the current step's history row (closed when `outcome` is given)."""
        if self.s.step is None or self.c.started_at is None:
            return
        self.t.steps[self.c.seq] = StepRecord(
            seq=self.c.seq, step=self.s.step,
            kind="forward" if self.s.step in self._forward else "compensation",
            started_at=datetime.fromisoformat(self.c.started_at),
            finished_at=self.now if outcome else None, attempts=self.s.attempts, outcome=outcome, detail=detail,
        )

    # --- steps ------------------------------------------------------------------------------------

    def open(self, name: str) -> None:
        self.c.seq += 1
        self.c.started_at = self.now.isoformat()
        self.c.sent, self.c.loose, self.c.waited, self.c.timeout = [], False, False, None
        self.s.step, self.s.attempts, self.s.stuck = name, 0, False
        self.row()

    def send_command(self, command: Command) -> None:
        env = self.send(Send(command.topic, command.build(self.view())))
        self.c.sent.append(str(env.event_id))
        self.s.attempts += 1

    def set_deadline(self, timeout: Timeout | None, seconds: float | None = None) -> None:
        seconds = seconds if seconds is not None else (timeout.seconds if timeout else None)
        self.s.deadline_at = self.now + timedelta(seconds=seconds) if seconds is not None else None

    def current(self) -> Step:
        return self.saga.steps[self.saga.index(self.s.step or "")]

    def policy(self, step: Step) -> Timeout | None:
        return step.timeouts[self.c.timeout] if self.c.timeout else step.timeout

    def enter(self, index: int) -> None:
        """Starts the step at `index`; steps whose condition holds pass at once."""
        self.s.state = RUNNING
        while index < len(self.saga.steps):
            step = self.saga.steps[index]
            self.open(step.name)
            if step.passes_if is not None and step.passes_if(self.view()):
                self.row("passed")
                index += 1
                continue
            if step.command is not None:
                self.send_command(step.command)
                if step.name not in self.c.effects:
                    self.c.effects.append(step.name)
            self.set_deadline(step.timeout)
            self.row()
            # A remembered event may settle the step at once: then its status is never announced.
            if not any(_awaits(step, (d["event_type"], d["event_version"])) for d in self.c.deferred):
                return self.announce(step.status, None)
            seq, changes = self.c.seq, len(self.t.status_changes)
            self.replay(step)
            if self.c.seq == seq and self.s.state == RUNNING and len(self.t.status_changes) == changes:
                self.announce(step.status, None)
            return
        self.finish(COMPLETED)

    def finish(self, state: str) -> None:
        self.s.state, self.s.step, self.s.deadline_at, self.s.stuck = state, None, None, False
        self.c.plan, self.c.deferred, self.c.sent = [], [], []

    def flag_stuck(self, detail: str) -> None:
        self.s.stuck, self.s.deadline_at = True, None
        self.row(None, f"stuck: {detail}")

    @abstractmethod
    def replay(self, step: Step) -> None:
        """Applies the events a step awaits that arrived before it started (the engine defines it)."""


def _awaits(step: Step, key: EventKey) -> bool:
    found = step.handler_for(key)
    return found is not None and not found[1]
