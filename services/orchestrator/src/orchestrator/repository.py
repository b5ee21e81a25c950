"""SQL of the orchestrator's read side (the sagas API). The engine's writes are in oms_saga.store."""

from uuid import UUID

import asyncpg

from oms_platform.sql import Where
from oms_saga.view import SAGA_COLUMNS


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


async def set_status(conn: asyncpg.Connection, saga_id: UUID, status: str, sequence: int) -> None:
    """The order's status after its saga ended (its returns), and the number of its announcement
    (oms_saga.state.Control.status_seq): kept on the saga's row. Its version goes up like every write of
    it, so the saga consumer's optimistic write of a saga read before this one is undone (SagaBatch)."""
    await conn.execute(
        """UPDATE saga_instances SET status = $2, status_reason = NULL, updated_at = now(), version = version + 1,
               control = jsonb_set(control, '{status_seq}', to_jsonb($3::int))
           WHERE saga_id = $1""", saga_id, status, sequence)
