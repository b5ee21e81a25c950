"""Read views that are not a return's own row: its saga, as the orchestrator shows an order's."""

from typing import Any
from uuid import UUID

import asyncpg

from oms_platform.errors import NotFound
from oms_saga.view import saga_view as engine_view


async def saga_view(pool: asyncpg.Pool, saga_type: str, return_id: UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        found = await engine_view(conn, saga_type, return_id)
    if found is None:
        raise NotFound(f"no saga for return {return_id}")
    found["return_id"] = found["order_id"]  # the engine's key column holds the return id here
    return found
