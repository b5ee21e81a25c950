"""SQL of tracking. Every function takes an open connection; the caller owns the transaction. The
consumer's writes are set-based: one statement per kind of change for a whole batch."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from tracking.domain import Entry

SHIPMENT_COLUMNS = """shipment_id, order_id, location_id, carrier, service, tracking_number, status,
    scan_status, scan_at, scan_location, scan_reason"""


async def record_placed(conn: asyncpg.Connection,
                        rows: Sequence[tuple[UUID, str, str, datetime, str | None]]) -> None:
    """(order_id, channel, external_id, placed_at, order_traceparent), one per order."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO orders (order_id, channel, external_id, placed_at, status, order_traceparent)
           SELECT o, c, x, p, 'pending', t
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) AS u(o, c, x, p, t)
           ON CONFLICT (order_id) DO UPDATE SET channel = EXCLUDED.channel, external_id = EXCLUDED.external_id,
               order_traceparent = EXCLUDED.order_traceparent,
               placed_at = EXCLUDED.placed_at, updated_at = now()""",
        *map(list, zip(*rows, strict=True)),
    )


async def record_statuses(conn: asyncpg.Connection,
                          rows: Sequence[tuple[UUID, str, str | None, datetime, int | None]]) -> None:
    """(order_id, status, reason, changed_at, sequence), one per order: a status older than the one
    shown (a late or redelivered change) does not replace it: by sequence when both have one, else by
    time (OrderStatusChangedV1.newer_than)."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO orders (order_id, status, status_reason, status_at, status_seq)
           SELECT o, s, r, t, q FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::int[])
               AS u(o, s, r, t, q)
           ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, status_reason = EXCLUDED.status_reason,
               status_at = EXCLUDED.status_at, status_seq = EXCLUDED.status_seq, updated_at = now()
           WHERE CASE WHEN orders.status_seq IS NOT NULL AND EXCLUDED.status_seq IS NOT NULL
                      THEN orders.status_seq < EXCLUDED.status_seq
                      ELSE orders.status_at IS NULL OR orders.status_at <= EXCLUDED.status_at END""",
        *map(list, zip(*rows, strict=True)),
    )


async def insert_shipments(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = ("shipment_id", "order_id", "location_id", "carrier", "service", "tracking_number")
    await conn.execute(
        """INSERT INTO shipments (shipment_id, order_id, location_id, carrier, service, tracking_number)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
           ON CONFLICT DO NOTHING""",
        *([r[k] for r in rows] for k in keys),
    )


async def lock_shipments(conn: asyncpg.Connection, shipment_ids: Sequence[UUID]) -> dict[UUID, str]:
    """Current status of each known shipment, rows locked in id order (no deadlock with a scan)."""
    rows = await conn.fetch(
        "SELECT shipment_id, status FROM shipments WHERE shipment_id = ANY($1::uuid[]) ORDER BY shipment_id FOR UPDATE",
        list(set(shipment_ids)),
    )
    return {r["shipment_id"]: r["status"] for r in rows}


async def set_shipment_statuses(conn: asyncpg.Connection, changes: dict[UUID, str]) -> None:
    if not changes:
        return
    await conn.execute(
        """UPDATE shipments s SET status = u.st, updated_at = now()
           FROM unnest($1::uuid[], $2::text[]) AS u(id, st) WHERE s.shipment_id = u.id""",
        list(changes), list(changes.values()),
    )


async def insert_entries(conn: asyncpg.Connection, entries: Sequence[Entry]) -> None:
    """Entries already there (same event id) are skipped."""
    if not entries:
        return
    await conn.execute(
        """INSERT INTO timeline (event_id, order_id, at, type, detail)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[])
           ON CONFLICT (event_id) DO NOTHING""",
        [e.event_id for e in entries], [e.order_id for e in entries], [e.at for e in entries],
        [e.type for e in entries], [e.detail for e in entries],
    )


# --- carrier scans ----------------------------------------------------------------------------------


async def shipment_by_tracking(conn: asyncpg.Connection, carrier: str, tracking_number: str) -> asyncpg.Record | None:
    """The shipment, locked (scans of one shipment are applied one at a time), with its order's traceparent."""
    return await conn.fetchrow(
        f"SELECT {SHIPMENT_COLUMNS}, (SELECT order_traceparent FROM orders o WHERE o.order_id = s.order_id) "
        "AS order_traceparent FROM shipments s WHERE carrier = $1 AND tracking_number = $2 FOR UPDATE OF s",
        carrier, tracking_number,
    )


async def insert_scan(conn: asyncpg.Connection, *, carrier: str, carrier_event_id: str, shipment_id: UUID,
                      order_id: UUID, status: str, occurred_at: datetime, location: str | None,
                      reason: str | None, event_id: UUID) -> bool:
    """False when the carrier sent this event id before (nothing written)."""
    row = await conn.fetchrow(
        """INSERT INTO carrier_scans (carrier, carrier_event_id, shipment_id, order_id, status, occurred_at,
               location, reason, event_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (carrier, carrier_event_id) DO NOTHING RETURNING 1""",
        carrier, carrier_event_id, shipment_id, order_id, status, occurred_at, location, reason, event_id,
    )
    return row is not None


async def apply_scan(conn: asyncpg.Connection, shipment_id: UUID, status: str, at: datetime,
                     location: str | None, reason: str | None) -> None:
    await conn.execute(
        """UPDATE shipments SET status = $2, scan_status = $2, scan_at = $3, scan_location = $4, scan_reason = $5,
               updated_at = now() WHERE shipment_id = $1""",
        shipment_id, status, at, location, reason,
    )


# --- reads ------------------------------------------------------------------------------------------


async def order(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT order_id, channel, external_id, placed_at, status, status_reason FROM orders WHERE order_id = $1",
        order_id,
    )


async def shipments_of(conn: asyncpg.Connection, order_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE order_id = $1 ORDER BY shipment_id", order_id)


async def timeline(conn: asyncpg.Connection, order_id: UUID) -> list[asyncpg.Record]:
    """Oldest first (by when it happened; entries of the same instant in the order they were stored)."""
    return await conn.fetch(
        "SELECT id, at, type, detail FROM timeline WHERE order_id = $1 ORDER BY at, id", order_id)
