"""A saga as data: an ordered list of steps, each with the command it sends, the replies it awaits and
what each reply means, its compensation, and its deadline. Nothing here does I/O.

Typed end to end: a saga keeps its data as a pydantic model of its own (`Saga(data=ReturnData, ...)`;
builders and handlers get it as `view.data`, and handlers may change it), and replies and events are
keyed by their contract classes, so a handler receives the model it names:

    def on_reserved(v: SagaView[OrderData], e: inventory.StockReservedV1) -> Outcome:
        v.data.allocations = e.allocations
        return success()

    Step("reserve_stock", command=Command(INVENTORY, reserve_stock),
         replies={inventory.StockReservedV1: on_reserved, inventory.StockReservationFailedV1: on_failed},
         compensation=Compensation("release_stock", Command(INVENTORY, release_stock),
                                   {inventory.StockReleasedV1}, Timeout(30, 3)),
         timeout=Timeout(30, 3, End("failed", "rejected", "inventory_timeout")))

A class is matched on its (EVENT_TYPE, EVENT_VERSION): another version of the same event is not
awaited until a handler names its class too."""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel

D = TypeVar("D", bound=BaseModel)
EventKey = tuple[str, int]  # (event_type, event_version) of a contract class


def event_key(event: type[BaseModel]) -> EventKey:
    """The (event_type, event_version) a contract class is sent with."""
    try:
        return event.EVENT_TYPE, event.EVENT_VERSION  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(f"{event.__name__} is not a contract event (it has no EVENT_TYPE and EVENT_VERSION)") from None


def _keys(events: Iterable[type[BaseModel]]) -> frozenset[EventKey]:
    return frozenset(event_key(e) for e in events)


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
class SagaView(Generic[D]):
    """What builders, handlers and policies see. `data` is the saga's own copy (its `Saga.data`
    model): handlers may change it."""

    order_id: UUID
    state: str
    step: str | None
    status: str | None
    data: D
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


Builder = Callable[[SagaView[Any]], BaseModel]
Handler = Callable[[SagaView[Any], Any], Outcome]  # (view, the event of the class it is keyed by)


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
    confirms: Iterable[type[BaseModel]]
    timeout: Timeout
    refusals: Mapping[type[BaseModel], Handler] = field(default_factory=dict)
    _confirms: frozenset[EventKey] = field(init=False, repr=False, compare=False)
    _refusals: Mapping[EventKey, Handler] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "confirms", frozenset(self.confirms))
        object.__setattr__(self, "_confirms", _keys(self.confirms))
        object.__setattr__(self, "_refusals", {event_key(c): h for c, h in self.refusals.items()})

    def confirmed_by(self, key: EventKey) -> bool:
        return key in self._confirms

    def refusal(self, key: EventKey) -> Handler | None:
        return self._refusals.get(key)


@dataclass(frozen=True)
class Step:
    """`replies` answer this step's command (their causation_id must be one of the command's event
    ids); `events` are awaited from anyone (payment, dispatch). A step with no command only waits; one
    whose `passes_if` holds on entry passes at once. `status` is announced when the step starts
    waiting. `timeouts` are named alternatives to `timeout` that a wait outcome can switch to."""

    name: str
    command: Command | None = None
    replies: Mapping[type[BaseModel], Handler] = field(default_factory=dict)
    events: Mapping[type[BaseModel], Handler] = field(default_factory=dict)
    compensation: Compensation | None = None
    timeout: Timeout | None = None
    timeouts: Mapping[str, Timeout] = field(default_factory=dict)
    passes_if: Callable[[SagaView[Any]], bool] | None = None
    status: str | None = None
    _handlers: Mapping[EventKey, tuple[Handler, bool]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        handlers = {event_key(c): (h, False) for c, h in self.events.items()}
        handlers |= {event_key(c): (h, True) for c, h in self.replies.items()}
        object.__setattr__(self, "_handlers", handlers)

    def handler_for(self, key: EventKey) -> tuple[Handler, bool] | None:
        """(handler, correlated) for an event, or None when this step does not await it."""
        return self._handlers.get(key)


CancelPolicy = Callable[[SagaView[Any], Any], "End | Outcome | None"]
# (order_id, old, new, reason, at, sequence): sequence numbers the saga's status changes 1, 2, 3...
StatusEvent = Callable[[UUID, str | None, str, str | None, datetime, int], Send]


@dataclass(frozen=True)
class Saga:
    """`data` is the model of what the saga keeps (stored as JSON in saga_instances.data: change it
    compatibly, or existing sagas stop loading). `cancel_on` events ask to cancel; `cancel` answers
    with an End (compensate and end so), an Outcome of kind ignore carrying the refusal messages in
    `emit`, or None (nothing to do). `remember` lists events kept when they arrive before the step
    that awaits them. `order_of`: for a saga keyed by something other than its order (e.g. one per
    return), the order its messages are about: their envelope order_id (so their Kafka key) is that
    order, not the saga's key."""

    name: str
    producer: str
    data: type[BaseModel]
    steps: tuple[Step, ...]
    status_event: StatusEvent
    initial_status: str | None = None
    cancel_on: Iterable[type[BaseModel]] = frozenset()
    cancel: CancelPolicy | None = None
    remember: Iterable[type[BaseModel]] = frozenset()
    order_of: Callable[[SagaView], UUID] | None = None
    _cancel_on: frozenset[EventKey] = field(init=False, repr=False, compare=False)
    _remember: frozenset[EventKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps] + [s.compensation.name for s in self.steps if s.compensation]
        if len(names) != len(set(names)):
            raise ValueError(f"saga {self.name}: step and compensation names must be unique")
        for name in ("cancel_on", "remember"):
            events = frozenset(getattr(self, name))
            object.__setattr__(self, name, events)
            object.__setattr__(self, f"_{name}", _keys(events))

    def cancels(self, key: EventKey) -> bool:
        return key in self._cancel_on

    def remembers(self, key: EventKey) -> bool:
        return key in self._remember

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

    def events(self) -> frozenset[type[BaseModel]]:
        """Every contract class the saga reacts to."""
        found = set(self.cancel_on) | set(self.remember)
        for s in self.steps:
            found |= set(s.replies) | set(s.events)
            if s.compensation:
                found |= set(s.compensation.confirms) | set(s.compensation.refusals)
        return frozenset(found)

    def event_types(self) -> frozenset[str]:
        """Every event type the saga reacts to (its consumers subscribe to these)."""
        return frozenset(event_key(e)[0] for e in self.events())
