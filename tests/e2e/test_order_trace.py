"""An order's whole life in a real Zipkin (the server `make up` runs, started here on a free port):
every service exports to it (ZIPKIN_ENDPOINT), the order is placed, picked, packed, dispatched, scanned
to `delivered` and returned. The capture response's traceparent names one trace that spans the
services that act on the order, with its HTTP, Kafka, database and saga-step spans; the later actions
start traces of their own, found by Zipkin's search on the `oms.order_id` tag; no span carries the
customer's e-mail or phone, and the services' JSON log lines about the order name it and its trace."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.support.notification import SmtpSink
from tests.support.polling import eventually
from tests.support.returns import receive, request_when_copied, return_body, wait_order, wait_return
from tests.support.system import SERVICES, System, unique
from tests.support.tracking import TRACKING_ENV, scan, wait_tracking
from tests.support.zipkin import Zipkin

pytestmark = pytest.mark.infra

ALL = (*SERVICES, "tracking", "returns", "notification")
EMAIL, PHONE = "ana@example.com", "+351912345678"  # the customer of tests.support.orders.new_order


@pytest.fixture(scope="module")
async def zipkin(log_dir: Path) -> AsyncIterator[Zipkin]:
    z = Zipkin(log_dir).start()
    try:
        await asyncio.to_thread(z.wait_ready)
        yield z
    finally:
        z.stop()


@pytest.fixture(scope="module")
async def system(infra, log_dir, zipkin: Zipkin) -> AsyncIterator[System]:
    smtp = SmtpSink().start()
    # INFO and unbuffered: the test reads the services' log lines while they run.
    traced = {"ZIPKIN_ENDPOINT": zipkin.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200", "PYTHONUNBUFFERED": "1",
              "LOG_LEVEL": "INFO"}
    env = {name: dict(traced) for name in ALL}
    env["tracking"].update(TRACKING_ENV)
    env["returns"]["TICK_INTERVAL_SECONDS"] = "0.2"
    env["notification"].update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SENDER_POLL_SECONDS": "0.2"})
    system = await System.start(infra, log_dir, services=ALL, env=env)
    try:
        yield system
    finally:
        await system.stop()
        smtp.stop()


def service(span: dict) -> str:
    return span.get("localEndpoint", {}).get("serviceName", "")


def steps_in_order(spans: list[dict]) -> list[tuple[str, str]]:
    """(step, outcome) of the order saga's step spans, in the saga's own order."""
    rows = [s for s in spans if s.get("tags", {}).get("oms.saga.type") == "order"]
    rows.sort(key=lambda s: (int(s["tags"]["oms.saga.seq"]), s["timestamp"]))
    return [(s["tags"]["oms.saga.step"], s["tags"]["oms.saga.outcome"]) for s in rows]


async def test_one_trace_per_order_and_every_later_action_found_by_the_order_id(system: System, zipkin: Zipkin):
    assert system.http is not None
    sku, loc = unique("TEE"), unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 5)
    resp = await system.http.post(f"{system.url('order-capture')}/v1/orders", json=system.order_body({sku: 1}),
                                  headers={**system.channel, "Idempotency-Key": unique("idem")})
    assert resp.status_code == 201, resp.text
    order_id = resp.json()["order_id"]
    version, trace_id, _, flags = resp.headers["traceparent"].split("-")
    assert version == "00" and len(trace_id) == 32 and int(flags, 16) & 1  # sampled

    [shipment] = await system.wait_shipments(order_id, 1)
    await system.dispatch(shipment["shipment_id"])  # pick, pack, dispatch
    await system.wait_status(order_id, "shipped")
    await wait_tracking(system, order_id, lambda v: len(v["shipments"]) == 1, what="the shipment")
    await scan(system, shipment, "in_transit")
    await scan(system, shipment, "delivered")
    await wait_order(system, order_id, "delivered")
    ret = (await request_when_copied(system, return_body(order_id, {sku: 1}))).json()
    await receive(system, ret["return_id"], [(sku, 1, "resellable")])
    await wait_return(system, ret["return_id"], "received")

    # The order's own trace: capture -> relay -> Kafka -> each service acting on the order.
    async def whole_trace() -> list[dict] | None:
        spans = await zipkin.trace(system.http, trace_id)
        return spans if len({service(s) for s in spans}) >= 6 and steps_in_order(spans) else None

    spans = await eventually(whole_trace, timeout=30, what="the order's trace in Zipkin")
    services = {service(s) for s in spans}
    assert {"order-capture", "orchestrator", "inventory", "fulfilment", "tracking", "notification"} <= services
    kinds = {(service(s), s.get("kind")) for s in spans}
    assert ("order-capture", "SERVER") in kinds and ("order-capture", "PRODUCER") in kinds
    assert {("inventory", "CONSUMER"), ("fulfilment", "CONSUMER"), ("orchestrator", "PRODUCER")} <= kinds
    db = [s for s in spans if s.get("kind") == "CLIENT" and s.get("tags", {}).get("db.system") == "postgresql"]
    assert {"order-capture", "orchestrator", "inventory", "fulfilment"} <= {service(s) for s in db}
    # (capture checks the channel key before it knows the order: those calls are not the order's.)
    assert all(s.get("tags", {}).get("oms.order_id") == order_id for s in db if service(s) != "order-capture")
    assert any(s.get("tags", {}).get("oms.order_id") == order_id for s in db if service(s) == "order-capture")
    capture = next(s for s in spans if s.get("kind") == "SERVER" and service(s) == "order-capture")
    assert capture["name"] == "post /v1/orders" and capture["tags"]["oms.order_id"] == order_id
    assert steps_in_order(spans)[:4] == [("reserve_stock", "started"), ("reserve_stock", "succeeded"),
                                         ("payment_gate", "passed"), ("create_shipments", "started")]
    attempt = next(s for s in spans if s.get("tags", {}).get("oms.saga.step") == "reserve_stock")
    assert attempt["tags"]["oms.saga.attempt"] == "1"

    # Later actions start traces of their own; Zipkin's search by the order id finds them all.
    wanted = {"post /v1/shipments/{shipment_id}/pick", "post /v1/shipments/{shipment_id}/pack",
              "post /v1/shipments/{shipment_id}/dispatch", "post /v1/returns",
              "post /v1/returns/{return_id}/receive"}

    async def later_actions() -> list[list[dict]] | None:
        traces = await zipkin.traces_tagged(system.http, "oms.order_id", order_id)
        names = {s["name"] for t in traces for s in t if s.get("kind") == "SERVER"}
        scans = [t for t in traces if any(service(s) == "tracking" and s.get("kind") == "SERVER" for s in t)]
        return traces if wanted <= names and len(scans) >= 2 and "await_delivery" in str(traces) else None

    traces = await eventually(later_actions, timeout=30, what="the later actions found by oms.order_id")
    # pick, pack and dispatch link to the order's trace (Zipkin keeps no links: a tag says it too).
    warehouse = [s for t in traces for s in t if s["name"].startswith("post /v1/shipments/")]
    assert len(warehouse) == 3 and all(s["tags"]["oms.order_trace_id"] == trace_id for s in warehouse)
    # ... and so do the carrier's scans and the return's request and receipt (each service keeps the
    # order's traceparent with its copy of the order, from the OrderPlaced message it consumed).
    later = [s for t in traces for s in t if s.get("kind") == "SERVER" and s["name"] in (
        "post /v1/carrier-events", "post /v1/returns", "post /v1/returns/{return_id}/receive")]
    assert len(later) == 4, [s["name"] for s in later]
    assert all(s["tags"].get("oms.order_trace_id") == trace_id and s["tags"]["oms.order_id"] == order_id
               for s in later), [(s["name"], s["tags"].get("oms.order_trace_id")) for s in later]
    assert len(traces) >= 1 + len(wanted) + 2
    every = [s for t in traces for s in t]
    steps = [step for step, outcome in steps_in_order(every) if outcome != "started"]
    assert steps == ["reserve_stock", "payment_gate", "create_shipments", "await_dispatch", "await_delivery"]

    # No contact details in any span; log lines about the order name it and its trace.
    text = orjson.dumps(every).decode()
    assert EMAIL not in text and PHONE not in text
    scans = log_lines(system, "tracking", "scan ")
    assert len(scans) == 2 and all(line["order_id"] == order_id and line["service"] == "tracking" for line in scans)
    assert all(len(line["trace_id"]) == 32 and len(line["span_id"]) == 16 for line in scans)
    mails = log_lines(system, "notification", "email ")
    assert mails and all(line["order_id"] == order_id and EMAIL not in line["msg"] for line in mails)


def log_lines(system: System, name: str, prefix: str) -> list[dict]:
    """The JSON log lines of a service whose message starts with `prefix`."""
    lines = [orjson.loads(line) for line in system.services[name].log_path.read_text().splitlines()
             if line.startswith("{")]
    return [line for line in lines if line["msg"].startswith(prefix)]
