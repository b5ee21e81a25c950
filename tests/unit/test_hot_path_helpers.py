"""Per-message helpers of the hot paths, checked against what they stand in for: the relay's cached
partitioning hash against aiokafka's DefaultPartitioner, the remembered metric children against
labels(), and the consumer's own parse of a plain traceparent against the OpenTelemetry propagators."""

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry, Counter

from oms_platform import metrics, telemetry
from oms_platform.outbox_publisher import key_hash

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_keys_go_to_the_partition_the_default_partitioner_gives_them():
    partitioner = DefaultPartitioner()
    for count in (1, 2, 3, 6, 12):
        partitions = list(range(count))
        for _ in range(300):
            key = str(uuid.uuid4()).encode()
            assert partitions[key_hash(key) % count] == partitioner(key, partitions, partitions)


def test_a_remembered_metric_child_is_the_labelled_one_and_counts():
    counter = Counter("oms_test_children_total", "test", ["a", "b"], registry=CollectorRegistry())
    assert metrics.child(counter, "x", "y") is counter.labels("x", "y")
    metrics.child(counter, "x", "y").inc(3)
    assert counter.labels("x", "y")._value.get() == 3
    assert metrics.child(counter, "x", "z") is not metrics.child(counter, "x", "y")


def _span_context(headers):
    return trace.get_current_span(telemetry.extract_context(headers)).get_span_context()


def _by_propagators(headers):
    carrier = {k: v.decode("latin-1") for k, v in headers}
    return trace.get_current_span(propagate.extract(carrier)).get_span_context()


@pytest.mark.parametrize("headers", [
    [("event_type", b"X"), ("traceparent", TRACEPARENT)],
    [("traceparent", TRACEPARENT.replace(b"-01", b"-00"))],
    [("traceparent", TRACEPARENT.upper())],  # not lowercase: invalid
    [("traceparent", b"00-" + b"0" * 32 + b"-b7ad6b7169203331-01")],  # zero trace id: invalid
    [("traceparent", TRACEPARENT + b"-extra")],  # version 00 with more fields: invalid
    [("traceparent", b"01" + TRACEPARENT[2:] + b"-future")],  # a later version: its first fields count
    [("traceparent", TRACEPARENT), ("tracestate", b"vendor=1")],
    [("event_type", b"X")],
    [],
])
def test_the_consumers_traceparent_parse_agrees_with_the_propagators(headers):
    assert _span_context(headers) == _by_propagators(headers)
    if headers and headers[-1][0] == "tracestate":
        assert _span_context(headers).trace_state.get("vendor") == "1"


def test_a_plain_traceparent_is_parsed_without_the_propagators(monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("propagate.extract called")

    expected = _by_propagators([("traceparent", TRACEPARENT)])
    monkeypatch.setattr(propagate, "extract", refuse)
    assert _span_context([("event_type", b"X"), ("traceparent", TRACEPARENT)]) == expected
    assert expected.is_valid and expected.is_remote
