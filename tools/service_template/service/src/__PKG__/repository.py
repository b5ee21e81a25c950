"""The SQL of __NAME__ (its own database): set-based statements, one round trip per batch."""

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from __PKG__.domain import OrderSeen


async def insert_orders(conn: asyncpg.Connection, orders: Sequence[OrderSeen]) -> None:
    """Every order of a batch in one statement; one seen before (a redelivery) is left as it is."""
    await conn.execute(
        """INSERT INTO orders_seen (order_id, channel, currency, total, placed_at)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::timestamptz[])
           ON CONFLICT (order_id) DO NOTHING""",
        [o.order_id for o in orders], [o.channel for o in orders], [o.currency for o in orders],
        [o.total for o in orders], [o.placed_at for o in orders])


async def get_order(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM orders_seen WHERE order_id = $1", order_id)


async def list_orders(conn: asyncpg.Connection, *, after: UUID | None, limit: int) -> list[asyncpg.Record]:
    """Oldest first (order ids are time-ordered UUIDv7), strictly after the cursor's id."""
    return await conn.fetch(
        "SELECT * FROM orders_seen WHERE $1::uuid IS NULL OR order_id > $1 ORDER BY order_id LIMIT $2", after, limit)
