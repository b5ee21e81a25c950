"""A saga as data: an ordered list of steps, each with the command it sends, the replies it awaits and
what each reply means, its compensation, and its deadline. Nothing here does I/O."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel


@dataclass(frozen=True)
class End:
    """Where a compensation leads: the saga's final state, and the status announced for it."""

    state: Literal["failed", "cancelled"]
    status: str | None
    reason: str


@dataclass(frozen=True)
class Send:
    """A message to publish (a command or a notification) with no reply awaited by the engine."""

    topic: str
    event: BaseModel


@dataclass
class SagaView:
    """What builders, handlers and policies see. `data` is the saga's own copy: handlers may change it."""

    order_id: UUID
    state: str
    step: str | None
    status: str | None
    data: dict[str, Any]
    end: End | None
    now: datetime


@dataclass(frozen=True)
class Outcome:
    """What a reply means for the step that receives it.

    success: the step is done, the next one starts.  failure: compensate towards `end`.
    wait: stay on the step (optionally a new deadline, a named timeout policy, or accepting replies
    that do not answer our command: a participant that answers later on its own).
    ignore: no effect (e.g. a duplicate).  resume: abort a compensation and go on at `step`.
    stuck: flag the saga for an operator and keep waiting."""

    kind: Literal["success", "failure", "wait", "ignore", "resume", "stuck"]
    status: str | None = None
    status_reason: str | None = None
    end: End | None = None
    deadline: float | None = None
    timeout: str | None = None
    loose: bool = False
    step: str | None = None
    emit: tuple[Send, ...] = ()
    detail: str | None = None


def success(*, status: str | None = None, reason: str | None = None, emit: tuple[Send, ...] = (),
            detail: str | None = None) -> Outcome:
    return Outcome("success", status=status, status_reason=reason, emit=emit, detail=detail)


def failure(end: End, *, emit: tuple[Send, ...] = (), detail: str | None = None) -> Outcome:
    return Outcome("failure", end=end, emit=emit, detail=detail or end.reason)


def wait(*, status: str | None = None, reason: str | None = None, deadline: float | None = None,
         timeout: str | None = None, loose: bool = False, emit: tuple[Send, ...] = (),
         detail: str | None = None) -> Outcome:
    return Outcome("wait", status=status, status_reason=reason, deadline=deadline, timeout=timeout,
                   loose=loose, emit=emit, detail=detail)


def ignore(detail: str) -> Outcome:
    return Outcome("ignore", detail=detail)


def resume(step: str, *, emit: tuple[Send, ...] = (), detail: str | None = None) -> Outcome:
    return Outcome("resume", step=step, emit=emit, detail=detail)


def stuck(detail: str) -> Outcome:
    return Outcome("stuck", detail=detail)


Builder = Callable[[SagaView], BaseModel]
Handler = Callable[[SagaView, BaseModel], Outcome]


@dataclass(frozen=True)
class Command:
    topic: str
    build: Builder


@dataclass(frozen=True)
class Timeout:
    """A deadline: after `seconds`, the command is sent again until it was sent `attempts` times; then
    `then` applies: compensate towards an End, or flag the saga stuck (nothing compensated)."""

    seconds: float
    attempts: int = 1
    then: End | Literal["stuck"] = "stuck"


@dataclass(frozen=True)
class Compensation:
    """Undoes a step that took (or may have taken) effect. Its command is retried on its deadline and
    the saga is flagged stuck when it is never confirmed. A refusal reply decides with its handler
    (resume forward, or stuck)."""

    name: str
    command: Command
    confirms: frozenset[str]
    timeout: Timeout
    refusals: Mapping[str, Handler] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """`replies` answer this step's command (their causation_id must be one of the command's event
    ids); `events` are awaited from anyone (payment, dispatch). A step with no command only waits; one
    whose `passes_if` holds on entry passes at once. `status` is announced when the step starts
    waiting. `timeouts` are named alternatives to `timeout` that a wait outcome can switch to."""

    name: str
    command: Command | None = None
    replies: Mapping[str, Handler] = field(default_factory=dict)
    events: Mapping[str, Handler] = field(default_factory=dict)
    compensation: Compensation | None = None
    timeout: Timeout | None = None
    timeouts: Mapping[str, Timeout] = field(default_factory=dict)
    passes_if: Callable[[SagaView], bool] | None = None
    status: str | None = None

    def handler_for(self, event_type: str) -> tuple[Handler, bool] | None:
        """(handler, correlated) for an event type, or None when this step does not await it."""
        if event_type in self.replies:
            return self.replies[event_type], True
        if event_type in self.events:
            return self.events[event_type], False
        return None


CancelPolicy = Callable[[SagaView, BaseModel], "End | Outcome | None"]
StatusEvent = Callable[[UUID, str | None, str, str | None, datetime], Send]


@dataclass(frozen=True)
class Saga:
    """`cancel_on` event types ask to cancel; `cancel` answers with an End (compensate and end so),
    an Outcome of kind ignore carrying the refusal messages in `emit`, or None (nothing to do).
    `remember` lists events kept when they arrive before the step that awaits them."""

    name: str
    producer: str
    steps: tuple[Step, ...]
    status_event: StatusEvent
    initial_status: str | None = None
    cancel_on: frozenset[str] = frozenset()
    cancel: CancelPolicy | None = None
    remember: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps] + [s.compensation.name for s in self.steps if s.compensation]
        if len(names) != len(set(names)):
            raise ValueError(f"saga {self.name}: step and compensation names must be unique")

    def index(self, step: str) -> int:
        for i, s in enumerate(self.steps):
            if s.name == step:
                return i
        raise KeyError(step)

    def compensation(self, name: str) -> Compensation:
        for s in self.steps:
            if s.compensation and s.compensation.name == name:
                return s.compensation
        raise KeyError(name)

    def event_types(self) -> frozenset[str]:
        """Every event type the saga reacts to (its consumers subscribe to these)."""
        types = set(self.cancel_on) | set(self.remember)
        for s in self.steps:
            types |= set(s.replies) | set(s.events)
            if s.compensation:
                types |= set(s.compensation.confirms) | set(s.compensation.refusals)
        return frozenset(types)
