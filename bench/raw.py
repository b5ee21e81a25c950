"""The yardstick for the order saga end to end: the same hops as the OMS's path to `confirmed`, written
as the smallest raw aiokafka + asyncpg pipeline (issue 16). The e2e benchmark runs it after the OMS, on
the same machine, Kafka and PostgreSQL, with the same load generator and the same measure.

    POST /v1/orders      (capture)  one INSERT, 201, then the order to TOPICS[0]
    TOPICS[0] -> start   (a stage)  one transaction: saga rows INSERTed; a command to TOPICS[1]
    TOPICS[1] -> reserve (a stage)  one transaction: stock UPDATEd, reservations INSERTed; a reply to TOPICS[2]
    TOPICS[2] -> confirm (a stage)  one transaction: saga rows UPDATEd; `confirmed` to the status topic

Each stage is one process, one consumer group, one transaction per polled batch and one produce per
message, offsets committed after the produce. What it leaves out is what the OMS adds on top: no
outbox (a crash between commit and produce loses the message), no inbox (a redelivery applies twice),
no validation, authentication, idempotency, retries, dead letters, tracing or metrics.

Run: HTTP_PORT=... DATABASE_URL=... KAFKA_BOOTSTRAP_SERVERS=... python -m bench.raw capture|start|reserve|confirm
"""

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from oms_platform.settings import ServiceSettings

PREFIX = "bench.raw."
TOPICS = (PREFIX + "placed", PREFIX + "reserve", PREFIX + "reserved")
ROLES = ("capture", "start", "reserve", "confirm")
SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_orders (id uuid PRIMARY KEY, body jsonb NOT NULL,
                                       created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS raw_sagas (order_id uuid PRIMARY KEY, state text NOT NULL,
                                      updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS raw_stock (sku text PRIMARY KEY, reserved bigint NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS raw_reservations (order_id uuid PRIMARY KEY, sku text NOT NULL, quantity int NOT NULL);
"""
# stage -> its transaction's statements, each with what it takes: the batch's order ids, skus, quantities
STATEMENTS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "start": [("INSERT INTO raw_sagas (order_id, state) SELECT unnest($1::uuid[]), 'reserving' "
               "ON CONFLICT DO NOTHING", ("ids",))],
    "reserve": [
        ("INSERT INTO raw_stock (sku, reserved) SELECT s, sum(q) FROM unnest($1::text[], $2::int[]) AS u(s, q) "
         "GROUP BY s ON CONFLICT (sku) DO UPDATE SET reserved = raw_stock.reserved + excluded.reserved",
         ("skus", "quantities")),
        ("INSERT INTO raw_reservations (order_id, sku, quantity) "
         "SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[]) ON CONFLICT DO NOTHING",
         ("ids", "skus", "quantities")),
    ],
    "confirm": [("UPDATE raw_sagas SET state = 'confirmed', updated_at = now() WHERE order_id = ANY($1::uuid[])",
                 ("ids",))],
}


def _producer(bootstrap: str) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)


def _status(order_id: str) -> bytes:
    return orjson.dumps({"order_id": order_id, "payload": {"new_status": "confirmed"}})


async def run_stage(role: str, pool: asyncpg.Pool, bootstrap: str, status_topic: str, ready: asyncio.Event) -> None:
    """One stage's loop: poll a batch, one transaction, one produce per message, commit the offsets."""
    from aiokafka import AIOKafkaConsumer

    source = TOPICS[ROLES.index(role) - 1]
    target = status_topic if role == "confirm" else TOPICS[ROLES.index(role)]
    headers = [("event_type", b"OrderStatusChanged")] if role == "confirm" else []
    group = f"{PREFIX}{role}{os.environ.get('KAFKA_GROUP_SUFFIX', '')}"
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="latest")
    producer = _producer(bootstrap)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)
        ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                continue
            orders = [orjson.loads(r.value) for r in records]
            ids = [uuid.UUID(o["order_id"]) for o in orders]
            async with pool.acquire() as conn, conn.transaction():
                columns = {"ids": ids, "skus": [o["sku"] for o in orders],
                           "quantities": [o["quantity"] for o in orders]}
                for sql, takes in STATEMENTS[role]:
                    await conn.execute(sql, *(columns[c] for c in takes))
            futures = [await producer.send(target, value=_status(o["order_id"]) if role == "confirm" else r.value,
                                           key=r.key, headers=headers) for o, r in zip(orders, records, strict=True)]
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("bench.raw").error("the stage failed", exc_info=task.exception())


def build_app(role: str, settings: ServiceSettings, status_topic: str) -> FastAPI:
    state: dict[str, Any] = {}
    ready = asyncio.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=settings.db_pool_max)
        await pool.execute(SCHEMA)
        state["pool"] = pool
        bootstrap = settings.kafka_bootstrap_servers
        if role == "capture":
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                have = set(await admin.list_topics())
                await admin.create_topics([NewTopic(t, settings.kafka_topic_partitions, 1)
                                           for t in TOPICS if t not in have])
            finally:
                await admin.close()
            state["producer"] = _producer(bootstrap)
            await state["producer"].start()
            ready.set()
            task = None
        else:
            task = state["task"] = asyncio.create_task(run_stage(role, pool, bootstrap, status_topic, ready))
            task.add_done_callback(_log_failure)
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if "producer" in state:
                await state["producer"].stop()
            await pool.close()

    app = FastAPI(title=f"bench: raw pipeline, {role}", lifespan=lifespan)

    @app.post("/v1/orders", status_code=201)
    async def create_order(request: Request) -> Response:
        body = orjson.loads(await request.body())
        order_id = uuid.uuid4()
        await state["pool"].execute("INSERT INTO raw_orders (id, body) VALUES ($1, $2::jsonb)", order_id,
                                    orjson.dumps(body).decode())
        line = body["lines"][0]
        message = orjson.dumps({"order_id": str(order_id), "sku": line["sku"], "quantity": line["quantity"]})
        await state["producer"].send(TOPICS[0], value=message, key=str(order_id).encode())  # queued, not awaited
        return Response(orjson.dumps({"order_id": str(order_id)}), 201, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        task = state.get("task")
        if task is not None and task.done():  # the stage's loop failed: say so (its error is in the log)
            return Response(b'{"status":"failed"}', 503, media_type="application/json")
        if not ready.is_set():
            return Response(b'{"status":"starting"}', 503, media_type="application/json")
        return Response(b'{"status":"ready"}', 200, media_type="application/json")

    return app


def main(argv: list[str]) -> None:
    import uvicorn

    role = argv[1] if len(argv) > 1 else ""
    if role not in ROLES:
        raise SystemExit(f"usage: python -m bench.raw {'|'.join(ROLES)}")
    settings = ServiceSettings(service_name=f"bench-raw-{role}")
    status_topic = settings.kafka_topic_prefix + "oms.orders.status"
    uvicorn.run(
        build_app(role, settings, status_topic), host=settings.http_host, port=settings.http_port, loop="uvloop",
        http="httptools", log_level=settings.log_level.lower(), access_log=False, lifespan="on",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main(sys.argv)
