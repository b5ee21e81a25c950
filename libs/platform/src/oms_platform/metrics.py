"""Prometheus metrics shared by every service (served at /metrics)."""

from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

_CHILDREN: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}


def child(metric: MetricWrapperBase, *values: str) -> Any:
    """metric.labels(*values), remembered: labels() checks its arguments and takes a lock on every call
    (about 2% of the orchestrator's CPU at the maximum rate). For metrics whose children are never
    removed (label values from small fixed sets: routes, consumers, topics, saga steps)."""
    found = _CHILDREN.get((metric, values))
    if found is None:
        found = _CHILDREN[(metric, values)] = metric.labels(*values)
    return found


HTTP_REQUESTS = Counter("oms_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "oms_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OUTBOX_PUBLISHED = Counter("oms_outbox_published_total", "Messages published by the outbox relay", ["topic"])
OUTBOX_PARKED = Counter(
    "oms_outbox_parked_total", "Outbox rows Kafka refused for good, parked (not retried) so later rows flow", ["topic"]
)
OUTBOX_LAG = Gauge("oms_outbox_unsent", "Outbox rows not yet published (read by the relay's leader)")
OUTBOX_OLDEST_AGE = Gauge(
    "oms_outbox_oldest_unsent_age_seconds", "Age of the oldest outbox row not yet published (0 when none)"
)
DLQ_MESSAGES = Counter(
    "oms_dlq_messages_total", "Messages dead-lettered, by source topic and consumer", ["topic", "consumer"]
)
CONSUMED = Counter("oms_consumer_messages_total", "Messages consumed", ["consumer", "outcome"])
CONSUMER_CONFLICTS = Counter(
    "oms_consumer_optimistic_conflicts_total",
    "Optimistic batches (one statement, no transaction) undone because what they read was written meanwhile "
    "or an event in them was applied before; each is applied again in a transaction",
    ["consumer"],
)
CONSUMER_RECLAIMED = Counter(
    "oms_consumer_batches_reclaimed_total",
    "Batches rolled back and applied again because an event in them had been applied before (redeliveries)",
    ["consumer"],
)
CONSUMER_BATCH = Histogram(
    "oms_consumer_batch_seconds", "Time to apply one consumed batch", ["consumer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
CONSUMER_LAG = Gauge(
    "oms_consumer_lag", "Records on the partition not yet fetched by this consumer (high watermark - position)",
    ["consumer", "topic", "partition"],
)
