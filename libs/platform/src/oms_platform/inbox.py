"""Idempotent inbox: a consumer claims event ids in the same transaction as their effect, so a
redelivered event finds its id taken and has no second effect.

Two ways to claim: before applying (`claim`: the handlers then run only for the new ids), or with the
batch's last statement (`claim_with_messages`, which also writes its outgoing messages): one round
trip less per batch, and when any id turns out to be taken already the caller rolls back and applies
the batch again claiming first (a redelivery is the rare case, so the common one pays nothing).

A dead-lettered event keeps its claim (a redelivery is still a duplicate) but is marked
(`mark_dead_lettered`); a replay of it for this consumer group (REPLAY_HEADER) is claimed by
`claim_replays`, which takes only marked ids and clears the mark: applied once, a second replay dropped."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from oms_platform import outbox

# Header of a dead letter re-driven to its source topic: the consumer group that failed it, the only
# one that applies it (the others applied the original already).
REPLAY_HEADER = "dlq.replay_for"

_CLAIM = """
INSERT INTO inbox (consumer, event_id)
SELECT $1, unnest($2::uuid[])
ON CONFLICT DO NOTHING
RETURNING event_id
"""


async def claim(conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID],
                replayed: Iterable[UUID] = ()) -> set[UUID]:
    """Returns the ids that were new to this consumer (now claimed, in the caller's transaction), and
    those of `replayed` (dead letters replayed for it) that claim_replays takes."""
    ids = sorted(set(event_ids))  # sorted: two claims of overlapping ids lock them in one order
    fresh = {r["event_id"] for r in await conn.fetch(_CLAIM, consumer, ids)} if ids else set()
    return fresh | await claim_replays(conn, consumer, replayed)


def replay_for(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """The consumer group a replayed dead letter is for (None: a message that is not a replay)."""
    for key, value in headers or ():
        if key == REPLAY_HEADER and value is not None:
            return value.decode("utf-8", "replace")
    return None


_CLAIM_REPLAYS = """
INSERT INTO inbox (consumer, event_id)
SELECT $1, unnest($2::uuid[])
ON CONFLICT (consumer, event_id) DO UPDATE SET dead_lettered = false, processed_at = now()
    WHERE inbox.dead_lettered
RETURNING event_id
"""


async def claim_replays(conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID]) -> set[UUID]:
    """Claims replayed dead letters: the ids this consumer dead-lettered (and those whose inbox row was
    pruned since) are returned and now count as applied; ids applied before, or replayed already, are
    not."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return set()
    return {r["event_id"] for r in await conn.fetch(_CLAIM_REPLAYS, consumer, ids)}


async def mark_dead_lettered(conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID]) -> None:
    """Marks claimed ids as dead-lettered (in the transaction that claims them and writes the dead
    letters), so that a replay of them is applied."""
    ids = list(dict.fromkeys(event_ids))
    if ids:
        await conn.execute("UPDATE inbox SET dead_lettered = true WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
                           consumer, ids)


async def claim_with_messages(
    conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID], messages: outbox.OutboxWrite,
) -> bool:
    """Claims the ids and writes the messages (`Outbox.sql(..., first_param=3)`) in one statement. False
    when any id was claimed before: the caller must roll back (its effects were applied for an event
    already applied) and claim first instead."""
    ids = sorted(set(event_ids))  # in the order claim takes them
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
    messages.took(row["notified"])
    return row["claimed"] == len(ids)


@dataclass(frozen=True)
class StatementPart:
    """Writes of a batch's state for the batch's one statement: WITH items, the parameters they take
    (numbered from 1), a boolean SQL expression that is true when they must be undone, and the CTE
    (`gate`, one row) that the claim and the messages join, so that its locks are taken before them."""

    ctes: str
    conflict: str
    params: Sequence[Any]
    gate: str


# Errors of an optimistic batch's statement that mean "do it again the careful way" (nothing of it stays):
# oms_batch_conflict's, and a deadlock or serialization failure between two such statements.
CONFLICT_SQLSTATES = frozenset({"OM001", "40P01", "40001"})


async def claim_optimistic(
    conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID], messages: outbox.OutboxWrite,
    part: StatementPart, first_param: int,
) -> None:
    """A whole batch in one statement, outside a transaction: the state's writes (`part`, parameters
    1..first_param-1), the messages (`Outbox.sql(..., first_param)`) and the claim of the ids. It raises
    (asyncpg.PostgresError, sqlstate in CONFLICT_SQLSTATES) and leaves nothing when any id was claimed
    before or `part.conflict` holds: the caller then applies the batch again in a transaction, claiming
    first. The messages must be written only if `part.gate` returns a row (Outbox.sql's only_if)."""
    ids = sorted(set(event_ids))
    p = first_param + 4
    row = await conn.fetchrow(f"""
WITH {part.ctes}, claimed AS (
    INSERT INTO inbox (consumer, event_id)
    SELECT ${p}, e FROM {part.gate}, unnest(${p + 1}::uuid[]) AS e
    ON CONFLICT DO NOTHING
    RETURNING 1
), {messages.cte}
SELECT oms_batch_conflict((SELECT count(*) FROM claimed) <> cardinality(${p + 1}::uuid[]) OR {part.conflict}),
       {messages.wake} AS notified
""", *part.params, *messages.params, consumer, ids)
    messages.took(row["notified"])


async def prune_inbox(conn: asyncpg.Connection, retention_seconds: int, *, chunk: int = 10_000) -> int:
    """Deletes inbox rows older than the retention, a chunk at a time (short locks). A redelivery comes
    within seconds of the original (offsets are committed every CONSUMER_COMMIT_INTERVAL_MS), so the
    default week is far beyond any redelivery; a dead letter replayed after its row was pruned is
    applied (inbox.claim_replays), as one replayed within the week is."""
    total = 0
    while True:
        status = await conn.execute(
            "DELETE FROM inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbox "
            "WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2))", retention_seconds, chunk,
        )
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < chunk:
            return total
