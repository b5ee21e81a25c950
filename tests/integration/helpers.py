"""Helpers of the integration tests."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from oms_contracts import Envelope
from oms_platform import db
from oms_platform.outbox import Outbox, OutgoingMessage


@asynccontextmanager
async def migrated_pool(dsn: str, migrations: Path | None, *, max_size: int = 4) -> AsyncIterator[asyncpg.Pool]:
    """A pool on `dsn` with the platform's migrations and the service's (a package's migrations folder)."""
    pool = await db.create_pool(dsn, min_size=1, max_size=max_size)
    try:
        await db.migrate(pool, migrations)
        yield pool
    finally:
        await pool.close()


def count_calls(monkeypatch: Any, module: Any, name: str) -> list[int]:
    """Replaces module.name (a writer taking (conn, rows)) by one that records len(rows) of each call."""
    calls: list[int] = []
    original = getattr(module, name)

    async def counted(conn: Any, rows: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(rows))
        return await original(conn, rows, *args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def count_transactions(monkeypatch: Any) -> list[int]:
    """Records every transaction (or savepoint) any asyncpg connection opens from now on."""
    began: list[int] = []
    transaction = asyncpg.connection.Connection.transaction

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        began.append(1)
        return transaction(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "transaction", counted)
    return began


async def enqueue(conn: asyncpg.Connection, messages: list[OutgoingMessage]) -> None:
    """Outbox rows as a service writes them (pg_notify at commit: no relay of this process leads)."""
    await Outbox("test").write(conn, messages)


def consumer_record(topic: str, envelope: Envelope, offset: int = 0) -> ConsumerRecord:
    """The record a consumer would get for the envelope, keyed by its order id."""
    return ConsumerRecord(topic, 0, offset, 0, 0, str(envelope.order_id).encode(),
                          orjson.dumps(envelope.model_dump(mode="json")), None, 0, 0, [])


async def outbox_by_cause(pool: asyncpg.Pool, topic: str) -> dict[UUID, dict[str, Any]]:
    """The envelopes written to the outbox for `topic`, by the event (causation) they answer."""
    rows = await pool.fetch("SELECT value FROM outbox WHERE topic = $1 ORDER BY id", topic)
    return {UUID(e["causation_id"]): e for e in (orjson.loads(r["value"]) for r in rows)}
