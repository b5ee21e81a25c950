"""The state of one saga instance and what a decision produces. Plain data, JSON-friendly, no I/O."""

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel

from oms_contracts import Envelope

PENDING = "pending"  # created by an event that arrived before the saga's start; not running yet
RUNNING = "running"
COMPENSATING = "compensating"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
def _json_copy(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
STATES = (PENDING, RUNNING, COMPENSATING, COMPLETED, FAILED, CANCELLED)


@dataclass
class Control:
    """The engine's own bookkeeping, stored as one jsonb column beside the saga's data."""

    sent: list[str] = field(default_factory=list)  # event ids of the current step's command, every attempt
    loose: bool = False  # the current step also accepts replies that do not answer its command
    waited: bool = False  # the current step was told to wait: its participant holds something already
    timeout: str | None = None  # named timeout policy in force (None: the step's default)
    effects: list[str] = field(default_factory=list)  # steps whose command was sent (may need undoing)
    plan: list[str] = field(default_factory=list)  # compensations still to run, the current one first
    end: dict[str, Any] | None = None  # the End a compensation leads to
    announced: bool = False  # the End's status was published
    deferred: list[dict[str, Any]] = field(default_factory=list)  # remembered events
    seq: int = 0  # history row of the current step
    started_at: str | None = None  # when the current step started (ISO 8601)
    # Status changes announced so far: the next one is numbered status_seq + 1 (its event's `sequence`,
    # so readers order an order's statuses by it, not by the clock of whichever process announced it).
    status_seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> "Control":
        return cls(**_json_copy(value or {}))


@dataclass
class SagaState:
    saga_id: UUID
    saga_type: str
    order_id: UUID
    state: str
    step: str | None
    stuck: bool
    data: dict[str, Any]  # the saga's Saga.data model as JSON ({} while pending); handlers see the model
    deadline_at: datetime | None
    attempts: int
    status: str | None
    status_reason: str | None
    control: Control
    created_at: datetime
    updated_at: datetime
    version: int = 0  # of the row as read (raised by every write): the optimistic write's check

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def copy(self) -> "SagaState":
        # data and control are JSON (they live in jsonb): a JSON round trip copies them fastest.
        return dataclasses.replace(self, data=_json_copy(self.data), control=Control(**_json_copy(vars(self.control))))


@dataclass(frozen=True)
class Incoming:
    """An event as the engine sees it (taken from its envelope)."""

    event_type: str
    event_version: int
    event_id: UUID
    causation_id: UUID | None
    correlation_id: UUID | None
    order_id: UUID
    payload: BaseModel
    raw: dict[str, Any]

    @property
    def key(self) -> tuple[str, int]:
        """What a saga's handlers are keyed by (oms_saga.definition.event_key of the payload's class)."""
        return self.event_type, self.event_version

    @classmethod
    def of(cls, envelope: Envelope, payload: BaseModel) -> "Incoming":
        return cls(envelope.event_type, envelope.event_version, envelope.event_id, envelope.causation_id,
                   envelope.correlation_id, envelope.order_id, payload, envelope.payload)


@dataclass
class StepRecord:
    """One row of the step history (written again whenever it changes)."""

    seq: int
    step: str
    kind: str  # forward | compensation
    started_at: datetime
    finished_at: datetime | None
    attempts: int
    outcome: str | None  # None while the step is current
    detail: str | None


@dataclass(frozen=True)
class Note:
    """A message the saga did not apply (stale, ignored, deferred, refused), kept for operators."""

    event_type: str
    event_id: UUID | None
    causation_id: UUID | None
    disposition: str
    detail: str | None


@dataclass(frozen=True)
class StatusChange:
    old: str | None
    new: str
    reason: str | None
    event_id: UUID | None = None  # the message that announced it


@dataclass
class Transition:
    """The outcome of one decision: the new state (None when no instance exists or is created), the
    messages to publish, status changes, history rows to write and notes."""

    state: SagaState | None
    messages: list[tuple[str, Envelope]] = field(default_factory=list)
    status_changes: list[StatusChange] = field(default_factory=list)
    steps: dict[int, StepRecord] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    changed: bool = False  # the instance row must be written

    def event_types(self) -> list[str]:
        return [env.event_type for _, env in self.messages]
