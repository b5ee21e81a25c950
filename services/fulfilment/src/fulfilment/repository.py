"""SQL of fulfilment. Every function takes an open connection; the caller owns the transaction."""

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from oms_platform.db import json_text as _json
from oms_platform.sql import Where

COLUMNS = """shipment_id, order_id, location_id, lines, status, shipping_method, shipping_address, carrier,
    service, tracking_number, created_at, updated_at, dispatched_at, order_traceparent"""
# Namespace of the per-order advisory locks (two-key form: apart from the platform's one-key locks).
_ORDER_LOCK_CLASS = 8003


async def lock_orders(conn: asyncpg.Connection, order_ids: list[UUID]) -> None:
    """Serialises the commands of these orders across service instances until the transaction ends.
    Taken in one statement, in order id order, so two batches locking overlapping sets cannot deadlock."""
    await conn.execute(
        "SELECT count(pg_advisory_xact_lock($1, h)::text) FROM "
        "(SELECT DISTINCT hashtext(o) AS h FROM unnest($2::text[]) AS o ORDER BY h) AS ordered",
        _ORDER_LOCK_CLASS, [str(o) for o in order_ids],
    )


async def order_states(conn: asyncpg.Connection, order_ids: list[UUID]) -> dict[UUID, tuple[str | None, bool]]:
    """Per order: (reason of its cancellation or None, whether it has shipments), in one round trip."""
    rows = await conn.fetch(
        """SELECT o.id,
                  (SELECT reason FROM order_cancellations c WHERE c.order_id = o.id) AS cancelled,
                  EXISTS (SELECT 1 FROM shipments s WHERE s.order_id = o.id) AS has_shipments
           FROM unnest($1::uuid[]) AS o(id)""",
        list(set(order_ids)),
    )
    return {r["id"]: (r["cancelled"], r["has_shipments"]) for r in rows}


async def next_tracking_serials(conn: asyncpg.Connection | asyncpg.Pool, n: int) -> list[int]:
    return [r[0] for r in await conn.fetch("SELECT nextval('tracking_serial') FROM generate_series(1, $1)", n)]


async def record_cancellation(conn: asyncpg.Connection, order_id: UUID, reason: str) -> str:
    """Returns the reason of the first cancellation of the order (a repeat keeps the first)."""
    await conn.execute(
        "INSERT INTO order_cancellations (order_id, reason) VALUES ($1, $2) ON CONFLICT DO NOTHING", order_id, reason
    )
    return await conn.fetchval("SELECT reason FROM order_cancellations WHERE order_id = $1", order_id)


async def shipments_of_order(conn: asyncpg.Connection, order_id: UUID, *, for_update: bool = False) -> list:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM shipments WHERE order_id = $1 ORDER BY shipment_id{lock}", order_id
    )


async def insert_shipments(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    """Every row in one statement (the shipments of a whole batch of commands)."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO shipments (shipment_id, order_id, location_id, lines, shipping_method, shipping_address,
               carrier, service, tracking_number, label_pdf, created_at, updated_at, order_traceparent)
           SELECT s, o, loc, li::jsonb, m, a::jsonb, c, sv, t, pdf, at, at, tp
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::text[], $9::text[], $10::bytea[], $11::timestamptz[], $12::text[])
                AS u(s, o, loc, li, m, a, c, sv, t, pdf, at, tp)""",
        [r["shipment_id"] for r in rows], [r["order_id"] for r in rows], [r["location_id"] for r in rows],
        [_json(r["lines"]) for r in rows], [r["shipping_method"] for r in rows],
        [_json(r["shipping_address"]) for r in rows], [r["carrier"] for r in rows], [r["service"] for r in rows],
        [r["tracking_number"] for r in rows], [r["label_pdf"] for r in rows], [r["created_at"] for r in rows],
        [r.get("order_traceparent") for r in rows],
    )


async def cancel_open(conn: asyncpg.Connection, order_id: UUID, open_statuses: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        """UPDATE shipments SET status = 'cancelled', updated_at = now()
           WHERE order_id = $1 AND status = ANY($2::text[]) RETURNING shipment_id, carrier, tracking_number""",
        order_id, open_statuses,
    )


async def transition(conn: asyncpg.Connection, shipment_id: UUID, expected: str, new: str,
                     at: datetime) -> asyncpg.Record | None:
    """The guarded change: applies only when the status is still `expected` (a concurrent change of
    the same row waits for the first and then finds the status moved on). None when refused."""
    return await conn.fetchrow(
        f"""UPDATE shipments SET status = $3, updated_at = $4,
                   dispatched_at = CASE WHEN $3 = 'dispatched' THEN $4 ELSE dispatched_at END
            WHERE shipment_id = $1 AND status = $2 RETURNING {COLUMNS}""",
        shipment_id, expected, new, at,
    )


async def get(conn: asyncpg.Connection, shipment_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM shipments WHERE shipment_id = $1", shipment_id)


async def stored_label(conn: asyncpg.Connection, shipment_id: UUID) -> bytes | None:
    return await conn.fetchval("SELECT label_pdf FROM shipments WHERE shipment_id = $1", shipment_id)


async def list_shipments(
    conn: asyncpg.Connection,
    *,
    order_id: UUID | None,
    status: str | None,
    location_id: str | None,
    after: UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Oldest first (shipment ids are time-ordered UUIDv7): the order a warehouse works through them."""
    w = Where()
    w.add("order_id = {}", order_id)
    w.add("status = {}", status)
    w.add("location_id = {}", location_id)
    w.add("shipment_id > {}", after)
    sql = f"SELECT {COLUMNS} FROM shipments{w} ORDER BY shipment_id LIMIT {w.param(limit)}"
    return await conn.fetch(sql, *w.args)


async def mark_delivered(conn: asyncpg.Connection, shipment_id: UUID, at: datetime) -> bool:
    result = await conn.execute(
        "UPDATE shipments SET status = 'delivered', updated_at = $2 WHERE shipment_id = $1 AND status = 'dispatched'",
        shipment_id, at,
    )
    return result.endswith(" 1")
