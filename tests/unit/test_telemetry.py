"""The platform's log lines and span plumbing: JSON with the order, contact details masked, the OTEL_*
exporters chosen from the environment, and database calls outside traced work never starting a trace."""

import contextvars
import logging

import orjson
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision

from oms_platform import telemetry


def _line(msg: str, *args: object, exc: bool = False) -> dict:
    record = logging.LogRecord("oms.test", logging.INFO, __file__, 1, msg, args, None)
    if exc:
        try:
            raise ValueError("bad address ana@example.com")
        except ValueError:
            import sys

            record.exc_info = sys.exc_info()
    return orjson.loads(telemetry.JsonFormatter("inventory").format(record))


def test_a_line_about_an_order_names_the_order_and_the_service():
    with telemetry.order_scope("0193a0a0-0000-7000-8000-000000000001"):
        line = _line("reserved %d units", 2)
    assert line["order_id"] == "0193a0a0-0000-7000-8000-000000000001"
    assert line["service"] == "inventory" and line["msg"] == "reserved 2 units"
    assert "order_id" not in _line("idle")


def test_emails_and_phone_numbers_are_masked_in_messages_and_tracebacks():
    line = _line("customer %s / %s / %s", "ana@example.com", "+351912345678", "+44 20 7946 0958", exc=True)
    assert line["msg"] == "customer <email> / <phone> / <phone>"
    assert "ana@example.com" not in line["exc"] and "<email>" in line["exc"]


def test_ids_times_and_amounts_are_not_mistaken_for_phone_numbers():
    text = "order 0193a0a0-0000-7000-8000-000000000001 at 2026-12-04T16:40:14Z total 1234567.89 offset +3600"
    assert telemetry.mask(text) == text


def test_exporters_follow_the_otel_variables(monkeypatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert telemetry._exporters(None) == []
    assert [type(e).__name__ for e in telemetry._exporters("http://z:9411/api/v2/spans")] == ["ZipkinExporter"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert [type(e).__name__ for e in telemetry._exporters(None)] == ["OTLPSpanExporter"]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert telemetry._exporters("http://z:9411/api/v2/spans") == []


def test_database_calls_outside_traced_work_start_no_trace():
    sampler = telemetry._NoOrphanQueries(ALWAYS_ON)
    orphan = sampler.should_sample(None, 1, "SELECT", attributes={"db.system": "postgresql"})
    assert orphan.decision == Decision.DROP
    assert sampler.should_sample(None, 1, "POST /v1/orders", attributes={}).decision == Decision.RECORD_AND_SAMPLE


def test_a_later_action_links_its_span_to_the_order_trace():
    from opentelemetry.sdk.trace import TracerProvider

    order_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with TracerProvider().get_tracer("t").start_as_current_span("POST /pick") as span:
        # In a context of its own, as a request has: the order id set stays there.
        contextvars.copy_context().run(telemetry.set_order_id, "0193a0a0-0000-7000-8000-000000000001",
                                       link=order_trace)
    assert [format(link.context.trace_id, "032x") for link in span.links] == ["4bf92f3577b34da6a3ce929d0e0e4736"]
    assert span.attributes["oms.order_trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.attributes[telemetry.ORDER_ID] == "0193a0a0-0000-7000-8000-000000000001"
