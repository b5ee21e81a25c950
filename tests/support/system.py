"""The whole order saga for end-to-end tests: order-capture, orchestrator, inventory and fulfilment as
real processes on real Kafka and PostgreSQL (each service on a fresh database of its own), plus the
parties outside the OMS played over Kafka: the billing system (PaymentConfirmed on
oms.billing.events; its requests read from oms.billing.requests) and the carrier/tracking side
(ShipmentDelivered on oms.tracking.events).

Every service reads and writes the topics of CONTRACT.md (no KAFKA_TOPIC_PREFIX): the services talk
to each other only through them, as in production. Only one System runs at a time in a test run (a
second one would answer the first one's commands). Before the processes start, the end offsets of
every topic they consume are committed for their (new) consumer groups: they skip the history of the
shared topics, and a process killed and started again resumes from committed offsets on every
partition (with no committed offset, KAFKA_AUTO_OFFSET_RESET=latest would skip whatever arrived on
that partition while it was down).

Orders are placed through order-capture's HTTP API and their status is read back from it: that
status arrives over oms.orders.status from the orchestrator, so seeing it proves the whole loop."""

import asyncio
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from oms_contracts import new_envelope
from oms_contracts.billing import PaymentConfirmedV1
from oms_contracts.fulfilment import ShipmentDeliveredV1
from oms_contracts.topics import (
    BILLING_EVENTS,
    BILLING_REQUESTS,
    CHANNELS_EVENTS,
    ORDERS_EVENTS,
    ORDERS_STATUS,
    commands,
    events,
)
from oms_platform.kafka import ensure_topics
from tests.support.infra import Infra
from tests.support.kafka import TopicReader, produce
from tests.support.orders import new_order
from tests.support.polling import eventually
from tests.support.services import ADMIN_TOKEN, ServiceProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICES = ("order-capture", "orchestrator", "inventory", "fulfilment")
TRACKING_EVENTS = events("tracking")

# The consumer groups of each service (group id = "<service>.<consumer name><suffix>") and the
# topics each reads (the ConsumerSpecs of the services' consumers modules).
# Every service but order capture keeps its copy of the channel keys (the platform's "channel-keys").
KEYS = {"channel-keys": (CHANNELS_EVENTS,)}
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "order-capture": {"order-status": (ORDERS_STATUS,), "replacements": (events("returns"),)},
    "orchestrator": {"saga": (ORDERS_EVENTS, events("inventory"), events("fulfilment"), BILLING_EVENTS,
                              TRACKING_EVENTS), "returns": (events("returns"),), **KEYS},
    "inventory": {"commands": (commands("inventory"),), **KEYS},
    "fulfilment": {"commands": (commands("fulfilment"),), "deliveries": (TRACKING_EVENTS,), **KEYS},
    # Not in SERVICES: a module that needs it starts System with services=(*SERVICES, "tracking").
    "tracking": {"timeline": (ORDERS_EVENTS, ORDERS_STATUS, events("inventory"), events("fulfilment"), BILLING_EVENTS,
                              events("returns")), **KEYS},
    "returns": {"copies": (ORDERS_EVENTS, ORDERS_STATUS, events("fulfilment"), TRACKING_EVENTS, events("inventory")),
                "saga": (events("inventory"), BILLING_EVENTS, ORDERS_EVENTS), **KEYS},
    "notification": {"events": (ORDERS_EVENTS, ORDERS_STATUS, events("fulfilment"), TRACKING_EVENTS, events("returns"),
                                BILLING_EVENTS), **KEYS},
}

# How long a starting service may take to answer /readyz (a machine shared with other heavy work may
# need more: OMS_TEST_READY_SECONDS).
READY_SECONDS = float(os.environ.get("OMS_TEST_READY_SECONDS", "180"))

# Statuses an order does not leave in the saga (a wait for another status can stop there).
FINAL = frozenset({"rejected", "cancelled", "delivered"})

# Outbox relays poll often, the orchestrator's deadlines are checked often: short hops, fast tests.
FAST = {"OUTBOX_POLL_INTERVAL": "0.1"}
FAST_ORCHESTRATOR = {**FAST, "TICK_INTERVAL_SECONDS": "0.2"}


def unique(prefix: str) -> str:
    """A SKU or location id no other test uses (a module's tests share one system)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}".upper()


def envelope_bytes(event: BaseModel, *, producer: str, order_id: uuid.UUID) -> tuple[bytes, bytes, list]:
    """(key, value, headers) of a message as CONTRACT.md has it: key = the order id, the envelope as
    JSON, the event type in the headers."""
    env = new_envelope(event, producer=producer, order_id=order_id)
    headers = [("event_type", env.event_type.encode()), ("event_version", str(env.event_version).encode())]
    return str(order_id).encode(), orjson.dumps(env.model_dump(mode="json")), headers


async def commit_end_offsets(bootstrap: str, group_id: str, topics: Iterable[str]) -> None:
    """Commits the current end of every partition of `topics` for a group that has not consumed yet."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(metadata.partitions_for_topic(t) or ())]
        assert tps, f"no partitions for {list(topics)}"
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        await consumer.commit({tp: await consumer.position(tp) for tp in tps})
    finally:
        await consumer.stop()




@dataclass
class System:
    infra: Infra
    log_dir: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)
    http: httpx.AsyncClient | None = None
    channel_key: str | None = None
    status_events: TopicReader | None = None
    billing_requests: TopicReader | None = None
    group_suffix: str = ""

    # --- life cycle ---------------------------------------------------------------------------------

    @classmethod
    async def start(cls, infra: Infra, log_dir: Path, *, env: dict[str, dict[str, str]] | None = None,
                    services: tuple[str, ...] = SERVICES) -> "System":
        """Starts the services (the four of SERVICES unless told; their extra environment by service
        name in `env`), a channel key for channel "web", and readers of oms.orders.status and
        oms.billing.requests from their end."""
        system = cls(infra, log_dir)
        try:
            await system._start(env or {}, services)
        except BaseException:
            await system.stop()
            raise
        return system

    async def _start(self, env: dict[str, dict[str, str]], services: tuple[str, ...]) -> None:
        kafka = self.infra.kafka_bootstrap
        groups_of = {svc: GROUPS[svc] for svc in services}
        all_topics = {t for groups in groups_of.values() for ts in groups.values() for t in ts}
        await ensure_topics(kafka, all_topics | {BILLING_REQUESTS, ORDERS_STATUS})
        suffix = self.group_suffix = f".saga-e2e-{uuid.uuid4().hex[:10]}"
        names = await asyncio.gather(*(self.infra.create_database(name.replace("-", "_")[:5]) for name in services))
        self.databases = dict(zip(services, names, strict=True))
        await asyncio.gather(*(commit_end_offsets(kafka, f"{svc}.{consumer}{suffix}", topics)
                               for svc, groups in groups_of.items() for consumer, topics in groups.items()))
        self.status_events = await TopicReader(kafka, ORDERS_STATUS).start()
        self.billing_requests = await TopicReader(kafka, BILLING_REQUESTS).start()
        for name in services:
            base = FAST_ORCHESTRATOR if name == "orchestrator" else FAST
            self.services[name] = ServiceProcess(
                name, database_url=self.databases[name], kafka_bootstrap=kafka, log_dir=self.log_dir,
                env={"OMS_ADMIN_TOKEN": ADMIN_TOKEN, "KAFKA_GROUP_SUFFIX": suffix, **base, **env.get(name, {})},
            )
        for svc in self.services.values():
            svc.start(wait=False)
        await asyncio.gather(*(asyncio.to_thread(svc.wait_ready, READY_SECONDS) for svc in self.services.values()))
        self.http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200,
                                                                      max_keepalive_connections=200))
        resp = await self.http.post(f"{self.url('order-capture')}/v1/admin/api-keys", json={"channel": "web"},
                                    headers=ADMIN)
        assert resp.status_code == 201, resp.text
        self.channel_key = resp.json()["key"]

    async def stop(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(svc.stop) for svc in self.services.values()))
        for reader in (self.status_events, self.billing_requests):
            if reader is not None:
                await reader.stop()
        if self.http is not None:
            await self.http.aclose()
        if self.databases:
            conn = await asyncpg.connect(self.infra.pg_admin_dsn)
            try:
                for dsn in self.databases.values():
                    await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rpartition("/")[2]}" WITH (FORCE)')
            finally:
                await conn.close()

    def url(self, service: str) -> str:
        return self.services[service].url

    async def kill(self, service: str) -> None:
        """SIGKILL: no shutdown of any kind (open transactions are lost, the group member goes silent)."""
        await asyncio.to_thread(self.services[service].kill)

    async def restart(self, service: str, **env: str) -> None:
        """Starts a stopped or killed service again (same database, port and consumer group), with
        `env` added to its environment; returns once it is ready, i.e. owns its partitions again."""
        svc = self.services[service]
        await asyncio.to_thread(svc.stop)
        svc.start(wait=False, **env)
        await asyncio.to_thread(svc.wait_ready, READY_SECONDS)

    # --- HTTP ---------------------------------------------------------------------------------------

    async def call(self, method: str, service: str, path: str, *, expect: int | tuple[int, ...] = 200,
                   headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        assert self.http is not None
        resp = await self.http.request(method, f"{self.url(service)}{path}", headers=headers or ADMIN, **kwargs)
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert resp.status_code in expected, f"{method} {service}{path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None

    @property
    def channel(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.channel_key}"}

    # --- inventory (operator) -------------------------------------------------------------------------

    async def location(self, location_id: str, country: str = "PT") -> None:
        await self.call("PUT", "inventory", f"/v1/locations/{location_id}", expect=(200, 201),
                        json={"name": f"Warehouse {location_id}", "country": country})

    async def set_stock(self, location_id: str, sku: str, on_hand: int, reason: str = "cycle count") -> dict:
        return await self.call("PUT", "inventory", f"/v1/locations/{location_id}/stock/{sku}", expect=(200, 201),
                               json={"on_hand": on_hand, "reason": reason})

    async def sku_settings(self, sku: str, **settings: Any) -> dict:
        return await self.call("PUT", "inventory", f"/v1/skus/{sku}", expect=(200, 201), json=settings)

    async def stock(self, sku: str) -> dict:
        return await self.call("GET", "inventory", f"/v1/stock/{sku}")

    async def movements(self, sku: str) -> list[dict]:
        return (await self.call("GET", "inventory", f"/v1/stock/{sku}/movements", params={"limit": 200}))["items"]

    async def reservation(self, order_id: str) -> dict:
        return await self.call("GET", "inventory", f"/v1/reservations/{order_id}")

    async def wait_reservation(self, order_id: str, status: str, *, timeout: float = 60) -> dict:
        async def check() -> dict | None:
            r = await self.call("GET", "inventory", f"/v1/reservations/{order_id}", expect=(200, 404))
            return r if r.get("status") == status else None

        return await eventually(check, timeout=timeout, what=f"the reservation of {order_id} to be {status}")

    async def wait_stock(self, sku: str, *, timeout: float = 60, **figures: int) -> dict:
        """Waits until the SKU's totals match `figures` (e.g. on_hand=8, reserved=0)."""

        async def check() -> dict | None:
            s = await self.stock(sku)
            return s if all(s[k] == v for k, v in figures.items()) else None

        return await eventually(check, timeout=timeout, what=f"stock of {sku} to reach {figures}")

    # --- order capture (channel) ----------------------------------------------------------------------

    def order_body(self, lines: dict[str, int], *, unit_price: str = "10.00", payment_status: str = "authorized",
                   country: str = "PT", shipping_method: str = "standard") -> dict[str, Any]:
        price = Decimal(unit_price)
        amount = sum((price * q for q in lines.values()), Decimal("0")).quantize(Decimal("0.01"))
        body = new_order(
            lines=[{"sku": sku, "quantity": q, "unit_price": unit_price} for sku, q in lines.items()],
            shipping_method=shipping_method,
        )
        body["shipping_address"]["country"] = country
        body["payment"] = {"method": "card", "status": payment_status, "reference": f"pay_{uuid.uuid4().hex[:8]}",
                           "amount": str(amount)}
        return body

    async def place(self, lines: dict[str, int], *, headers: dict[str, str] | None = None, **options: Any) -> str:
        """Places an order through order-capture (with extra request `headers`); returns its order id."""
        body = self.order_body(lines, **options)
        headers = {**self.channel, "Idempotency-Key": f"idem-{uuid.uuid4().hex}", **(headers or {})}
        order = await self.call("POST", "order-capture", "/v1/orders", expect=201, json=body, headers=headers)
        assert order["status"] == "pending", order
        return order["order_id"]

    async def order(self, order_id: str) -> dict:
        return await self.call("GET", "order-capture", f"/v1/orders/{order_id}", headers=self.channel)

    async def wait_status(self, order_id: str, *statuses: str, timeout: float = 60) -> dict:
        """Waits until order-capture shows one of `statuses`; fails at once on another final status."""

        async def check() -> dict | None:
            order = await self.order(order_id)
            if order["status"] in statuses:
                return order
            assert order["status"] not in FINAL, (
                f"order {order_id} is {order['status']} ({order['status_reason']}), expected {statuses}")
            return None

        return await eventually(check, timeout=timeout, what=f"order {order_id} to be {'/'.join(statuses)}")

    async def wait_all_settled(self, order_ids: list[str], *, timeout: float = 90) -> dict[str, dict]:
        """Waits until every order is confirmed, rejected or cancelled; returns them by order id."""
        settled = ("confirmed", "rejected", "cancelled")
        done: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while True:
            todo = [o for o in order_ids if o not in done]
            for start in range(0, len(todo), 25):
                for order in await asyncio.gather(*(self.order(o) for o in todo[start:start + 25])):
                    if order["status"] in settled:
                        done[order["order_id"]] = order
            if len(done) == len(order_ids):
                return done
            if time.monotonic() > deadline:
                late = {o: (await self.order(o))["status"] for o in order_ids if o not in done}
                raise AssertionError(f"timed out after {timeout}s; {len(late)} orders not settled: {late}")
            await asyncio.sleep(0.5)

    async def cancel(self, order_id: str, reason: str = "customer_request") -> dict:
        return await self.call("POST", "order-capture", f"/v1/orders/{order_id}/cancel", expect=202,
                               json={"reason": reason}, headers=self.channel)

    # --- fulfilment (operator) ------------------------------------------------------------------------

    async def shipments(self, order_id: str) -> list[dict]:
        return (await self.call("GET", "fulfilment", "/v1/shipments", params={"order_id": order_id}))["items"]

    async def wait_shipments(self, order_id: str, count: int, *, status: str | None = None,
                             timeout: float = 60) -> list[dict]:
        """Waits until the order has at least `count` shipments (all in `status`, when given) and
        returns them all: the caller checks there are no more."""

        async def check() -> list[dict] | None:
            items = await self.shipments(order_id)
            if status is not None and any(s["status"] != status for s in items):
                return None
            return items if len(items) >= count else None

        return await eventually(check, timeout=timeout,
                                what=f"{count} shipment(s) of order {order_id}{' ' + status if status else ''}")

    async def advance(self, shipment_id: str, action: str) -> dict:
        return await self.call("POST", "fulfilment", f"/v1/shipments/{shipment_id}/{action}")

    async def dispatch(self, shipment_id: str) -> dict:
        """pick, pack and dispatch, each checked to move the shipment to its next status."""
        for action, status in (("pick", "picked"), ("pack", "packed"), ("dispatch", "dispatched")):
            shipment = await self.advance(shipment_id, action)
            assert shipment["status"] == status, shipment
        return shipment

    # --- orchestrator (operator) ----------------------------------------------------------------------

    async def saga(self, order_id: str) -> dict:
        return await self.call("GET", "orchestrator", f"/v1/sagas/{order_id}")

    async def wait_saga(self, order_id: str, state: str, step: str | None = None, *, timeout: float = 60) -> dict:
        """Waits until the order's saga is in `state` (and, when given, at `step`)."""

        async def check() -> dict | None:
            saga = await self.call("GET", "orchestrator", f"/v1/sagas/{order_id}", expect=(200, 404))
            ok = saga.get("state") == state and (step is None or saga.get("current_step") == step)
            return saga if ok else None

        return await eventually(check, timeout=timeout, what=f"the saga of {order_id} to be {state} {step or ''}")

    # --- parties outside the OMS ------------------------------------------------------------------------

    async def confirm_payment(self, order_id: str, amount: str, currency: str = "EUR",
                              reference: str = "pay_confirmed") -> None:
        """The billing system reports the payment on oms.billing.events."""
        oid = uuid.UUID(order_id)
        event = PaymentConfirmedV1(order_id=oid, amount=Decimal(amount), currency=currency, reference=reference)
        await produce(self.infra.kafka_bootstrap, BILLING_EVENTS, [envelope_bytes(event, producer="billing",
                                                                                  order_id=oid)])

    async def deliver(self, shipment: dict) -> None:
        """The carrier (through tracking) reports delivery on oms.tracking.events."""
        oid = uuid.UUID(shipment["order_id"])
        event = ShipmentDeliveredV1(order_id=oid, shipment_id=uuid.UUID(shipment["shipment_id"]),
                                    tracking_number=shipment["tracking_number"], delivered_at=datetime.now(UTC))
        await produce(self.infra.kafka_bootstrap, TRACKING_EVENTS, [envelope_bytes(event, producer="tracking",
                                                                                   order_id=oid)])

    # --- Kafka: what the OMS published ---------------------------------------------------------------------

    @staticmethod
    def headers_of(reader: TopicReader, order_id: str, event_type: str) -> list[dict[str, str]]:
        """The Kafka headers of the order's messages of one type seen so far."""
        out = []
        for r in reader.records:
            if r.key == order_id.encode() and orjson.loads(r.value)["event_type"] == event_type:
                out.append({k: v.decode() for k, v in r.headers or () if v is not None})
        return out

    @staticmethod
    def published(reader: TopicReader, order_id: str, event_type: str | None = None) -> list[dict]:
        """Envelopes for the order seen so far, one per event id (a relay may publish a row again after a
        crash, with the same event id), in the order they were read."""
        seen: dict[str, dict] = {}
        for r in reader.records:
            if r.key != order_id.encode():
                continue
            env = orjson.loads(r.value)
            if event_type is None or env["event_type"] == event_type:
                seen.setdefault(env["event_id"], env)
        return list(seen.values())

    async def wait_published(self, reader: TopicReader, order_id: str, event_type: str, count: int = 1,
                             timeout: float = 60) -> list[dict]:
        await reader.wait_for(lambda _: len(self.published(reader, order_id, event_type)) >= count, timeout=timeout)
        return self.published(reader, order_id, event_type)

    async def status_changes(self, order_id: str, until: str, timeout: float = 60) -> list[dict]:
        """The order's OrderStatusChanged payloads on oms.orders.status, read until one to `until`."""
        reader = self.status_events
        assert reader is not None

        def changes() -> list[dict]:
            return [e["payload"] for e in self.published(reader, order_id, "OrderStatusChanged")]

        await reader.wait_for(lambda _: any(c["new_status"] == until for c in changes()), timeout=timeout)
        return changes()
