"""SQL of the orchestrator's read side (the sagas API). The engine's writes are in oms_saga.store."""

from uuid import UUID

import asyncpg

from oms_platform.sql import Where

SAGA_COLUMNS = """saga_id, saga_type, order_id, state, current_step, stuck, status, status_reason, deadline_at,
    attempts, created_at, updated_at"""


async def saga_by_order(conn: asyncpg.Connection, saga_type: str, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {SAGA_COLUMNS} FROM saga_instances WHERE saga_type = $1 AND order_id = $2", saga_type, order_id
    )


async def steps(conn: asyncpg.Connection, saga_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT seq, step, kind, started_at, finished_at, attempts, outcome, detail
           FROM saga_steps WHERE saga_id = $1 ORDER BY seq""",
        saga_id,
    )


async def notes(conn: asyncpg.Connection, saga_id: UUID, limit: int = 200) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT at, event_type, event_id, causation_id, disposition, detail
           FROM saga_log WHERE saga_id = $1 ORDER BY id LIMIT $2""",
        saga_id, limit,
    )


async def list_sagas(
    conn: asyncpg.Connection, *, saga_type: str | None, state: str | None, stuck: bool | None,
    before: UUID | None, limit: int,
) -> list[asyncpg.Record]:
    """Newest first (saga ids are UUIDv7, so their order is their creation order)."""
    w = Where()
    w.add("saga_type = {}", saga_type)
    w.add("state = {}", state)
    if stuck is not None:
        w.add_sql("stuck" if stuck else "NOT stuck")
    w.add("saga_id < {}", before)
    sql = f"SELECT {SAGA_COLUMNS} FROM saga_instances{w} ORDER BY saga_id DESC LIMIT {w.param(limit)}"
    return await conn.fetch(sql, *w.args)
