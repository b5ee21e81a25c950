"""OpenTelemetry tracing and JSON logs, set up in one place for every service.

Tracing is on when an exporter is configured: ZIPKIN_ENDPOINT (Zipkin's v2 API, what `make up` uses) or
the standard OTEL_* variables (OTEL_TRACES_EXPORTER=otlp|zipkin|console, OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: OTLP over HTTP; OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER[_ARG], OTEL_BSP_*). Without one the sampler is ALWAYS_OFF, `enabled()` is False and
the platform skips every optional span (relay publish, saga steps, database calls).

Every span and log line about an order carries its id: `order_scope(order_id)` sets it for the code
it wraps (the consumer sets it per message, the HTTP edge from an `{order_id}` path parameter or the
handler through `set_order_id`), a span processor puts it on each span started meanwhile (the database
spans too) as `oms.order_id`, and the JSON formatter writes it as `order_id`."""

import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind

_configured = False
_enabled = False
ORDER_ID = "oms.order_id"
_order_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("oms_order_id", default=None)

# Safety net for logs and span attributes: customer e-mail addresses and phone numbers (international
# form, as CONTRACT.md has them: "+351912345678", "+44 20 7946 0958") are masked wherever they appear.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w+])\+\d[\d ().-]{6,18}\d(?!\w)")


def mask(text: str) -> str:
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    if "+" in text:
        text = _PHONE.sub("<phone>", text)
    return text


def enabled() -> bool:
    """Whether spans are exported (else the platform's optional spans are not even started)."""
    return _enabled


def current_order_id() -> str | None:
    return _order_id.get()


@contextmanager
def order_scope(order_id: object) -> Iterator[None]:
    token = _order_id.set(str(order_id))
    try:
        yield
    finally:
        _order_id.reset(token)


def set_order_id(order_id: object, *, link: str | None = None) -> None:
    """For a request that learns its order on the way (e.g. capture, a pick): the rest of the request's
    spans and log lines carry it, and so does the request's own span, with a span link to the order's
    trace when `link` (the traceparent kept with the service's copy of the order) is given."""
    _order_id.set(str(order_id))
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(ORDER_ID, str(order_id))
        for to in link_to(link):
            span.add_link(to.context, {"oms.link": "order"})
            # Zipkin's model has no links (its exporter drops them): the order's trace id as a tag too.
            span.set_attribute("oms.order_trace_id", format(to.context.trace_id, "032x"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the service, the current trace and span ids and the order the line is
    about (log/trace correlation), with e-mail addresses and phone numbers masked."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        order_id = getattr(record, "order_id", None) or _order_id.get()
        if order_id is not None:
            entry["order_id"] = str(order_id)
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class _OrderIdProcessor(SpanProcessor):
    """Tags every span started inside an order_scope with the order (database spans included), and
    masks contact details in string attributes set at the start."""

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        order_id = _order_id.get()
        if order_id is not None and not (span.attributes and ORDER_ID in span.attributes):
            span.set_attribute(ORDER_ID, order_id)

    def on_end(self, span: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _NoOrphanQueries(Sampler):
    """Database calls outside any traced work (the relay's polling, pool checks) start no trace of their
    own; everything else is decided by `inner`."""

    def __init__(self, inner: Sampler):
        self.inner = inner

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str, kind: SpanKind | None = None,
                      attributes: Any = None, links: Sequence[Link] | None = None, trace_state: Any = None
                      ) -> SamplingResult:
        orphan = not trace.get_current_span(parent_context).get_span_context().is_valid
        if orphan and attributes and ("db.system" in attributes or "db.system.name" in attributes):
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoOrphanQueries({self.inner.get_description()})"


def _exporters(zipkin_endpoint: str | None) -> list[SpanExporter]:
    env = os.environ
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            names.append("otlp")
        if zipkin_endpoint:
            names.append("zipkin")
    out: list[SpanExporter] = []
    for name in dict.fromkeys(names):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            out.append(OTLPSpanExporter())  # reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, headers, timeout
        elif name == "zipkin":
            from opentelemetry.exporter.zipkin.json import ZipkinExporter

            out.append(ZipkinExporter(endpoint=zipkin_endpoint))  # None: OTEL_EXPORTER_ZIPKIN_ENDPOINT
        elif name == "console":
            out.append(ConsoleSpanExporter())
        elif name != "none":
            logging.getLogger(__name__).warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)
    return out


def setup(
    service: str, *, log_level: str = "INFO", zipkin_endpoint: str | None = None, sample_ratio: float = 1.0
) -> None:
    global _configured, _enabled
    if _configured:
        return
    _configured = True
    logging.Formatter.converter = time.gmtime  # UTC timestamps
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    for noisy in ("aiokafka", "faststream", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    # Without an exporter nothing is recorded (spans cost next to nothing), but every span still gets a
    # valid context, so trace ids still flow from HTTP callers into Kafka headers and on downstream.
    exporters = _exporters(zipkin_endpoint)
    _enabled = bool(exporters)
    if not _enabled:
        sampler: Sampler = ALWAYS_OFF
    elif os.environ.get("OTEL_TRACES_SAMPLER"):
        from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

        sampler = _NoOrphanQueries(_get_from_env_or_default())
    else:
        sampler = _NoOrphanQueries(ParentBased(TraceIdRatioBased(sample_ratio)))
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    if _enabled:
        provider.add_span_processor(_OrderIdProcessor())
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().instrument(tracer_provider=provider)
    trace.set_tracer_provider(provider)


def tracer(name: str = "oms") -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def traceparent(span: trace.Span | None = None) -> str:
    """The W3C traceparent of `span` (default: the current one); valid even when nothing is recorded."""
    sc = (span or trace.get_current_span()).get_span_context()
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


def extract_context(headers: Iterable[tuple[str, bytes]] | Mapping[str, str] | None) -> Context:
    if headers is None:
        return Context()
    if isinstance(headers, Mapping):
        return propagate.extract(headers)
    if _w3c_propagators():  # a record whose one trace header is a plain traceparent: parsed here
        found: bytes | None = None
        for k, v in headers:
            if k == "traceparent":
                found = v
            elif k in _W3C_FIELDS:
                break
        else:
            if found is None:
                return Context()
            if (context := _traceparent_context(found)) is not None:
                return context
    return propagate.extract({k: v.decode("latin-1") for k, v in headers if v is not None})


# The default propagators (W3C trace context and baggage) read these headers. A consumed record's trace
# context is extracted per message; the propagators' generic path cost 4% of the orchestrator's CPU at
# the maximum rate, half of it avoidable for the usual record (a version-00 traceparent, nothing else).
_W3C_FIELDS = frozenset({"traceparent", "tracestate", "baggage"})
_TRACEPARENT_00 = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_textmap_checked: tuple[object, bool] = (None, False)


def _w3c_propagators() -> bool:
    global _textmap_checked
    textmap = propagate.get_global_textmap()
    if _textmap_checked[0] is not textmap:
        _textmap_checked = (textmap, set(textmap.fields) == _W3C_FIELDS)
    return _textmap_checked[1]


def _traceparent_context(value: bytes) -> Context | None:
    """What TraceContextTextMapPropagator extracts from a well-formed version-00 traceparent alone (None
    for anything else: the propagators decide)."""
    match = _TRACEPARENT_00.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:
        return None
    span_context = trace.SpanContext(trace_id=trace_id, span_id=span_id, is_remote=True,
                                     trace_flags=trace.TraceFlags(int(match[3], 16)), trace_state=None)
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), Context())


def traceparent_of(headers: Sequence[tuple[str, bytes | None]] | None) -> str | None:
    """The traceparent a consumed record came with (the trace of what it reports): what a service keeps
    with its copy of an order, so later actions on the order link to the order's trace (link_to)."""
    return next((v.decode("latin-1") for k, v in headers or () if k == "traceparent" and v), None)


@contextmanager
def continued(context: Context) -> Iterator[None]:
    """`context` (a consumed message's trace, from extract_context) made current without starting a
    span: what is emitted inside carries that trace. For the consumer when nothing is exported, where
    a (non-recording) span per message cost ids, a sampler call and two context switches for nothing."""
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def has_trace(context: Context) -> bool:
    return trace.get_current_span(context).get_span_context().is_valid


def link_to(traceparent_header: str | None) -> list[Link]:
    """A span link to the trace of a stored traceparent (e.g. the order's, kept with a service's copy
    of the order), for later actions on the order that start traces of their own."""
    if not traceparent_header:
        return []
    ctx = trace.get_current_span(propagate.extract({"traceparent": traceparent_header})).get_span_context()
    return [Link(ctx)] if ctx.is_valid else []
