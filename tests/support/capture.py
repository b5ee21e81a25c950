"""Helpers for the order-capture end-to-end tests: one real service process on its own database,
channel keys, snapshots of the tables a request may write, and the oms.orders.events topic."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import ConsumerRecord

from oms_contracts.topics import ORDERS_EVENTS
from tests.support.infra import Infra
from tests.support.kafka import TopicReader
from tests.support.orders import new_order
from tests.support.services import ServiceProcess

ADMIN_TOKEN = "capture-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass(frozen=True)
class ChannelKey:
    key_id: str
    channel: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        """Auth headers plus an Idempotency-Key (a fresh one unless given)."""
        return {**self.auth, "Idempotency-Key": idempotency_key or f"idem-{uuid.uuid4().hex}"}


@dataclass
class Capture:
    """A running order-capture process, an HTTP client on it and a pool on its database."""

    svc: ServiceProcess
    dsn: str
    kafka: str
    http: httpx.AsyncClient
    db: asyncpg.Pool

    @property
    def url(self) -> str:
        return self.svc.url

    async def new_key(self, channel: str = "web") -> ChannelKey:
        resp = await self.http.post(f"{self.url}/v1/admin/api-keys", json={"channel": channel}, headers=ADMIN)
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert body["channel"] == channel
        return ChannelKey(body["key_id"], channel, body["key"])

    async def place(self, key: ChannelKey, body: dict[str, Any] | None = None,
                    idempotency_key: str | None = None) -> httpx.Response:
        body = body if body is not None else new_order(channel=key.channel)
        return await self.http.post(f"{self.url}/v1/orders", json=body, headers=key.headers(idempotency_key))

    async def place_ok(self, key: ChannelKey, body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = await self.place(key, body)
        assert resp.status_code == 201, resp.text
        return resp.json()

    async def snapshot(self) -> dict[str, Any]:
        """What a request could have written: the rows of orders, idempotency_keys and outbox."""
        async with self.db.acquire() as conn:
            return {
                "orders": await conn.fetchval("SELECT count(*) FROM orders"),
                "idempotency_keys": await conn.fetchval("SELECT count(*) FROM idempotency_keys"),
                # Published rows leave the outbox: how many were ever written is where its id sequence is.
                "outbox_ids": await conn.fetchval("SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                                                  "FROM outbox_id_seq"),
            }


@asynccontextmanager
async def running_capture(infra: Infra, log_dir: Path, label: str, **env: str) -> AsyncIterator[Capture]:
    """An order-capture process on a fresh database, with its own consumer group; stopped at exit."""
    dsn = await infra.create_database(f"cap_{label}")
    svc = service_process(infra, log_dir, dsn, label, **env)
    await asyncio.to_thread(svc.start)
    try:
        async with httpx.AsyncClient(timeout=30) as http, asyncpg.create_pool(dsn, min_size=1, max_size=4) as db:
            yield Capture(svc, dsn, infra.kafka_bootstrap, http, db)
    finally:
        svc.stop()


def service_process(infra: Infra, log_dir: Path, dsn: str, label: str, **env: str) -> ServiceProcess:
    return ServiceProcess(
        "order-capture", database_url=dsn, kafka_bootstrap=infra.kafka_bootstrap, log_dir=log_dir,
        env={"OMS_ADMIN_TOKEN": ADMIN_TOKEN, "KAFKA_GROUP_SUFFIX": f".cap-{label}.{uuid.uuid4().hex[:10]}", **env},
    )


async def events_reader(kafka: str, topic: str = ORDERS_EVENTS) -> TopicReader:
    """A reader positioned at the current end of the topic: it sees only what comes next."""
    return await TopicReader(kafka, topic).start()


def records_for(reader: TopicReader, order_id: str) -> list[ConsumerRecord]:
    return [r for r in reader.records if r.key == order_id.encode()]


def envelopes_for(reader: TopicReader, order_id: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records_for(reader, order_id)]


def has_event(order_id: str, event_type: str) -> Callable[[list[ConsumerRecord]], bool]:
    def check(records: list[ConsumerRecord]) -> bool:
        return any(r.key == order_id.encode() and orjson.loads(r.value)["event_type"] == event_type
                   for r in records)

    return check


def external_ids_seen(reader: TopicReader) -> set[str]:
    return {env["payload"].get("external_id") for env in reader.envelopes() if env.get("event_type") == "OrderPlaced"}


async def assert_refused_left_no_trace(cap: Capture, key: ChannelKey, reader: TopicReader,
                                       before: dict[str, Any], external_id: str | None) -> None:
    """Nothing stored, nothing queued, nothing published for a refused request.

    The tables must be as they were. Then a valid order is placed and awaited on the topic: the relay
    publishes in outbox order, so anything the refused request had queued would have been published
    before it; no OrderPlaced with the refused request's external_id may be there."""
    assert await cap.snapshot() == before
    sentinel = await cap.place_ok(key)
    await reader.wait_for(has_event(sentinel["order_id"], "OrderPlaced"), timeout=30)
    if external_id is not None:
        assert external_id not in external_ids_seen(reader)




def error_fields(resp: httpx.Response) -> list[tuple[str, str]]:
    """The (field, rule) pairs of an error answer, after checking it has the contract's shape."""
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and err["code"], body
    assert isinstance(err["message"], str) and err["message"], body
    for f in err["fields"]:
        assert isinstance(f["field"], str) and isinstance(f["rule"], str), body
    return [(f["field"], f["rule"]) for f in err["fields"]]
