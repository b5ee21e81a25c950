"""The parties around the notification service in tests: a real SMTP server (aiosmtpd), real HTTP
webhook receivers (docs/examples/webhook_receiver.py), the event publishers (order capture, the
orchestrator, fulfilment, returns, billing) played over Kafka, and the service as a real process."""

import asyncio
import importlib.util
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from pydantic import BaseModel

from oms_contracts import new_envelope
from oms_contracts.billing import RefundCompletedV1
from oms_contracts.fulfilment import ShipmentDispatchedV1
from oms_contracts.inventory import StockLine
from oms_contracts.orders import OrderPlacedV1, OrderStatusChangedV1
from oms_contracts.returns import ReturnApprovedV1, ReturnLine
from oms_contracts.topics import BILLING_EVENTS, ORDERS_EVENTS, ORDERS_STATUS, events
from tests.support.infra import ROOT
from tests.support.orders import new_order
from tests.support.services import ADMIN_TOKEN, ServiceProcess, free_port

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# docs/ is documentation, not a package: the example receiver is loaded from its file, as a reader runs it.
_spec = importlib.util.spec_from_file_location("webhook_receiver", ROOT / "docs" / "examples" / "webhook_receiver.py")
assert _spec is not None and _spec.loader is not None
receiver_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(receiver_example)


class SmtpSink:
    """An SMTP server on a fixed port that can be stopped (connections refused) and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[EmailMessage] = []
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        msg["X-Test-Rcpt-To"] = ",".join(envelope.rcpt_tos)
        self.received.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def start(self) -> "SmtpSink":
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def of_order(self, order_id: str) -> list[EmailMessage]:
        return [m for m in self.received if m["X-OMS-Order-Id"] == str(order_id)]


class Receiver:
    """A webhook receiver (the documented example) recording what it applied; it can be made to fail
    (answer 500) for a while."""

    def __init__(self, secret: str):
        self.secret = secret
        self.applied: list[tuple[str, dict]] = []
        self.failures = 0  # requests answered 500
        self.fail_until = 0.0  # time.monotonic() until which every request fails
        self.fail_next = 0  # this many next requests fail
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), receiver_example.make_handler(secret, self._on_event))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/oms"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._lock = threading.Lock()

    def _on_event(self, event_id: str, envelope: dict) -> None:
        with self._lock:
            if time.monotonic() < self.fail_until or self.fail_next > 0:
                self.fail_next -= 1
                self.failures += 1
                raise RuntimeError("receiver down for a while")
            assert envelope["event_id"] == event_id
            self.applied.append((event_id, envelope))

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of_order(self, order_id: str) -> list[dict]:
        return [env for _, env in self.applied if env["order_id"] == str(order_id)]


def customer(**overrides: Any) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    return {"id": f"c-{suffix}", "email": f"ana.{suffix}@example.com", "name": "Ana Lima", **overrides}


class Publisher:
    """Publishes the events notification consumes, as their producers would (envelope, key = order id)."""

    def __init__(self, bootstrap: str, prefix: str):
        self.bootstrap, self.prefix = bootstrap, prefix
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> "Publisher":
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await self.producer.start()
        return self

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def send(self, topic: str, event: BaseModel, producer: str, *, again: dict | None = None) -> dict:
        """Publishes the event (or, with `again`, that same envelope a second time: a redelivery)."""
        assert self.producer is not None
        env = again or new_envelope(event, producer=producer, order_id=event.order_id).model_dump(mode="json")  # type: ignore[attr-defined]
        headers = [("event_type", env["event_type"].encode()), ("event_version", str(env["event_version"]).encode())]
        await self.producer.send_and_wait(self.prefix + topic, orjson.dumps(env), key=env["order_id"].encode(),
                                          headers=headers)
        return env

    async def placed(self, order_id: uuid.UUID, who: dict, *, channel: str = "web") -> dict:
        body = new_order(channel=channel, customer={**who, "phone": None})
        event = OrderPlacedV1(order_id=order_id, total=Decimal("39.80"), created_at=datetime.now(UTC),
                              **{k: v for k, v in body.items() if k != "total"})
        return await self.send(ORDERS_EVENTS, event, "order-capture")

    async def status(self, order_id: uuid.UUID, new: str, old: str | None = None, reason: str | None = None) -> dict:
        event = OrderStatusChangedV1(order_id=order_id, old_status=old, new_status=new, reason=reason,
                                     changed_at=datetime.now(UTC))
        return await self.send(ORDERS_STATUS, event, "orchestrator")

    async def dispatched(self, order_id: uuid.UUID, tracking_number: str, carrier: str = "oms-post") -> dict:
        event = ShipmentDispatchedV1(order_id=order_id, shipment_id=uuid.uuid4(), location_id="lisbon-dc",
                                     lines=[StockLine(sku="TSHIRT-RED-M", quantity=1)], carrier=carrier,
                                     service="standard", tracking_number=tracking_number,
                                     dispatched_at=datetime.now(UTC))
        return await self.send(events("fulfilment"), event, "fulfilment")

    async def return_approved(self, order_id: uuid.UUID, return_id: uuid.UUID) -> dict:
        event = ReturnApprovedV1(order_id=order_id, return_id=return_id, channel="web", resolution="refund",
                                 lines=[ReturnLine(sku="TSHIRT-RED-M", quantity=1, reason="too_small")],
                                 approved_at=datetime.now(UTC), order_status="return_requested")
        return await self.send(events("returns"), event, "returns")

    async def refund_completed(self, order_id: uuid.UUID, return_id: uuid.UUID, amount: str = "19.90") -> dict:
        event = RefundCompletedV1(order_id=order_id, return_id=return_id, amount=Decimal(amount), currency="EUR",
                                  reference="rf_123")
        return await self.send(BILLING_EVENTS, event, "billing")

    async def journey(self, order_id: uuid.UUID, who: dict) -> list[dict]:
        """Placed, confirmed, two parcels dispatched, delivered, a return approved and refunded: the
        seven emails of the issue."""
        return_id = uuid.uuid4()
        return [
            await self.placed(order_id, who),
            await self.status(order_id, "confirmed", "pending"),
            await self.dispatched(order_id, f"OMS{uuid.uuid4().int % 10**9:09d}0PT"),
            await self.status(order_id, "partially_shipped", "confirmed"),
            await self.dispatched(order_id, f"OMS{uuid.uuid4().int % 10**9:09d}0PT", carrier="oms-express"),
            await self.status(order_id, "shipped", "partially_shipped"),
            await self.status(order_id, "delivered", "shipped"),
            await self.return_approved(order_id, return_id),
            await self.refund_completed(order_id, return_id),
        ]


JOURNEY_TEMPLATES = ["order_confirmed", "shipment_dispatched", "shipment_dispatched", "order_delivered",
                     "return_approved", "refund_issued"]


def notification_process(infra: Any, log_dir: Any, database_url: str, prefix: str, smtp_port: int,
                         **env: str) -> ServiceProcess:
    return ServiceProcess("notification", database_url=database_url, kafka_bootstrap=infra.kafka_bootstrap,
                          log_dir=log_dir, env={
                              "OMS_ADMIN_TOKEN": ADMIN_TOKEN, "KAFKA_TOPIC_PREFIX": prefix,
                              # fresh topics of its own: read them from the start
                              "KAFKA_AUTO_OFFSET_RESET": "earliest", "KAFKA_GROUP_SUFFIX": f".{prefix}",
                              "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMTP_TIMEOUT_SECONDS": "2",
                              "RETRY_BASE_SECONDS": "0.3", "RETRY_MAX_SECONDS": "2", "SENDER_POLL_SECONDS": "0.2",
                              "WEBHOOK_TIMEOUT_SECONDS": "2", "SENDER_LEASE_SECONDS": "5",
                              "CONSUMER_POLL_MS": "100", "LOG_LEVEL": "INFO", **env,
                          })


async def stocked(system: Any, locations: int = 1, on_hand: int = 5) -> dict[str, int]:
    """A new SKU with stock at each of `locations` new locations of a System: lines of one unit each,
    which the order's shipments take one per location."""
    lines = {}
    for _ in range(locations):
        sku, loc = f"TEE-{uuid.uuid4().hex[:8]}".upper(), f"LOC-{uuid.uuid4().hex[:8]}".upper()
        await system.location(loc, "PT")
        await system.set_stock(loc, sku, on_hand)
        lines[sku] = 1
    return lines


async def wait_for(check: Callable[[], Any], *, timeout: float = 30, what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def delivery_log(http: httpx.AsyncClient, url: str, **params: Any) -> list[dict]:
    resp = await http.get(f"{url}/v1/notifications", params={"limit": 200, **params}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]
