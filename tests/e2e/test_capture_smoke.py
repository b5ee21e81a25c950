"""An order posted over HTTP is stored, readable, and announced exactly once on oms.orders.events."""

import orjson

from tests.support.kafka import TopicReader
from tests.support.orders import new_order


async def test_order_posted_is_stored_and_announced_once(infra, database, start_service, http, admin_headers):
    svc = start_service("order-capture", database)
    reader = await TopicReader(infra.kafka_bootstrap, "oms.orders.events").start()
    try:
        key = (await http.post(f"{svc.url}/v1/admin/api-keys", json={"channel": "web"}, headers=admin_headers)).json()
        headers = {"Authorization": f"Bearer {key['key']}", "Idempotency-Key": "smoke-1"}
        resp = await http.post(f"{svc.url}/v1/orders", json=new_order(), headers=headers)
        assert resp.status_code == 201, resp.text
        order = resp.json()
        assert order["status"] == "pending" and order["total"] == "39.80"
        assert resp.headers["location"] == f"/v1/orders/{order['order_id']}"

        got = await http.get(f"{svc.url}/v1/orders/{order['order_id']}", headers=headers)
        assert got.status_code == 200 and got.json()["external_id"] == order["external_id"]

        await reader.wait_for(lambda rs: any(r.key == order["order_id"].encode() for r in rs))
        await reader.drain(1.0)
        mine = [r for r in reader.records if r.key == order["order_id"].encode()]
        assert len(mine) == 1
        env = orjson.loads(mine[0].value)
        assert set(env) == {"event_id", "event_type", "event_version", "occurred_at", "producer", "order_id",
                            "correlation_id", "causation_id", "payload"}
        assert env["event_type"] == "OrderPlaced" and env["event_version"] == 1
        assert env["producer"] == "order-capture" and env["order_id"] == order["order_id"]
        assert env["payload"]["total"] == "39.80" and env["payload"]["lines"][0]["unit_price"] == "19.90"
        hdrs = dict(mine[0].headers)
        assert hdrs["event_type"] == b"OrderPlaced"
        assert hdrs["traceparent"].startswith(b"00-")
    finally:
        await reader.stop()
