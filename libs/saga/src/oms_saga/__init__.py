"""Generic saga engine: a saga is data (definition.py), decisions are pure functions (engine.py), and
runner.py persists them in PostgreSQL with the commands going out through the outbox in the same
transaction. migrations/ holds the engine's tables (MIGRATIONS is its path)."""

from pathlib import Path

from oms_saga.definition import (
    Command,
    Compensation,
    End,
    Outcome,
    Saga,
    SagaView,
    Send,
    Step,
    Timeout,
    event_key,
    failure,
    ignore,
    resume,
    stuck,
    success,
    wait,
)
from oms_saga.state import Incoming, SagaState, Transition

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = [
    "MIGRATIONS", "Command", "Compensation", "End", "Incoming", "Outcome", "Saga", "SagaState", "SagaView", "Send",
    "Step", "Timeout", "Transition", "event_key", "failure", "ignore", "resume", "stuck", "success", "wait",
]
