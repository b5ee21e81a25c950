"""The yardstick for order capture: a bare FastAPI + asyncpg endpoint. POST /orders reads the JSON
body and inserts it as one row (id, body, created_at); 201 {"id": ...}. Nothing else: no
validation, authentication, idempotency, outbox, middleware or metrics.

Served like every service (oms_platform.runtime.serve): uvicorn, uvloop, httptools, one process,
access log off; its pool sized like a service's (DB_POOL_MIN / DB_POOL_MAX, same defaults) and the
same JSON codec (orjson). Run: HTTP_PORT=... DATABASE_URL=... python -m bench.bare
"""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from oms_platform.settings import ServiceSettings

SCHEMA = """CREATE TABLE IF NOT EXISTS bare_orders (
    id         uuid        PRIMARY KEY,
    body       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)"""
INSERT = "INSERT INTO bare_orders (id, body) VALUES ($1, $2)"


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                              schema="pg_catalog")


def build_app(settings: ServiceSettings) -> FastAPI:
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(settings.database_url, min_size=settings.db_pool_min,
                                         max_size=settings.db_pool_max, init=_init_connection)
        await pool.execute(SCHEMA)
        state["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="bench: bare FastAPI + asyncpg", lifespan=lifespan)

    @app.post("/orders", status_code=201)
    async def create_order(request: Request) -> Response:
        body = orjson.loads(await request.body())
        row_id = uuid.uuid4()
        await state["pool"].execute(INSERT, row_id, body)
        return Response(orjson.dumps({"id": str(row_id)}), 201, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        await state["pool"].fetchval("SELECT 1")
        return Response(b'{"status":"ready"}', 200, media_type="application/json")

    return app


def main() -> None:
    import uvicorn

    settings = ServiceSettings(service_name="bench-bare")
    uvicorn.run(
        build_app(settings), host=settings.http_host, port=settings.http_port, loop="uvloop", http="httptools",
        log_level=settings.log_level.lower(), access_log=False, lifespan="on", timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
