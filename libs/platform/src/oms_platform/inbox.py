"""Idempotent inbox: a consumer claims event ids in the same transaction as their effect, so a
redelivered event finds its id taken and has no second effect."""

from collections.abc import Iterable
from uuid import UUID

import asyncpg

_CLAIM = """
INSERT INTO inbox (consumer, event_id)
SELECT $1, unnest($2::uuid[])
ON CONFLICT DO NOTHING
RETURNING event_id
"""


async def claim(conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID]) -> set[UUID]:
    """Returns the ids that were new to this consumer (now claimed, in the caller's transaction)."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return set()
    return {r["event_id"] for r in await conn.fetch(_CLAIM, consumer, ids)}
