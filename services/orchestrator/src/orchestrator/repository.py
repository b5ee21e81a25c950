"""SQL of the orchestrator's read side (the sagas API). The engine's writes are in oms_saga.store."""

from typing import Any
from uuid import UUID

import asyncpg

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
    where, args = [], []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if saga_type is not None:
        where.append(f"saga_type = {arg(saga_type)}")
    if state is not None:
        where.append(f"state = {arg(state)}")
    if stuck is not None:
        where.append("stuck" if stuck else "NOT stuck")
    if before is not None:
        where.append(f"saga_id < {arg(before)}")
    sql = f"SELECT {SAGA_COLUMNS} FROM saga_instances"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY saga_id DESC LIMIT {arg(limit)}"
    return await conn.fetch(sql, *args)
