"""SQL of the returns service. Every function takes an open connection; the caller owns the
transaction. The saga's own tables are written by oms_saga.store."""

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from oms_platform.sql import Where

RETURN_COLUMNS = """return_id, order_id, channel, resolution, status, outcome, lines, received, currency,
    refund_amount::text AS refund_amount, replacement_order_id, carrier, tracking_number, history, created_at,
    updated_at"""

# --- copies of other services' facts --------------------------------------------------------------


async def upsert_orders(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    """OrderPlaced: the first copy wins (an order never changes what it was placed with)."""
    await conn.executemany(
        """INSERT INTO orders (order_id, channel, external_id, currency, customer, shipping_address, lines, created_at,
                              order_traceparent)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (order_id) DO NOTHING""",
        [(r["order_id"], r["channel"], r["external_id"], r["currency"], r["customer"], r["shipping_address"],
          r["lines"], r["created_at"], r.get("order_traceparent")) for r in rows],
    )


async def upsert_shipments(conn: asyncpg.Connection, rows: list[tuple[UUID, UUID, str, list]]) -> None:
    await conn.executemany(
        """INSERT INTO shipments (shipment_id, order_id, location_id, lines) VALUES ($1, $2, $3, $4)
           ON CONFLICT (shipment_id) DO NOTHING""", rows)


async def add_deliveries(conn: asyncpg.Connection, rows: list[tuple[UUID, UUID | None, datetime]]) -> None:
    """(order_id, shipment_id or None for the whole order, delivered_at); the first report wins."""
    await conn.executemany(
        "INSERT INTO deliveries (order_id, shipment_id, delivered_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        rows)


async def upsert_sku_settings(conn: asyncpg.Connection, rows: list[tuple[str, bool, datetime]]) -> None:
    """Only a newer change replaces the copy (a redelivered or reordered older one is dropped)."""
    await conn.executemany(
        """INSERT INTO sku_settings (sku, returnable, changed_at) VALUES ($1, $2, $3)
           ON CONFLICT (sku) DO UPDATE SET returnable = EXCLUDED.returnable, changed_at = EXCLUDED.changed_at
           WHERE sku_settings.changed_at <= EXCLUDED.changed_at""", rows)


async def lock_order(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    """The order's copy, locked until the transaction ends: requests for one order go one at a time."""
    return await conn.fetchrow(
        """SELECT order_id, channel, external_id, currency, customer, shipping_address, lines, order_traceparent
           FROM orders WHERE order_id = $1 FOR UPDATE""", order_id)


async def get_order(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT order_id, channel, currency, customer, shipping_address, lines FROM orders WHERE order_id = $1",
        order_id)


async def order_facts(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record:
    """The order's shipments, its deliveries, and its returns (status and units) in one round trip."""
    return await conn.fetchrow(
        """SELECT
             coalesce((SELECT jsonb_agg(jsonb_build_object('shipment_id', shipment_id, 'location_id', location_id,
                                                           'lines', lines))
                       FROM shipments WHERE order_id = $1), '[]') AS shipments,
             coalesce((SELECT jsonb_agg(jsonb_build_object('shipment_id', shipment_id, 'delivered_at', delivered_at))
                       FROM deliveries WHERE order_id = $1), '[]') AS deliveries,
             coalesce((SELECT jsonb_agg(jsonb_build_object('return_id', return_id, 'status', status, 'outcome', outcome,
                                                           'lines', lines, 'received', received))
                       FROM returns WHERE order_id = $1), '[]') AS returns""",
        order_id)


async def returnable(conn: asyncpg.Connection, skus: list[str]) -> dict[str, bool]:
    rows = await conn.fetch("SELECT sku, returnable FROM sku_settings WHERE sku = ANY($1::text[])", skus)
    return {r["sku"]: r["returnable"] for r in rows}


# --- returns --------------------------------------------------------------------------------------


async def insert_return(conn: asyncpg.Connection, r: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO returns (return_id, order_id, channel, resolution, status, lines, currency,
                                replacement_order_id, carrier, tracking_number, history, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)""",
        r["return_id"], r["order_id"], r["channel"], r["resolution"], r["status"], r["lines"], r["currency"],
        r["replacement_order_id"], r["carrier"], r["tracking_number"], r["history"], r["created_at"])


async def update_return(conn: asyncpg.Connection, return_id: UUID, data: dict[str, Any], at: datetime) -> None:
    """Writes what the saga reached (its data) into the return's row."""
    await conn.execute(
        """UPDATE returns SET status = $2, outcome = $3, received = $4, refund_amount = $5::numeric, history = $6,
                  updated_at = $7
           WHERE return_id = $1""",
        return_id, data["status"], data.get("outcome"), data.get("received") or None, data.get("refund_amount"),
        data["history"], at)


async def return_of_replacement(conn: asyncpg.Connection, order_id: UUID) -> UUID | None:
    return await conn.fetchval("SELECT return_id FROM returns WHERE replacement_order_id = $1", order_id)


async def expired_returns(conn: asyncpg.Connection, limit: int) -> list[tuple[UUID, UUID]]:
    """Returns whose saga ended on the receipt deadline while their row still awaits receipt (a
    cancellation by the API ends the saga and the row in one transaction): to close as expired."""
    rows = await conn.fetch(
        """SELECT r.return_id, r.order_id FROM returns r
           JOIN saga_instances s ON s.saga_type = 'return' AND s.order_id = r.return_id
           WHERE r.status = 'awaiting_receipt' AND s.state = 'cancelled'
           ORDER BY r.return_id LIMIT $1""", limit)
    return [(r["return_id"], r["order_id"]) for r in rows]


async def get_return(conn: asyncpg.Connection, return_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {RETURN_COLUMNS} FROM returns WHERE return_id = $1", return_id)


async def list_returns(conn: asyncpg.Connection, *, channel: str | None, order_id: UUID | None, status: str | None,
                       before: UUID | None, limit: int) -> list[asyncpg.Record]:
    """Newest first (return ids are UUIDv7: their order is their creation order)."""
    w = Where()
    w.add("channel = {}", channel)
    w.add("order_id = {}", order_id)
    w.add("status = {}", status)
    w.add("return_id < {}", before)
    sql = f"SELECT {RETURN_COLUMNS} FROM returns{w} ORDER BY return_id DESC LIMIT {w.param(limit)}"
    return await conn.fetch(sql, *w.args)


async def claim_idempotency_key(conn: asyncpg.Connection, channel: str, key: str, request_hash: bytes,
                                return_id: UUID, response: dict[str, Any]) -> bool:
    return await conn.fetchval(
        """INSERT INTO idempotency_keys (channel, key, request_hash, return_id, response) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING RETURNING true""", channel, key, request_hash, return_id, response) or False


async def get_idempotency_key(conn: asyncpg.Connection, channel: str, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT request_hash, return_id, response FROM idempotency_keys WHERE channel = $1 AND key = $2", channel, key)


async def next_label_serials(pool: asyncpg.Pool, n: int) -> list[int]:
    rows = await pool.fetch("SELECT nextval('label_serials') AS s FROM generate_series(1, $1)", n)
    return [r["s"] for r in rows]
