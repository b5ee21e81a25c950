"""Fixtures of the platform's integration tests: a fresh database per test (dropped afterwards), a
migrated pool on it, unique Kafka topics."""

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from oms_platform import db
from oms_platform.kafka import ensure_topics
from tests.support.infra import Infra


@pytest.fixture
async def fresh_db(infra: Infra, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The DSN of an empty database for one test; the database is dropped when the test ends."""
    prefix = "".join(c if c.isalnum() else "_" for c in request.node.name[:20].lower())
    dsn = await infra.create_database(prefix)
    yield dsn
    name = dsn.rpartition("/")[2]
    conn = await asyncpg.connect(infra.pg_admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the fresh database with the platform's migrations (outbox, inbox) applied."""
    p = await db.create_pool(fresh_db, min_size=1, max_size=5)
    await db.migrate(p, None)
    yield p
    await p.close()


@pytest.fixture
async def topic(infra: Infra) -> str:
    """A unique topic (3 partitions) for one test."""
    name = f"test.{uuid.uuid4().hex}"
    await ensure_topics(infra.kafka_bootstrap, [name])
    return name
