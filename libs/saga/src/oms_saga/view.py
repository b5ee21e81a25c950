"""The read side of the engine's tables: one saga with its step history and the messages it did not
apply, as operators see it (the orchestrator's GET /v1/sagas/{order_id}, returns' saga view)."""

from typing import Any
from uuid import UUID

import asyncpg

SAGA_COLUMNS = """saga_id, saga_type, order_id, state, current_step, stuck, status, status_reason, deadline_at,
    attempts, created_at, updated_at"""


async def saga_view(conn: asyncpg.Connection, saga_type: str, key: UUID) -> dict[str, Any] | None:
    """The saga of `key` (an order id, or a return id for sagas keyed so), or None."""
    row = await conn.fetchrow(
        f"SELECT {SAGA_COLUMNS} FROM saga_instances WHERE saga_type = $1 AND order_id = $2", saga_type, key)
    if row is None:
        return None
    steps = await conn.fetch(
        """SELECT seq, step, kind, started_at, finished_at, attempts, outcome, detail
           FROM saga_steps WHERE saga_id = $1 ORDER BY seq""", row["saga_id"])
    notes = await conn.fetch(
        """SELECT at, event_type, event_id, causation_id, disposition, detail
           FROM saga_log WHERE saga_id = $1 ORDER BY id LIMIT 200""", row["saga_id"])
    return {**dict(row), "steps": [dict(s) for s in steps], "ignored_messages": [dict(n) for n in notes]}
