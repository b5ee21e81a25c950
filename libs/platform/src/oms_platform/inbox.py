"""Idempotent inbox: a consumer claims event ids in the same transaction as their effect, so a
redelivered event finds its id taken and has no second effect.

Two ways to claim: before applying (`claim`: the handlers then run only for the new ids), or with the
batch's last statement (`claim_with_messages`, which also writes its outgoing messages): one round
trip less per batch, and when any id turns out to be taken already the caller rolls back and applies
the batch again claiming first (a redelivery is the rare case, so the common one pays nothing)."""

from collections.abc import Iterable, Sequence
from uuid import UUID

import asyncpg
import orjson

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


def _claim_with_messages_sql(notify: bool) -> str:
    wake = f"(SELECT {outbox.NOTIFY_SQL} FROM sent LIMIT 1)" if notify else "NULL"
    return f"""
WITH claimed AS (
    INSERT INTO inbox (consumer, event_id)
    SELECT $1, unnest($2::uuid[])
    ON CONFLICT DO NOTHING
    RETURNING 1
), sent AS (
    INSERT INTO outbox (topic, key, value, headers)
    SELECT t, k, v, h::jsonb FROM unnest($3::text[], $4::text[], $5::bytea[], $6::text[]) AS u(t, k, v, h)
    RETURNING 1
)
SELECT (SELECT count(*) FROM claimed) AS claimed, {wake} AS notified, (SELECT count(*) FROM sent) AS sent
"""


_CLAIM_WITH_MESSAGES = {True: _claim_with_messages_sql(True), False: _claim_with_messages_sql(False)}


async def claim_with_messages(
    conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID], messages: Sequence[outbox.OutgoingMessage],
    *, notify: bool = True,
) -> bool:
    """Claims the ids and writes the messages to the outbox (waking the relay at commit, unless
    notify=False: see outbox.enqueue) in one statement. False when any id was claimed before: the
    caller must roll back (its effects were applied for an event already applied) and claim first
    instead."""
    ids = list(dict.fromkeys(event_ids))
    row = await conn.fetchrow(
        _CLAIM_WITH_MESSAGES[notify], consumer, ids,
        [m.topic for m in messages], [m.key for m in messages], [m.value for m in messages],
        [orjson.dumps(m.headers).decode() for m in messages],
    )
    return row["claimed"] == len(ids)
