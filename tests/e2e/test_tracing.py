"""SREs follow an order by one trace: the caller's traceparent continues into the service's spans
(exported over Zipkin's v2 HTTP API) and into the Kafka headers of the order's event."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.kafka import TopicReader
from tests.support.orders import new_order


class _ZipkinReceiver(BaseHTTPRequestHandler):
    spans: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).spans.extend(json.loads(body))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def zipkin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ZipkinReceiver)
    _ZipkinReceiver.spans = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v2/spans", _ZipkinReceiver.spans
    server.shutdown()


async def test_trace_continues_from_http_caller_to_kafka_headers(infra, database, start_service, http,
                                                                 admin_headers, zipkin):
    endpoint, spans = zipkin
    svc = start_service("order-capture", database, ZIPKIN_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
    reader = await TopicReader(infra.kafka_bootstrap, "oms.orders.events").start()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        key = (await http.post(f"{svc.url}/v1/admin/api-keys", json={"channel": "web"}, headers=admin_headers)).json()
        resp = await http.post(f"{svc.url}/v1/orders", json=new_order(), headers={
            "Authorization": f"Bearer {key['key']}", "Idempotency-Key": "trace-1",
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
        })
        assert resp.status_code == 201, resp.text
        order_id = resp.json()["order_id"]
        records = await reader.wait_for(lambda rs: any(r.key == order_id.encode() for r in rs))
        header = dict(next(r for r in records if r.key == order_id.encode()).headers)["traceparent"].decode()
        assert header.split("-")[1] == trace_id
        for _ in range(100):
            if any(s["traceId"] == trace_id and s.get("kind") == "SERVER" for s in spans):
                break
            await reader.poll(0.1)
        server = [s for s in spans if s["traceId"] == trace_id and s.get("kind") == "SERVER"]
        assert server, f"no server span exported for the trace; got {len(spans)} spans"
        assert server[0]["name"].lower() == "post /v1/orders"
        assert server[0]["localEndpoint"]["serviceName"] == "order-capture"
        assert server[0]["parentId"] == "00f067aa0ba902b7"
    finally:
        await reader.stop()
