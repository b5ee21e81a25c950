"""OpenTelemetry tracing and JSON logs, set up in one place for every service."""

import logging
import sys
from collections.abc import Iterable, Mapping

import orjson
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

_configured = False


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the current trace and span ids for log/trace correlation."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(
    service: str, *, log_level: str = "INFO", zipkin_endpoint: str | None = None, sample_ratio: float = 1.0
) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    logging.Formatter.converter = __import__("time").gmtime  # UTC timestamps
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    for noisy in ("aiokafka", "faststream", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    # Without an exporter nothing is recorded (spans cost next to nothing), but every span still gets a
    # valid context, so trace ids still flow from HTTP callers into Kafka headers and on downstream.
    sampler = ParentBased(TraceIdRatioBased(sample_ratio)) if zipkin_endpoint else ALWAYS_OFF
    provider = TracerProvider(resource=Resource.create({"service.name": service}), sampler=sampler)
    if zipkin_endpoint:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        provider.add_span_processor(BatchSpanProcessor(ZipkinExporter(endpoint=zipkin_endpoint)))
    trace.set_tracer_provider(provider)


def tracer(name: str = "oms") -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Iterable[tuple[str, bytes]] | Mapping[str, str] | None) -> Context:
    if headers is None:
        return Context()
    if isinstance(headers, Mapping):
        return propagate.extract(headers)
    return propagate.extract({k: v.decode("latin-1") for k, v in headers if v is not None})
