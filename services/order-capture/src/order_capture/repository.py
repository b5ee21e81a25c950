"""SQL of order capture. Every function takes an open connection; the caller owns the transaction."""

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from oms_contracts.orders import OrderStatusChangedV1
from oms_platform.inbox import StatementPart
from oms_platform.outbox import Outbox, OutboxWrite, OutgoingMessage
from oms_platform.sql import Where

ORDER_COLUMNS = """order_id, status, status_reason, channel, external_id, customer, shipping_address,
    shipping_method, lines, total::text AS total, currency, payment, created_at, updated_at"""


async def insert_api_key(conn: asyncpg.Connection, key_id: UUID, channel: str, key_hash: bytes) -> datetime:
    return await conn.fetchval(
        "INSERT INTO api_keys (key_id, channel, key_hash) VALUES ($1, $2, $3) RETURNING created_at",
        key_id, channel, key_hash,
    )


async def channel_for_key(conn: asyncpg.Connection, key_hash: bytes) -> tuple[UUID, str] | None:
    row = await conn.fetchrow(
        "SELECT key_id, channel FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", key_hash
    )
    return (row["key_id"], row["channel"]) if row else None


async def revoke_api_key(conn: asyncpg.Connection, key_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1
           RETURNING key_hash, channel, revoked_at""", key_id
    )


async def list_api_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT key_id, channel, created_at, revoked_at FROM api_keys ORDER BY created_at DESC LIMIT 1000"
    )


# One statement, one round trip, atomic: claim the Idempotency-Key; only if it was new, insert the
# order; only if the order was inserted, write its OrderPlaced into the outbox (and wake the relay at
# commit, or leave that to the caller: see Outbox.sql). The key keeps no response: a replay's is rebuilt
# from the order (first_response).
# A concurrent request with the same key waits on the key's unique index and then claims nothing.
_PLACE_ORDER = """
WITH idem AS (
    INSERT INTO idempotency_keys (channel, key, request_hash, order_id)
    VALUES ($2, $13, $14, $1)
    ON CONFLICT DO NOTHING
    RETURNING order_id
), ins AS (
    INSERT INTO orders (order_id, channel, external_id, status, customer_id, customer, shipping_address,
                        shipping_method, currency, total, payment, lines, created_at, updated_at)
    SELECT $1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9::numeric, $10, $11, $12, $12 FROM idem
    RETURNING order_id
), {outbox}
SELECT EXISTS (SELECT 1 FROM ins) AS created, {wake} AS notified
"""


async def place_order(
    conn: asyncpg.Connection, o: dict[str, Any], idempotency_key: str, request_hash: bytes,
    out: Outbox, messages: list[OutgoingMessage],
) -> OutboxWrite | None:
    """The messages' write (call its committed()) when the order was created; None when the
    Idempotency-Key was already taken."""
    written = out.sql(messages, 15, only_if="ins")
    row = await conn.fetchrow(
        _PLACE_ORDER.format(outbox=written.cte, wake=written.wake),
        o["order_id"], o["channel"], o["external_id"], o["customer"]["id"], o["customer"],
        o["shipping_address"], o["shipping_method"], o["currency"], o["total"], o["payment"], o["lines"],
        o["created_at"], idempotency_key, request_hash, *written.params,
    )
    written.took(row["notified"])
    return written if row["created"] else None


async def get_idempotency_key(conn: asyncpg.Connection, channel: str, key: str) -> asyncpg.Record | None:
    """The key's request hash and order, with the response stored for keys of before migration 0005
    (None since) and the order's columns (ORDER_COLUMNS, to rebuild the first response)."""
    return await conn.fetchrow(
        f"""SELECT k.request_hash, k.response, o.*
            FROM idempotency_keys k, LATERAL (SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = k.order_id) o
            WHERE k.channel = $1 AND k.key = $2""",
        channel, key,
    )


async def order_id_by_external_id(conn: asyncpg.Connection, channel: str, external_id: str) -> UUID | None:
    return await conn.fetchval(
        "SELECT order_id FROM orders WHERE channel = $1 AND external_id = $2", channel, external_id
    )


async def get_order(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1", order_id)


async def lock_order(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    """The order's channel, status and pending cancellation, its row locked until the transaction ends."""
    return await conn.fetchrow(
        "SELECT channel, status, cancel_requested_at, cancel_reason FROM orders WHERE order_id = $1 FOR UPDATE",
        order_id,
    )


async def mark_cancel_requested(conn: asyncpg.Connection, order_id: UUID, reason: str) -> None:
    await conn.execute(
        "UPDATE orders SET cancel_requested_at = now(), cancel_reason = $2 WHERE order_id = $1", order_id, reason
    )


async def list_orders(
    conn: asyncpg.Connection,
    *,
    channel: str | None,
    status: str | None,
    customer_id: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    w = Where()
    w.add("channel = {}", channel)
    w.add("status = {}", status)
    w.add("customer_id = {}", customer_id)
    w.add("created_at >= {}", created_from)
    w.add("created_at < {}", created_to)
    if after is not None:
        w.add("(created_at, order_id) < ({}, {})", *after)
    sql = f"SELECT {ORDER_COLUMNS} FROM orders{w} ORDER BY created_at DESC, order_id DESC LIMIT {w.param(limit)}"
    return await conn.fetch(sql, *w.args)


# Status changes (at most one per order) applied unless a later one was applied already (guards against
# reordering and redelivery): by sequence when both have one, else by time (OrderStatusChangedV1.newer_than).
# Parameters from $p on; the update joins `gate` (a CTE of one row) when given.
# (`= ANY` lets the planner find the orders by primary key, however large the table.)
def _apply_statuses(p: int, gate: str = "") -> str:
    return f"""UPDATE orders o SET status = c.status, status_reason = c.reason, status_changed_at = c.at,
                  status_seq = c.seq, updated_at = now()
           FROM unnest(${p}::uuid[], ${p + 1}::text[], ${p + 2}::text[], ${p + 3}::timestamptz[], ${p + 4}::int[])
                AS c(order_id, status, reason, at, seq){gate}
           WHERE o.order_id = ANY(${p}::uuid[]) AND o.order_id = c.order_id
             AND CASE WHEN o.status_seq IS NOT NULL AND c.seq IS NOT NULL THEN o.status_seq < c.seq
                      ELSE o.status_changed_at IS NULL OR o.status_changed_at <= c.at END"""


_APPLY_STATUSES = _apply_statuses(1)


def _status_params(changes: list[OrderStatusChangedV1]) -> tuple[list, list, list, list, list]:
    return ([c.order_id for c in changes], [c.new_status for c in changes], [c.reason for c in changes],
            [c.changed_at for c in changes], [c.sequence for c in changes])


async def apply_statuses(conn: asyncpg.Connection, changes: list[OrderStatusChangedV1]) -> int:
    """Applies status changes (at most one per order) in one statement; returns how many orders changed."""
    result = await conn.execute(_APPLY_STATUSES, *_status_params(changes))
    return int(result.split()[-1])


def apply_statuses_part(changes: list[OrderStatusChangedV1], first_param: int) -> StatementPart:
    """apply_statuses as part of a consumed batch's one statement (inbox.claim_optimistic). Nothing is
    read first and the write is guarded, so it never conflicts."""
    ctes = f"status_gate AS (SELECT 1), status_applied AS ({_apply_statuses(first_param, ', status_gate')} RETURNING 1)"
    return StatementPart(ctes, "false", _status_params(changes), gate="status_gate")
