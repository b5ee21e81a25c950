"""Order capture is ready when it can take orders (its database), not when its consumer group has
joined: /readyz says whether the consumers have joined as a detail that does not fail readiness."""

import asyncio
import time

import httpx
import pytest

from tests.support.capture import ADMIN, events_reader, has_event, service_process
from tests.support.orders import new_order

pytestmark = pytest.mark.infra

SESSION_TIMEOUT_S = 60


async def test_capture_takes_orders_while_its_consumer_group_is_still_joining(infra, log_dir) -> None:
    dsn = await infra.create_database("cap_readiness")
    svc = service_process(infra, log_dir, dsn, "readiness", KAFKA_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_S * 1000))
    reader = await events_reader(infra.kafka_bootstrap)
    try:
        svc.start()
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(f"{svc.url}/v1/admin/api-keys", json={"channel": "web"}, headers=ADMIN)
            key = resp.json()["key"]
            # SIGKILLed, then started under another static member id: the group waits out the dead
            # member's 60 s session before it hands this process its partitions.
            svc.kill()
            svc.start(wait=False, KAFKA_GROUP_INSTANCE_ID=f"capture-readiness-{time.time_ns()}")
            deadline, body = time.monotonic() + 30, None
            while time.monotonic() < deadline:
                try:
                    ready = await http.get(f"{svc.url}/readyz")
                    if ready.status_code == 200:
                        body = ready.json()
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            assert body is not None, f"not ready within 30 s; log:\n{svc.tail()}"
            assert body["checks"] == {"database": "ok"}
            assert body["details"]["consumers"] != "ok", body  # still joining, and said so

            placed = await http.post(f"{svc.url}/v1/orders", json=new_order(channel="web"),
                                     headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "readiness-1"})
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["order_id"]
            await reader.wait_for(has_event(order_id, "OrderPlaced"), timeout=30)
            still = (await http.get(f"{svc.url}/readyz")).json()
            assert still["details"]["consumers"] != "ok", still  # announced before the group joined
    finally:
        svc.stop()
        await reader.stop()
