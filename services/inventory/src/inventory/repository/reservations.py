"""SQL of reservations and the backorder queue (see stock.py for the locking rules)."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from oms_platform.db import json_text as _json

RESERVATION_COLUMNS = """order_id, reservation_id, status, destination_country, lines, allocations, strategy,
    reason, short, failure_reason, released, release_reason, command_event_id, correlation_id, created_at,
    updated_at"""


@dataclass(frozen=True)
class ReserveState:
    """What ReserveStock decisions need, read (and the stock rows locked) in one round trip: for one
    command, or for every ReserveStock of a consumed batch."""

    existing: dict[str, dict[str, Any]]  # str(order_id) -> its stored reservation, for those that have one
    stock: list[dict[str, Any]]  # sku, location_id, on_hand, reserved, country
    settings: dict[str, dict[str, bool]]  # sku -> {allow_backorder, watched}
    queued: dict[str, int]  # sku -> units the backorder queue waits for


async def load_for_reserve(conn: asyncpg.Connection, order_ids: list[UUID], skus: list[str]) -> ReserveState:
    row = await conn.fetchrow(
        """WITH locked AS (
               SELECT s.sku, s.location_id, s.on_hand, s.reserved, l.country
               FROM stock s JOIN locations l ON l.location_id = s.location_id
               WHERE s.sku = ANY($2::text[])
               ORDER BY s.sku, s.location_id
               FOR UPDATE OF s
           )
           SELECT
               (SELECT coalesce(jsonb_object_agg(r.order_id, to_jsonb(r)), '{}'::jsonb)
                FROM reservations r WHERE r.order_id = ANY($1::uuid[])) AS existing,
               (SELECT coalesce(jsonb_agg(to_jsonb(locked)), '[]'::jsonb) FROM locked) AS stock,
               (SELECT coalesce(jsonb_object_agg(sku, jsonb_build_object(
                           'allow_backorder', allow_backorder,
                           'watched', low_stock_threshold > 0 OR low_stock_alerted)), '{}'::jsonb)
                FROM sku_settings WHERE sku = ANY($2::text[])) AS settings,
               (SELECT coalesce(jsonb_object_agg(sku, n), '{}'::jsonb) FROM (
                    SELECT sku, sum(quantity)::int AS n FROM backorder_lines
                    WHERE sku = ANY($2::text[]) GROUP BY sku) q) AS queued""",
        order_ids, skus,
    )
    return ReserveState(row["existing"], row["stock"], row["settings"], row["queued"])


@dataclass(frozen=True)
class CommitState:
    fresh: bool  # the shipment was not committed before (now claimed in this transaction)
    reservation: dict[str, Any] | None
    stock: list[dict[str, Any]]  # the shipment's SKUs at its location, locked


async def load_for_commit(
    conn: asyncpg.Connection, shipment_id: UUID, order_id: UUID, location_id: str, skus: list[str]
) -> CommitState:
    """Claims the shipment id, reads the order's reservation and locks the stock rows, in one round trip."""
    row = await conn.fetchrow(
        """WITH claim AS (
               INSERT INTO stock_operations (kind, operation_id, order_id) VALUES ('commit', $1, $2)
               ON CONFLICT DO NOTHING RETURNING 1
           ), locked AS (
               SELECT s.sku, s.location_id, s.on_hand, s.reserved
               FROM stock s WHERE s.sku = ANY($4::text[]) AND s.location_id = $3
               ORDER BY s.sku, s.location_id
               FOR UPDATE OF s
           )
           SELECT
               (SELECT count(*) FROM claim) > 0 AS fresh,
               (SELECT to_jsonb(r) FROM reservations r WHERE r.order_id = $2) AS reservation,
               (SELECT coalesce(jsonb_agg(to_jsonb(locked)), '[]'::jsonb) FROM locked) AS stock""",
        shipment_id, order_id, location_id, skus,
    )
    return CommitState(row["fresh"], row["reservation"], row["stock"])


@dataclass(frozen=True)
class NewReservation:
    """An order's outcome to store: its reservation row (the keys of insert_reservations), the units
    it reserves (sku, location, quantity) and, for a backorder, the lines it waits for (sku, quantity)."""

    row: dict[str, Any]
    reserve: list[tuple[str, str, int]]
    waiting_lines: list[tuple[str, int]]


async def insert_reservations(conn: asyncpg.Connection, items: list[NewReservation]) -> None:
    """Stores orders' outcomes with their effects in one statement: the reserved units added to stock,
    and for backorders their places in the queue (in the order given) and their demand."""
    if not items:
        return
    units: dict[tuple[str, str], int] = {}  # one source row per stock row: UPDATE ... FROM applies one
    for item in items:
        for sku, loc, q in item.reserve:
            units[(sku, loc)] = units.get((sku, loc), 0) + q
    rows = [item.row for item in items]
    waiting = [(sku, item.row["order_id"], q) for item in items for sku, q in item.waiting_lines]
    await conn.execute(
        """WITH c AS (
               SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) AS u(sku, loc, q)
           ), w AS (
               UPDATE stock s SET reserved = s.reserved + c.q, updated_at = now()
               FROM c WHERE s.sku = c.sku AND s.location_id = c.loc
           ), ins AS (
               INSERT INTO reservations (order_id, reservation_id, status, destination_country, lines, allocations,
                   strategy, reason, short, failure_reason, command_event_id, correlation_id, backorder_seq)
               SELECT o, rid, st, dc, li::jsonb, al::jsonb, sg, rs, sh::jsonb, fr, ce, co,
                      CASE WHEN st = 'backordered' THEN nextval('backorder_arrival') END
               FROM unnest($4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                           $11::text[], $12::text[], $13::text[], $14::uuid[], $15::uuid[])
                    WITH ORDINALITY AS v(o, rid, st, dc, li, al, sg, rs, sh, fr, ce, co, n)
               ORDER BY n
               RETURNING order_id
           )
           INSERT INTO backorder_lines (sku, order_id, quantity)
           SELECT b.sku, b.o, b.q FROM unnest($16::text[], $17::uuid[], $18::int[]) AS b(sku, o, q)
           JOIN ins ON ins.order_id = b.o""",
        [k[0] for k in units], [k[1] for k in units], list(units.values()),
        [r["order_id"] for r in rows], [r["reservation_id"] for r in rows], [r["status"] for r in rows],
        [r["destination_country"] for r in rows], [_json(r["lines"]) for r in rows],
        [_json(r.get("allocations", [])) for r in rows], [r.get("strategy") for r in rows],
        [r.get("reason") for r in rows], [_json(r.get("short", [])) for r in rows],
        [r.get("failure_reason") for r in rows], [r["command_event_id"] for r in rows],
        [r["correlation_id"] for r in rows],
        [x[0] for x in waiting], [x[1] for x in waiting], [x[2] for x in waiting],
    )


async def get_reservation(conn: asyncpg.Connection, order_id: UUID, *, for_update: bool = False) -> asyncpg.Record:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE order_id = $1{lock}", order_id)


async def set_waiting_cause(conn: asyncpg.Connection, order_id: UUID, event_id: UUID, correlation_id: UUID) -> None:
    """A repeated ReserveStock for a waiting order: the eventual StockReserved answers the latest one."""
    await conn.execute(
        "UPDATE reservations SET command_event_id = $2, correlation_id = $3, updated_at = now() WHERE order_id = $1",
        order_id, event_id, correlation_id,
    )


async def mark_released(conn: asyncpg.Connection, order_id: UUID, released: list[dict], reason: str) -> None:
    await conn.execute(
        """WITH gone AS (DELETE FROM backorder_lines WHERE order_id = $1)
           UPDATE reservations SET status = 'released', released = $2::jsonb, release_reason = $3,
               backorder_seq = NULL, updated_at = now()
           WHERE order_id = $1""",
        order_id, released, reason,
    )


async def insert_released(
    conn: asyncpg.Connection, order_id: UUID, reservation_id: UUID, reason: str, event_id: UUID, correlation_id: UUID
) -> None:
    """A release for an order never seen: remembered, so a late ReserveStock for it reserves nothing."""
    await conn.execute(
        """INSERT INTO reservations (order_id, reservation_id, status, destination_country, lines, released,
               release_reason, command_event_id, correlation_id)
           VALUES ($1, $2, 'released', '', '[]', '[]', $3, $4, $5)""",
        order_id, reservation_id, reason, event_id, correlation_id,
    )


async def set_allocations(conn: asyncpg.Connection, order_id: UUID, allocations: list[dict], status: str) -> None:
    await conn.execute(
        "UPDATE reservations SET allocations = $2::jsonb, status = $3, updated_at = now() WHERE order_id = $1",
        order_id, allocations, status,
    )


async def has_waiting(conn: asyncpg.Connection, skus: list[str]) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM backorder_lines WHERE sku = ANY($1::text[]))", skus
    ))


async def waiting_backorders(conn: asyncpg.Connection, skus: list[str], limit: int) -> list[asyncpg.Record]:
    """The oldest waiting backorders that wait for any of these SKUs, in arrival order, locked: each
    SKU has its own queue, so older backorders of other SKUs never hide the ones this stock can serve."""
    return await conn.fetch(
        """SELECT order_id, reservation_id, lines, destination_country, command_event_id, correlation_id
           FROM reservations
           WHERE status = 'backordered'
             AND order_id IN (SELECT order_id FROM backorder_lines WHERE sku = ANY($1::text[]))
           ORDER BY backorder_seq LIMIT $2 FOR UPDATE""",
        skus, limit,
    )


async def mark_served(
    conn: asyncpg.Connection, served: list[tuple[UUID, list[dict], str, str]], reserve: list[tuple[str, str, int]]
) -> None:
    """Served backorders become reservations (order_id, allocations, strategy, reason), their units
    (sku, location, quantity, one entry per pair) are reserved and they leave the queue."""
    await conn.execute(
        """WITH c AS (
               SELECT * FROM unnest($5::text[], $6::text[], $7::int[]) AS u(sku, loc, q)
           ), w AS (
               UPDATE stock s SET reserved = s.reserved + c.q, updated_at = now()
               FROM c WHERE s.sku = c.sku AND s.location_id = c.loc
           ), gone AS (
               DELETE FROM backorder_lines WHERE order_id = ANY($1::uuid[])
           )
           UPDATE reservations r SET status = 'reserved', allocations = v.a::jsonb, strategy = v.s, reason = v.r,
               short = '[]', backorder_seq = NULL, updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS v(o, a, s, r)
           WHERE r.order_id = v.o""",
        [s[0] for s in served], [_json(s[1]) for s in served], [s[2] for s in served], [s[3] for s in served],
        [x[0] for x in reserve], [x[1] for x in reserve], [x[2] for x in reserve],
    )
