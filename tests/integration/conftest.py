"""Fixtures of the platform's integration tests: a fresh database per test (dropped afterwards), a
migrated pool on it, unique Kafka topics."""

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from oms_platform import db
from oms_platform.kafka import ensure_topics
from oms_platform.outbox import OutboxRelay
from tests.support.infra import Infra
from tests.support.kafka import TopicReader


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


class Relays:
    """The relays a test starts on its database; every one still running is stopped at its end."""

    def __init__(self, dsn: str, bootstrap: str):
        self.dsn, self.bootstrap = dsn, bootstrap
        self.running: list[OutboxRelay] = []

    async def start(self, name: str, **kwargs: object) -> OutboxRelay:
        kwargs.setdefault("poll_interval", 0.2)
        relay = OutboxRelay(self.dsn, self.bootstrap, client_id=f"test-relay-{name}", **kwargs)  # type: ignore[arg-type]
        self.running.append(relay)
        await relay.start()
        return relay

    async def stop(self, relay: OutboxRelay) -> None:
        self.running.remove(relay)
        await relay.stop()


@pytest.fixture
async def relays(fresh_db: str, infra: Infra) -> AsyncIterator[Relays]:
    r = Relays(fresh_db, infra.kafka_bootstrap)
    yield r
    for relay in list(r.running):
        await r.stop(relay)


@pytest.fixture
async def reader(infra: Infra, topic: str) -> AsyncIterator[TopicReader]:
    r = await TopicReader(infra.kafka_bootstrap, topic).start(from_beginning=True)
    yield r
    await r.stop()
