"""Idempotent inbox: a consumer claims event ids in the same transaction as their effect, so a
redelivered event finds its id taken and has no second effect.

Two ways to claim: before applying (`claim`: the handlers then run only for the new ids), or with the
batch's last statement (`claim_with_messages`, which also writes its outgoing messages): one round
trip less per batch, and when any id turns out to be taken already the caller rolls back and applies
the batch again claiming first (a redelivery is the rare case, so the common one pays nothing)."""

from collections.abc import Iterable
from uuid import UUID

import asyncpg

from oms_platform import outbox

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


async def claim_with_messages(
    conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID], messages: outbox.OutboxWrite,
) -> bool:
    """Claims the ids and writes the messages (`Outbox.sql(..., first_param=3)`) in one statement. False
    when any id was claimed before: the caller must roll back (its effects were applied for an event
    already applied) and claim first instead."""
    ids = list(dict.fromkeys(event_ids))
    if not ids and not messages.params[0]:  # a batch of events this consumer has no handler for
        return True
    row = await conn.fetchrow(f"""
WITH claimed AS (
    INSERT INTO inbox (consumer, event_id)
    SELECT $1, unnest($2::uuid[])
    ON CONFLICT DO NOTHING
    RETURNING 1
), {messages.cte}
SELECT (SELECT count(*) FROM claimed) AS claimed, {messages.wake} AS notified
""", consumer, ids, *messages.params)
    return row["claimed"] == len(ids)
