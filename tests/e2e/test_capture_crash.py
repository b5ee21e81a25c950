"""Crash safety of order capture: an order acknowledged with 201 is announced after any crash, once
(or, when the crash falls between publishing and marking sent, again with the same event_id)."""

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import orjson
import pytest

from oms_platform.outbox import _RELAY_LOCK
from tests.support.capture import (
    ADMIN_TOKEN,
    Capture,
    envelopes_for,
    events_reader,
    has_event,
    records_for,
)
from tests.support.kafka import TopicReader
from tests.support.orders import new_order
from tests.support.polling import eventually
from tests.support.services import ServiceProcess


@pytest.fixture
async def reader(infra) -> AsyncIterator[TopicReader]:
    r = await events_reader(infra.kafka_bootstrap)
    yield r
    await r.stop()


@pytest.fixture
async def db(database) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database, min_size=1, max_size=2) as pool:
        yield pool


@asynccontextmanager
async def capture_on(svc: ServiceProcess, database: str, kafka: str, db: asyncpg.Pool) -> AsyncIterator[Capture]:
    """A client for one life of the process (a fresh connection pool each time it is restarted)."""
    async with httpx.AsyncClient(timeout=30) as http:
        yield Capture(svc, database, kafka, http, db)


async def start(start_service, database: str, **env: str) -> ServiceProcess:
    svc = start_service("order-capture", database, wait=False, OMS_ADMIN_TOKEN=ADMIN_TOKEN, **env)
    await asyncio.to_thread(svc.wait_ready)
    return svc


async def restart(svc: ServiceProcess, **env: str) -> None:
    """Starts the process again on the same database and port. A killed process stays a member of its
    consumer group until its session times out, and the new one would not be ready before that
    rebalance; the status consumer is not under test here, so the new life joins a group of its own."""
    svc.start(wait=False, KAFKA_GROUP_SUFFIX=f".restarted-{uuid.uuid4().hex[:10]}", **env)
    await asyncio.to_thread(svc.wait_ready)


@asynccontextmanager
async def relay_held_back(database: str) -> AsyncIterator[None]:
    """Holds the relay's leader lock, so the relay of a process started meanwhile waits as a standby;
    leaving the block lets it lead (and reach its crash point) at a moment the test chooses."""
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _RELAY_LOCK)
        yield
    finally:
        await conn.close()


async def unsent(db: asyncpg.Pool, order_id: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT id, value FROM outbox WHERE key = $1", order_id)


async def exited(svc: ServiceProcess) -> int:
    return await asyncio.to_thread(svc.wait_exit, 60)


async def test_crash_before_publish_then_restart_announces_once(infra, database, db, start_service, reader):
    async with relay_held_back(database):
        svc = await start(start_service, database, OMS_FAULT="relay.before_publish")
        async with capture_on(svc, database, infra.kafka_bootstrap, db) as cap:
            key = await cap.new_key("web")
            body = new_order()
            idem = f"crash-{uuid.uuid4().hex}"
            resp = await cap.place(key, body, idem)
            assert resp.status_code == 201, resp.text  # committed
            order = resp.json()
            oid = order["order_id"]
            assert svc.proc is not None and svc.proc.poll() is None
    # The relay now leads, reads the unsent row and dies before publishing it.
    assert await exited(svc) == -signal.SIGKILL
    queued = await unsent(db, oid)
    assert len(queued) == 1
    await reader.drain(1.0)
    assert records_for(reader, oid) == []

    await restart(svc, OMS_FAULT="")

    await reader.wait_for(has_event(oid, "OrderPlaced"), timeout=60)
    async with capture_on(svc, database, infra.kafka_bootstrap, db) as cap:
        # What was acknowledged survived: the order, the key, and the idempotent replay.
        got = await cap.http.get(f"{cap.url}/v1/orders/{oid}", headers=key.auth)
        assert got.status_code == 200 and got.json()["external_id"] == body["external_id"]
        replay = await cap.place(key, body, idem)
        assert replay.status_code == 201 and replay.json() == order
    await reader.drain(1.5)
    envelopes = envelopes_for(reader, oid)
    assert len(envelopes) == 1
    assert envelopes[0]["event_id"] == orjson.loads(queued[0]["value"])["event_id"]
    await eventually(lambda: db.fetchval("SELECT count(*) = 0 FROM outbox WHERE key = $1", oid),
                     what="the outbox row to be marked sent")


async def test_sigkill_with_unsent_outbox_then_restart_announces_once(infra, database, db, start_service, reader):
    svc = await start(start_service, database, OUTBOX_RELAY_ENABLED="false")
    async with capture_on(svc, database, infra.kafka_bootstrap, db) as cap:
        key = await cap.new_key("web")
        orders = [await cap.place_ok(key) for _ in range(3)]
    oids = [o["order_id"] for o in orders]

    svc.kill()  # SIGKILL

    assert svc.proc is not None and svc.proc.returncode == -signal.SIGKILL
    for oid in oids:
        assert len(await unsent(db, oid)) == 1
    await reader.drain(1.0)
    assert not [r for r in reader.records if r.key.decode() in oids]

    await restart(svc, OUTBOX_RELAY_ENABLED="true")

    await reader.wait_for(lambda rs: all(has_event(oid, "OrderPlaced")(rs) for oid in oids), timeout=60)
    await reader.drain(1.5)
    for oid in oids:
        assert [e["event_type"] for e in envelopes_for(reader, oid)] == ["OrderPlaced"]
    await eventually(lambda: db.fetchval("SELECT count(*) = 0 FROM outbox"),
                     what="every outbox row to be marked sent")


async def test_crash_after_publish_repeats_the_same_event(infra, database, db, start_service, reader):
    """Between publishing and marking sent, a crash makes the relay publish the rows again after the
    restart: at least once, with the same event_id, which consumers' inboxes drop."""
    async with relay_held_back(database):
        svc = await start(start_service, database, OMS_FAULT="relay.after_publish")
        async with capture_on(svc, database, infra.kafka_bootstrap, db) as cap:
            key = await cap.new_key("web")
            oid = (await cap.place_ok(key))["order_id"]
    assert await exited(svc) == -signal.SIGKILL
    await reader.wait_for(has_event(oid, "OrderPlaced"), timeout=60)
    assert len(await unsent(db, oid)) == 1

    await restart(svc, OMS_FAULT="")

    await reader.wait_for(lambda rs: len([r for r in rs if r.key == oid.encode()]) >= 2, timeout=60)
    await reader.drain(1.5)
    envelopes = envelopes_for(reader, oid)
    assert len(envelopes) == 2
    assert envelopes[0] == envelopes[1]
    await eventually(lambda: db.fetchval("SELECT count(*) = 0 FROM outbox WHERE key = $1", oid),
                     what="the outbox row to be marked sent")


async def test_sigkill_under_load_loses_no_acknowledged_order(infra, database, db, start_service, reader):
    """Orders in flight when the process is killed: every committed one is announced after the
    restart, every announcement is of a committed order, and repeats carry the same event_id."""
    svc = await start(start_service, database)
    async with capture_on(svc, database, infra.kafka_bootstrap, db) as cap:
        key = await cap.new_key("web")
        bodies = [new_order() for _ in range(40)]
        acknowledged: list[str] = []

        async def place(body: dict) -> None:
            try:
                resp = await cap.place(key, body)
            except httpx.TransportError:
                return
            if resp.status_code == 201:
                acknowledged.append(resp.json()["order_id"])

        async def some_acknowledged() -> bool:
            return len(acknowledged) >= 5

        tasks = [asyncio.create_task(place(b)) for b in bodies]
        await eventually(some_acknowledged, timeout=60, what="some orders to be acknowledged")
        svc.kill()
        await asyncio.gather(*tasks)

    await restart(svc)

    committed = {str(r["order_id"]) for r in await db.fetch("SELECT order_id FROM orders")}
    assert set(acknowledged) <= committed
    await reader.wait_for(lambda rs: committed <= {r.key.decode() for r in rs}, timeout=60)
    await reader.drain(1.5)
    ours = {b["external_id"] for b in bodies}
    announced = [e for e in reader.envelopes() if e["payload"].get("external_id") in ours]
    assert {e["order_id"] for e in announced} == committed
    for oid in committed:
        assert len({e["event_id"] for e in announced if e["order_id"] == oid}) == 1
