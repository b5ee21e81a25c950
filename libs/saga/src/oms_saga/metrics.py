"""Prometheus metrics of the saga engine (served by the platform's /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

from oms_platform.metrics import child
from oms_saga.state import Transition

STUCK = Gauge("oms_saga_stuck", "Sagas flagged stuck (waiting for an operator)", ["saga_type"])
TRANSITIONS = Counter(
    "oms_saga_transitions_total", "Saga steps finished, by step and outcome", ["saga_type", "step", "outcome"]
)
STATUS_CHANGES = Counter("oms_saga_status_changes_total", "Statuses announced by sagas", ["saga_type", "status"])
NOT_APPLIED = Counter(
    "oms_saga_messages_not_applied_total", "Messages a saga did not apply (stale, ignored, deferred, refused)",
    ["saga_type", "disposition"],
)
STEP_SECONDS = Histogram(
    "oms_saga_step_seconds", "Time from a step's start to its end", ["saga_type", "step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400, 7 * 86400),
)


def observe(saga_type: str, tr: Transition) -> None:
    for row in tr.steps.values():
        if row.outcome is None:
            continue
        child(TRANSITIONS, saga_type, row.step, row.outcome).inc()
        if row.finished_at is not None:
            child(STEP_SECONDS, saga_type, row.step).observe((row.finished_at - row.started_at).total_seconds())
    for change in tr.status_changes:
        child(STATUS_CHANGES, saga_type, change.new).inc()
    for note in tr.notes:
        child(NOT_APPLIED, saga_type, note.disposition).inc()
