"""The test plays order capture, inventory, fulfilment, billing and tracking around a real
orchestrator process: it places orders, reads the commands the orchestrator sends and answers them
over Kafka, with causation_id = the answered command's event_id."""

import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
from pydantic import BaseModel

from oms_contracts import Envelope, new_envelope
from oms_contracts import orders as o
from oms_contracts.topics import BILLING_EVENTS, BILLING_REQUESTS, ORDERS_EVENTS, ORDERS_STATUS, commands, events
from oms_platform.kafka import ensure_topics
from tests.support.kafka import TopicReader, produce

OUT_TOPICS = [commands("inventory"), commands("fulfilment"), BILLING_REQUESTS, ORDERS_STATUS]
IN_TOPICS = [ORDERS_EVENTS, events("inventory"), events("fulfilment"), BILLING_EVENTS, events("tracking")]
LINES = [("TSHIRT-RED-M", 2, "19.90"), ("MUG-1", 1, "7.50")]


class Driver:
    """Topics are named as in CONTRACT.md; `prefix` is the process's namespace on the cluster."""

    def __init__(self, bootstrap: str, url: str, prefix: str, headers: dict[str, str]):
        self.bootstrap, self.url, self.prefix, self.headers = bootstrap, url, prefix, headers
        self.readers = {t: TopicReader(bootstrap, prefix + t) for t in OUT_TOPICS}

    async def start(self) -> "Driver":
        await ensure_topics(self.bootstrap, [self.prefix + t for t in IN_TOPICS])
        for reader in self.readers.values():
            await reader.start()
        return self

    async def stop(self) -> None:
        for reader in self.readers.values():
            await reader.stop()

    # --- playing the other systems ----------------------------------------------------------------

    async def send(self, topic: str, *messages: BaseModel, causation_id: Any = None, order_id: uuid.UUID) -> list:
        envs = [new_envelope(m, producer="test", order_id=order_id, causation_id=causation_id) for m in messages]
        await self.resend(topic, envs)
        return envs

    async def resend(self, topic: str, envs: list[Envelope]) -> None:
        """Produces envelopes as they are (the same event ids again, as a redelivery would)."""
        await produce(self.bootstrap, self.prefix + topic, [
            (str(env.order_id).encode(), orjson.dumps(env.model_dump(mode="json")),
             [("event_type", env.event_type.encode())]) for env in envs
        ])

    async def reply(self, command: dict, topic: str, *messages: BaseModel) -> list:
        return await self.send(topic, *messages, causation_id=uuid.UUID(command["event_id"]),
                               order_id=uuid.UUID(command["order_id"]))

    async def place(self, *, payment: str = "authorized") -> uuid.UUID:
        order_id = uuid.uuid4()
        total = sum((Decimal(p) * q for _, q, p in LINES), Decimal(0))
        event = o.OrderPlacedV1(
            order_id=order_id, channel="web", external_id=f"IT-{order_id.hex[:10]}", currency="EUR",
            customer=o.Customer(id="c-1", email="ana@example.com", name="Ana Lima"),
            shipping_address=o.Address(name="Ana Lima", line1="Rua Augusta 1", city="Lisboa",
                                       postal_code="1100-048", country="PT"),
            shipping_method="standard",
            lines=[o.OrderLine(sku=s, quantity=q, unit_price=Decimal(p)) for s, q, p in LINES],
            payment=o.Payment(method="card", status=payment, reference="pay_1", amount=total),
            total=total, created_at=datetime.now(UTC),
        )
        await self.send(ORDERS_EVENTS, event, order_id=order_id)
        return order_id

    async def cancel(self, order_id: uuid.UUID, reason: str = "customer_request") -> None:
        await self.send(ORDERS_EVENTS, o.OrderCancellationRequestedV1(order_id=order_id, reason=reason,
                                                                      requested_by="operator"), order_id=order_id)

    # --- what the orchestrator sent ---------------------------------------------------------------

    def sent(self, topic: str, order_id: uuid.UUID, event_type: str | None = None) -> list[dict]:
        key, out = str(order_id).encode(), []
        for record in self.readers[topic].records:
            if record.key != key:
                continue
            try:
                env = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                continue
            if event_type in (None, env.get("event_type")):
                out.append(env)
        return out

    async def wait_sent(self, topic: str, order_id: uuid.UUID, event_type: str, count: int = 1,
                        timeout: float = 15) -> list[dict]:
        """Waits until `count` distinct messages of the type were sent; returns them, oldest first."""
        def distinct() -> list[dict]:
            seen: dict[str, dict] = {}
            for env in self.sent(topic, order_id, event_type):
                seen.setdefault(env["event_id"], env)
            return list(seen.values())

        await self.readers[topic].wait_for(lambda _: len(distinct()) >= count, timeout)
        return distinct()

    async def command(self, topic: str, order_id: uuid.UUID, event_type: str, n: int = 1,
                      timeout: float = 15) -> dict:
        return (await self.wait_sent(topic, order_id, event_type, n, timeout))[n - 1]

    def statuses(self, order_id: uuid.UUID) -> list[tuple[str, str | None]]:
        """The order's status changes as a consumer applies them: a republished event (same event id,
        after a crash between publishing and marking it sent) counts once."""
        unique = {e["event_id"]: e for e in self.sent(ORDERS_STATUS, order_id, "OrderStatusChanged")}
        return [(e["payload"]["new_status"], e["payload"]["reason"]) for e in unique.values()]

    async def wait_status(self, order_id: uuid.UUID, status: str, timeout: float = 15) -> list[tuple]:
        await self.readers[ORDERS_STATUS].wait_for(
            lambda _: status in [s for s, _ in self.statuses(order_id)], timeout)
        return self.statuses(order_id)

    async def wait_state(self, order_id: uuid.UUID, state: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            saga = await self.saga(order_id)
            if saga["state"] == state or time.monotonic() > deadline:
                assert saga["state"] == state, saga
                return saga
            await asyncio.sleep(0.1)

    async def saga(self, order_id: uuid.UUID) -> dict:
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"{self.url}/v1/sagas/{order_id}", headers=self.headers)
        assert resp.status_code == 200, resp.text
        return resp.json()
