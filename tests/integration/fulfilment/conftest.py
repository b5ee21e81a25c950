"""One real fulfilment process (on its own fresh database, with a carrier rules file) for every test
of this package, and one reader of oms.fulfilment.events started before any command is sent."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from tests.integration.fulfilment.support import SERVICE_NAME
from tests.support.infra import Infra
from tests.support.kafka import TopicReader
from tests.support.services import ADMIN_TOKEN, ServiceProcess

# Differs from the built-in defaults on purpose: CH has a carrier only through this file.
RULES = [
    {"shipping_method": "express", "country": "*", "carrier": "oms-express", "service": "next_day"},
    {"shipping_method": "standard", "country": ["PT", "ES"], "carrier": "oms-post", "service": "standard"},
    {"shipping_method": "standard", "country": "CH", "carrier": "oms-post", "service": "international"},
]


@pytest.fixture(scope="package")
async def fulfilment_db(infra: Infra) -> AsyncIterator[str]:
    dsn = await infra.create_database("fulfilment")
    yield dsn
    conn = await asyncpg.connect(infra.pg_admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rpartition("/")[2]}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="package")
async def events(infra: Infra) -> AsyncIterator[TopicReader]:
    reader = await TopicReader(infra.kafka_bootstrap, "oms.fulfilment.events").start()
    yield reader
    await reader.stop()


@pytest.fixture(scope="package")
async def svc(infra: Infra, log_dir, fulfilment_db: str, events: TopicReader,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceProcess]:
    rules = tmp_path_factory.mktemp("fulfilment") / "carrier-rules.json"
    rules.write_bytes(orjson.dumps(RULES))
    process = ServiceProcess("fulfilment", database_url=fulfilment_db, kafka_bootstrap=infra.kafka_bootstrap,
                             log_dir=log_dir, env={
                                 "SERVICE_NAME": SERVICE_NAME,
                                 "OMS_ADMIN_TOKEN": ADMIN_TOKEN,
                                 "CARRIER_RULES_FILE": str(rules),
                                 "KAFKA_GROUP_SUFFIX": f".t{os.getpid()}.{uuid.uuid4().hex[:8]}",
                             })
    await asyncio.to_thread(process.start)
    yield process
    await asyncio.to_thread(process.stop)


@pytest.fixture(scope="package")
async def db(fulfilment_db: str, svc: ServiceProcess) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the service's database, to check what it stored (after the service migrated it)."""
    pool = await asyncpg.create_pool(fulfilment_db, min_size=1, max_size=2)
    yield pool
    await pool.close()
