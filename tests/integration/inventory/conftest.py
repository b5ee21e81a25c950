"""One real inventory process (on its own fresh database) for the tests of this package, one reader
of oms.inventory.events started before any command is sent, and operator HTTP helpers."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from tests.integration.inventory.support import EVENTS, Replies, service_name, start_inventory
from tests.support.infra import Infra
from tests.support.kafka import TopicReader
from tests.support.services import ServiceProcess


async def drop_database(infra: Infra, dsn: str) -> None:
    conn = await asyncpg.connect(infra.pg_admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rpartition("/")[2]}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="package")
async def inventory_db(infra: Infra) -> AsyncIterator[str]:
    dsn = await infra.create_database("inventory")
    yield dsn
    await drop_database(infra, dsn)


@pytest.fixture(scope="package")
async def events(infra: Infra) -> AsyncIterator[TopicReader]:
    reader = await TopicReader(infra.kafka_bootstrap, EVENTS).start()
    yield reader
    await reader.stop()


@pytest.fixture(scope="package")
def inventory_name() -> str:
    return service_name()


@pytest.fixture(scope="package")
async def svc(infra: Infra, log_dir, inventory_db: str, inventory_name: str,
              events: TopicReader) -> AsyncIterator[ServiceProcess]:
    [process] = await start_inventory(infra.kafka_bootstrap, inventory_db, log_dir, name=inventory_name,
                                      group_suffix=f".t{os.getpid()}.{uuid.uuid4().hex[:8]}")
    yield process
    await asyncio.to_thread(process.stop)


@pytest.fixture(scope="package")
async def replies(svc: ServiceProcess, events: TopicReader, inventory_name: str) -> Replies:
    return Replies(events, inventory_name)


@pytest.fixture(scope="package")
async def db(inventory_db: str, svc: ServiceProcess) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the service's database, to check what it stored (after the service migrated it)."""
    pool = await asyncpg.create_pool(inventory_db, min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
def put(http, svc, admin_headers) -> Callable[..., Awaitable]:
    """put(path, body) as an operator; asserts a 2xx and returns the JSON body."""

    async def call(path: str, body: dict, *, base: str | None = None) -> dict:
        resp = await http.put(f"{base or svc.url}{path}", json=body, headers=admin_headers)
        assert resp.status_code in (200, 201), resp.text
        return resp.json()

    return call


@pytest.fixture
def get(http, svc, admin_headers) -> Callable[..., Awaitable]:
    async def call(path: str, *, base: str | None = None, **params) -> dict:
        resp = await http.get(f"{base or svc.url}{path}", params=params, headers=admin_headers)
        assert resp.status_code == 200, resp.text
        return resp.json()

    return call
