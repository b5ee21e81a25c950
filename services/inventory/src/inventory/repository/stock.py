"""SQL of inventory. Every function takes an open connection; the caller owns the transaction.

Locking: every transaction that changes stock, reservations or low-stock flags first takes one
transaction-level advisory lock (`lock_inventory`): the consumer once per batch, before its first
command (the use cases of handlers/reservations.py and movements.py rely on it), the operator
endpoints per request. Consumer transactions span a whole Kafka batch, so without it two processes
could lock SKU rows in opposite orders across messages and deadlock. Within
it, stock rows are still locked FOR UPDATE in (sku, location) order and the CHECK constraint on
`stock` refuses any oversell, so correctness never rests on the advisory lock alone."""

from uuid import UUID

import asyncpg

INVENTORY_LOCK = 0x0A15_1002


async def lock_inventory(conn: asyncpg.Connection) -> None:
    await conn.execute(f"SELECT pg_advisory_xact_lock({INVENTORY_LOCK})")


# --- locations and SKU settings ------------------------------------------------------------------


async def upsert_location(conn: asyncpg.Connection, location_id: str, name: str, country: str) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO locations (location_id, name, country) VALUES ($1, $2, $3)
           ON CONFLICT (location_id) DO UPDATE SET name = $2, country = $3, updated_at = now()
           RETURNING location_id, name, country, created_at, updated_at, (xmax = 0) AS created""",
        location_id, name, country,
    )


async def list_locations(conn: asyncpg.Connection, after: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT location_id, name, country, created_at, updated_at FROM locations
           WHERE $1::text IS NULL OR location_id > $1 ORDER BY location_id LIMIT $2""",
        after, limit,
    )


async def location_exists(conn: asyncpg.Connection, location_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM locations WHERE location_id = $1", location_id))


async def upsert_sku_settings(
    conn: asyncpg.Connection, sku: str, allow_backorder: bool, threshold: int, returnable: bool
) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO sku_settings (sku, allow_backorder, low_stock_threshold, returnable) VALUES ($1, $2, $3, $4)
           ON CONFLICT (sku) DO UPDATE SET allow_backorder = $2, low_stock_threshold = $3, returnable = $4,
               updated_at = now()
           RETURNING sku, allow_backorder, low_stock_threshold, returnable, (xmax = 0) AS created""",
        sku, allow_backorder, threshold, returnable,
    )


async def get_sku_settings(conn: asyncpg.Connection, sku: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT sku, allow_backorder, low_stock_threshold, returnable FROM sku_settings WHERE sku = $1", sku
    )


# --- stock ---------------------------------------------------------------------------------------


async def stock_of(conn: asyncpg.Connection, sku: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT location_id, on_hand, reserved FROM stock WHERE sku = $1 ORDER BY location_id", sku
    )


async def lock_stock(
    conn: asyncpg.Connection, skus: list[str], location_id: str | None = None
) -> list[asyncpg.Record]:
    """The stock rows of these SKUs (at one location, or everywhere) with their location's country,
    locked in (sku, location) order."""
    return await conn.fetch(
        """SELECT s.sku, s.location_id, s.on_hand, s.reserved, l.country
           FROM stock s JOIN locations l ON l.location_id = s.location_id
           WHERE s.sku = ANY($1::text[]) AND ($2::text IS NULL OR s.location_id = $2)
           ORDER BY s.sku, s.location_id
           FOR UPDATE OF s""",
        skus, location_id,
    )


async def set_on_hand(
    conn: asyncpg.Connection, sku: str, location_id: str, on_hand: int, delta: int, reason: str
) -> asyncpg.Record:
    """Sets on_hand (the row is created when new) and records the difference as a movement."""
    return await conn.fetchrow(
        """WITH up AS (
               INSERT INTO stock (sku, location_id, on_hand) VALUES ($1, $2, $3)
               ON CONFLICT (sku, location_id) DO UPDATE SET on_hand = $3, updated_at = now()
               RETURNING on_hand, reserved, (xmax = 0) AS created
           ), mv AS (
               INSERT INTO stock_movements (sku, location_id, delta, reason)
               SELECT $1, $2, $4, $5 WHERE $4 <> 0
           )
           SELECT * FROM up""",
        sku, location_id, on_hand, delta, reason,
    )


async def change_stock(
    conn: asyncpg.Connection,
    changes: list[tuple[str, str, int, int]],
    *,
    reason: str,
    order_id: UUID | None,
    upsert: bool = False,
) -> None:
    """Applies (sku, location_id, on_hand delta, reserved delta) changes, one per (sku, location), in one
    statement and records each non-zero on_hand delta as a movement. With `upsert`, missing rows are
    created (restocks)."""
    if not changes:
        return
    skus, locs, d_on, d_res = (list(col) for col in zip(*changes, strict=True))
    write = (
        """INSERT INTO stock AS s (sku, location_id, on_hand, reserved)
           SELECT sku, loc, dh, dr FROM c
           ON CONFLICT (sku, location_id) DO UPDATE SET on_hand = s.on_hand + excluded.on_hand,
               reserved = s.reserved + excluded.reserved, updated_at = now()"""
        if upsert else
        """UPDATE stock s SET on_hand = s.on_hand + c.dh, reserved = s.reserved + c.dr, updated_at = now()
           FROM c WHERE s.sku = c.sku AND s.location_id = c.loc"""
    )
    # Movements only for rows actually written, so the audit trail never shows a change that did not happen.
    await conn.execute(
        f"""WITH c AS (
                SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) AS u(sku, loc, dh, dr)
            ), w AS ({write} RETURNING s.sku, s.location_id)
            INSERT INTO stock_movements (sku, location_id, delta, reason, order_id)
            SELECT c.sku, c.loc, c.dh, $5, $6 FROM c JOIN w ON w.sku = c.sku AND w.location_id = c.loc
            WHERE c.dh <> 0""",
        skus, locs, d_on, d_res, reason, order_id,
    )


async def movements(
    conn: asyncpg.Connection, sku: str, location_id: str | None, before: int | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT movement_id, sku, location_id, delta, reason, order_id, at FROM stock_movements
           WHERE sku = $1 AND ($2::text IS NULL OR location_id = $2) AND ($3::bigint IS NULL OR movement_id < $3)
           ORDER BY movement_id DESC LIMIT $4""",
        sku, location_id, before, limit,
    )


async def sku_known(conn: asyncpg.Connection, sku: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM stock WHERE sku = $1) OR EXISTS (SELECT 1 FROM sku_settings WHERE sku = $1)",
        sku,
    ))


async def low_stock_crossings(conn: asyncpg.Connection, skus: list[str]) -> list[asyncpg.Record]:
    """Updates the under-threshold flag of these SKUs from their current totals and returns the SKUs
    that just fell under their threshold (each crossing is reported once)."""
    return await conn.fetch(
        """WITH t AS (
               SELECT k.sku, k.low_stock_threshold AS threshold,
                      coalesce(sum(s.on_hand - s.reserved), 0)::int AS available
               FROM sku_settings k LEFT JOIN stock s ON s.sku = k.sku
               WHERE k.sku = ANY($1::text[]) AND (k.low_stock_threshold > 0 OR k.low_stock_alerted)
               GROUP BY k.sku
           )
           UPDATE sku_settings k SET low_stock_alerted = (t.available < t.threshold)
           FROM t WHERE k.sku = t.sku AND k.low_stock_alerted <> (t.available < t.threshold)
           RETURNING k.sku, t.available, t.threshold, k.low_stock_alerted AS alerted""",
        skus,
    )


async def claim_operation(conn: asyncpg.Connection, kind: str, operation_id: UUID, order_id: UUID) -> bool:
    """True the first time an operation id is seen (claimed in this transaction)."""
    return bool(await conn.fetchval(
        """INSERT INTO stock_operations (kind, operation_id, order_id) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        kind, operation_id, order_id,
    ))
