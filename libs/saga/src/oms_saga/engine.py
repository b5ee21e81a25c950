"""The engine's decisions as pure functions: (saga, state, event or clock) -> Transition.

No broker, no database, no clock of its own: the caller passes `now`, persists the new state and
publishes the messages in one transaction (see runner.py)."""

from dataclasses import asdict
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from oms_contracts import parse_payload
from oms_platform.ids import uuid7
from oms_saga.decision import Decision
from oms_saga.definition import Compensation, End, Handler, Outcome, Saga, Step
from oms_saga.state import COMPENSATING, COMPLETED, PENDING, RUNNING, Control, Incoming, SagaState, Transition


def start(saga: Saga, existing: SagaState | None, order_id: UUID, data: BaseModel, trigger: Incoming | None,
          now: datetime) -> Transition:
    """Starts a saga with its data (a `saga.data` model), or a pending one created by an early event.
    A second start changes nothing."""
    if not isinstance(data, saga.data):
        raise TypeError(f"saga {saga.name} keeps {saga.data.__name__}, not {type(data).__name__}")
    if existing is not None and existing.state != PENDING:
        run = _Run(saga, existing.copy(), now, trigger)
        if trigger is not None:
            run.note(trigger, "ignored", f"saga already {existing.state}")
        return run.done(existing)
    state = existing.copy() if existing else SagaState(
        saga_id=uuid7(), saga_type=saga.name, order_id=order_id, state=RUNNING, step=None, stuck=False,
        data={}, deadline_at=None, attempts=0, status=saga.initial_status, status_reason=None,
        control=Control(), created_at=now, updated_at=now,
    )
    run = _Run(saga, state, now, trigger)
    run.set_data(data)
    run.enter(0)
    return run.done(existing)


def handle(saga: Saga, state: SagaState | None, incoming: Incoming, now: datetime) -> Transition:
    """Applies one event. With no instance yet, a remembered event creates a pending one."""
    if state is None:
        if not saga.remembers(incoming.key):
            return Transition(None)
        state = SagaState(
            saga_id=uuid7(), saga_type=saga.name, order_id=incoming.order_id, state=PENDING, step=None,
            stuck=False, data={}, deadline_at=None, attempts=0, status=saga.initial_status, status_reason=None,
            control=Control(), created_at=now, updated_at=now,
        )
        run = _Run(saga, state, now, incoming)
        run.defer(incoming)
        return run.done(None)
    run = _Run(saga, state.copy(), now, incoming)
    run.receive(incoming)
    return run.done(state)


def tick(saga: Saga, state: SagaState, now: datetime) -> Transition:
    """Applies the current step's deadline when it is due: send again, compensate, or flag stuck."""
    run = _Run(saga, state.copy(), now, None)
    if state.deadline_at is not None and state.deadline_at <= now:
        run.expire()
    return run.done(state)


class _Run(Decision):
    """A decision: events, cancellation, compensation and deadlines on top of the common moves."""

    # --- events -----------------------------------------------------------------------------------

    def receive(self, inc: Incoming) -> None:
        key = inc.key
        if self.saga.cancels(key):
            return self.cancel(inc)
        if self.s.state == PENDING:
            return self.defer(inc) if self.saga.remembers(key) else self.note(inc, "ignored", "saga not started")
        if self.s.terminal:
            return self.note(inc, "ignored", f"saga already {self.s.state}")
        if self.s.state == RUNNING:
            step = self.current()
            found = step.handler_for(key)
            if found is not None:
                handler, correlated = found
                if correlated and not self.c.loose and str(inc.causation_id) not in self.c.sent:
                    return self.note(inc, "stale", f"does not answer the command of {step.name}")
                return self.apply(step, handler, inc)
        else:
            comp = self.saga.compensation(self.s.step or "")
            if comp.confirmed_by(key) or comp.refusal(key) is not None:
                if str(inc.causation_id) not in self.c.sent:
                    return self.note(inc, "stale", f"does not answer the command of {comp.name}")
                return self.compensation_reply(comp, inc)
        if self.saga.remembers(key):
            return self.defer(inc)
        self.note(inc, "stale", f"not awaited by {self.s.step}")

    def defer(self, inc: Incoming) -> None:
        self.c.deferred.append({
            "event_type": inc.event_type, "event_version": inc.event_version, "event_id": str(inc.event_id),
            "causation_id": str(inc.causation_id) if inc.causation_id else None,
            "correlation_id": str(inc.correlation_id) if inc.correlation_id else None, "payload": inc.raw,
        })
        self.note(inc, "deferred", f"kept until a step awaits it (current: {self.s.step})")

    def replay(self, step: Step) -> None:
        """Applies remembered events the new current step awaits, oldest first."""
        for item in list(self.c.deferred):
            found = step.handler_for((item["event_type"], item["event_version"]))
            if found is None or found[1]:  # only events (not replies) are ever remembered
                continue
            self.c.deferred.remove(item)
            payload = parse_payload(item["event_type"], item["event_version"], item["payload"])
            inc = Incoming(item["event_type"], item["event_version"], UUID(item["event_id"]),
                           UUID(item["causation_id"]) if item["causation_id"] else None,
                           UUID(item["correlation_id"]) if item["correlation_id"] else None,
                           self.s.order_id, payload, item["payload"])
            seq = self.c.seq
            self.apply(step, found[0], inc)
            if self.c.seq != seq or self.s.state != RUNNING:
                return  # the next step replays what it awaits

    def apply(self, step: Step, handler: Handler, inc: Incoming) -> None:
        out = handler(self.view(), inc.payload)
        if out.kind == "ignore":
            return self.note(inc, "ignored", out.detail)
        for message in out.emit:
            self.send(message)
        detail = out.detail or inc.event_type
        if out.kind == "success":
            self.announce(out.status, out.status_reason)
            self.row("succeeded", detail)
            self.enter(self.saga.index(step.name) + 1)
        elif out.kind == "failure":
            assert out.end is not None
            self.row("failed", detail)
            # A failure reply means the participant did nothing, unless it had said "wait" before
            # (e.g. a backorder it holds): then the step is undone too.
            self.compensate(out.end, include_current=self.c.waited)
        elif out.kind == "wait":
            if self.s.stuck:  # progress after being flagged: the deadline runs again
                self.s.stuck = False
                self.set_deadline(self.policy(step))
            self.announce(out.status, out.status_reason)
            if out.timeout is not None:
                self.c.timeout = out.timeout
                self.set_deadline(step.timeouts[out.timeout])
            if out.deadline is not None:
                self.set_deadline(None, out.deadline)
            self.c.loose = self.c.loose or out.loose
            self.c.waited = True
            self.row(None, detail)
        elif out.kind == "stuck":
            self.flag_stuck(detail)
        else:
            raise ValueError(f"outcome {out.kind} is not valid for step {step.name}")

    def cancel(self, inc: Incoming) -> None:
        if self.s.state == PENDING or self.saga.cancel is None:
            return self.note(inc, "ignored", "nothing to cancel")
        decision = self.saga.cancel(self.view(), inc.payload)
        if decision is None:
            return self.note(inc, "ignored", "cancellation already under way")
        if isinstance(decision, Outcome):
            for message in decision.emit:
                self.send(message)
            return self.note(inc, "refused", decision.detail)
        if self.s.state != RUNNING:
            return self.note(inc, "ignored", f"saga is {self.s.state}")
        self.row("cancelled", decision.reason)
        self.compensate(decision, include_current=True)

    # --- compensation -----------------------------------------------------------------------------

    def compensate(self, end: End, *, include_current: bool) -> None:
        """Undoes, newest first, every step whose command was sent (the current one only when it may
        have taken effect: a timeout or a cancellation, not a failure reply)."""
        upto = self.saga.index(self.s.step or "") + (1 if include_current else 0)
        self.c.plan = [st.compensation.name for st in reversed(self.saga.steps[:upto])
                       if st.compensation is not None and st.name in self.c.effects]
        self.c.end, self.c.announced = asdict(end), False
        self.s.state = COMPENSATING
        self.next_compensation()

    def announce_end(self) -> None:
        """The end is announced once no remaining compensation can be refused."""
        if self.c.announced or self.c.end is None:
            return
        if any(self.saga.compensation(n).refusals for n in self.c.plan):
            return
        self.c.announced = True
        self.announce(self.c.end["status"], self.c.end["reason"])

    def next_compensation(self) -> None:
        self.announce_end()
        if not self.c.plan:
            return self.finish(self.c.end["state"] if self.c.end else COMPLETED)
        comp = self.saga.compensation(self.c.plan[0])
        self.open(comp.name)
        self.send_command(comp.command)
        self.set_deadline(comp.timeout)
        self.row()

    def compensation_reply(self, comp: Compensation, inc: Incoming) -> None:
        if comp.confirmed_by(inc.key):
            self.row("compensated", inc.event_type)
            self.c.plan.pop(0)
            return self.next_compensation()
        refusal = comp.refusal(inc.key)
        assert refusal is not None  # receive() routes only confirmations and refusals here
        out = refusal(self.view(), inc.payload)
        if out.kind == "ignore":
            return self.note(inc, "ignored", out.detail)
        for message in out.emit:
            self.send(message)
        if out.kind == "resume" and out.step is not None:
            self.row("refused", out.detail or inc.event_type)
            self.c.plan, self.c.end, self.c.announced = [], None, False
            return self.enter(self.saga.index(out.step))
        self.flag_stuck(out.detail or f"{comp.name} refused")

    # --- deadlines --------------------------------------------------------------------------------

    def expire(self) -> None:
        if self.s.state == RUNNING:
            step = self.current()
            policy = self.policy(step)
            if policy is None:
                self.s.deadline_at = None
            elif step.command is not None and self.s.attempts < policy.attempts:
                self.send_command(step.command)
                self.set_deadline(policy)
                self.row(None, f"no reply; sent again (attempt {self.s.attempts})")
            elif policy.then == "stuck":
                self.flag_stuck(f"no progress within {policy.seconds:g}s")
            else:
                self.row("timed_out", policy.then.reason)
                self.compensate(policy.then, include_current=True)
        elif self.s.state == COMPENSATING:
            comp = self.saga.compensation(self.s.step or "")
            if self.s.attempts < comp.timeout.attempts:
                self.send_command(comp.command)
                self.set_deadline(comp.timeout)
                self.row(None, f"not confirmed; sent again (attempt {self.s.attempts})")
            else:
                self.flag_stuck(f"{comp.name} not confirmed after {self.s.attempts} attempts")
        else:
            self.s.deadline_at = None
