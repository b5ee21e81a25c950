"""Operator use cases behind the HTTP API: locations, SKU settings, setting stock, and the read views."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from inventory import repository as repo
from inventory.handlers.effects import EVENTS, alert_low_stock, serve_backorders, sku_key
from oms_contracts.inventory import SkuSettingsChangedV1
from oms_platform.errors import Conflict, NotFound, Violation
from oms_platform.outbox import Outbox
from oms_platform.pagination import Keyset, Page, of_type

SKU_DEFAULTS = {"allow_backorder": False, "low_stock_threshold": 0, "returnable": True}


def _iso(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else v


def location_view(r: asyncpg.Record) -> dict[str, Any]:
    return {"location_id": r["location_id"], "name": r["name"], "country": r["country"],
            "created_at": _iso(r["created_at"]), "updated_at": _iso(r["updated_at"])}


def stock_figures(on_hand: int, reserved: int) -> dict[str, int]:
    return {"on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved}


# Locations by id; stock movements newest first.
LOCATIONS = Keyset(key=lambda r: {"l": r["location_id"]}, parse=lambda v: of_type(v["l"], str))
MOVEMENTS = Keyset(key=lambda r: {"m": r["movement_id"]}, parse=lambda v: of_type(v["m"], int))


async def list_locations(pool: asyncpg.Pool, *, cursor: str | None, limit: int) -> Page:
    after = LOCATIONS.after(cursor)
    async with pool.acquire() as conn:
        rows = await repo.list_locations(conn, after, limit + 1)
    return LOCATIONS.page(rows, limit, location_view)


async def list_movements(pool: asyncpg.Pool, sku: str, location_id: str | None, *, cursor: str | None,
                         limit: int) -> Page:
    before = MOVEMENTS.after(cursor)
    async with pool.acquire() as conn:
        rows = await repo.movements(conn, sku, location_id, before, limit + 1)
    return MOVEMENTS.page(rows, limit, movement_view)


async def put_location(pool: asyncpg.Pool, location_id: str, name: str, country: str) -> tuple[dict, bool]:
    async with pool.acquire() as conn:
        r = await repo.upsert_location(conn, location_id, name, country)
    return location_view(r), r["created"]


async def put_sku(pool: asyncpg.Pool, sku: str, allow_backorder: bool, threshold: int, returnable: bool, *,
                  outbox: Outbox) -> tuple[dict, bool]:
    """Stores the settings and publishes them (SkuSettingsChanged: other services keep their own copy,
    e.g. returns its `returnable`); a threshold now above the available units raises LowStock at once."""
    async with outbox.transaction(pool) as uow:
        await repo.lock_inventory(uow.conn)
        r = await repo.upsert_sku_settings(uow.conn, sku, allow_backorder, threshold, returnable)
        changed = SkuSettingsChangedV1(sku=sku, allow_backorder=r["allow_backorder"],
                                       low_stock_threshold=r["low_stock_threshold"], returnable=r["returnable"],
                                       changed_at=datetime.now(UTC))
        uow.emit(EVENTS, changed, order_id=sku_key(sku))
        await alert_low_stock(uow, [sku])
    return {"sku": sku, **{k: r[k] for k in SKU_DEFAULTS}}, r["created"]


async def get_sku(pool: asyncpg.Pool, sku: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        r = await repo.get_sku_settings(conn, sku)
    return {"sku": sku, **({k: r[k] for k in SKU_DEFAULTS} if r else SKU_DEFAULTS)}


async def set_stock(pool: asyncpg.Pool, location_id: str, sku: str, on_hand: int, reason: str, *,
                    scan_limit: int, outbox: Outbox) -> tuple[dict, bool]:
    """Sets on_hand at a location (the difference becomes a movement). It may not go below what is
    reserved there. A rise serves waiting backorders; a fall may raise LowStock."""
    async with outbox.transaction(pool) as uow:
        conn = uow.conn
        if not await repo.location_exists(conn, location_id):
            raise NotFound(f"location {location_id} not found")
        await repo.lock_inventory(conn)
        rows = await repo.lock_stock(conn, [sku], location_id)
        before = rows[0] if rows else {"on_hand": 0, "reserved": 0}
        if on_hand < before["reserved"]:
            message = (f"{before['reserved']} units of {sku} are reserved at {location_id}; "
                       f"on_hand cannot go below that")
            floor = Violation("on_hand", "not_below_reserved",
                              f"must be at least {before['reserved']} (reserved at {location_id})")
            raise Conflict(message, [floor], code="below_reserved")
        r = await repo.set_on_hand(conn, sku, location_id, on_hand, on_hand - before["on_hand"], reason)
        taken = await serve_backorders(uow, [sku], scan_limit) if on_hand > before["on_hand"] else set()
        await alert_low_stock(uow, {sku} | taken)
        after = (await repo.lock_stock(conn, [sku], location_id))[0] if taken else r
    return {"sku": sku, "location_id": location_id, **stock_figures(after["on_hand"], after["reserved"])}, r["created"]


async def stock_view(pool: asyncpg.Pool, sku: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await repo.stock_of(conn, sku)
        if not rows and not await repo.sku_known(conn, sku):
            raise NotFound(f"SKU {sku} has no stock and no settings")
    locations = [{"location_id": r["location_id"], **stock_figures(r["on_hand"], r["reserved"])} for r in rows]
    totals = stock_figures(sum(r["on_hand"] for r in rows), sum(r["reserved"] for r in rows))
    return {"sku": sku, **totals, "locations": locations}


def movement_view(r: asyncpg.Record) -> dict[str, Any]:
    return {"movement_id": r["movement_id"], "sku": r["sku"], "location_id": r["location_id"], "delta": r["delta"],
            "reason": r["reason"], "order_id": str(r["order_id"]) if r["order_id"] else None, "at": _iso(r["at"])}


async def reservation_view(pool: asyncpg.Pool, order_id: UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        r = await repo.get_reservation(conn, order_id)
    if r is None:
        raise NotFound(f"no reservation for order {order_id}")
    return {
        "order_id": str(r["order_id"]), "reservation_id": str(r["reservation_id"]), "status": r["status"],
        "destination_country": r["destination_country"] or None, "lines": r["lines"],
        "allocations": r["allocations"], "strategy": r["strategy"], "reason": r["reason"], "short": r["short"],
        "failure_reason": r["failure_reason"], "released": r["released"], "release_reason": r["release_reason"],
        "created_at": _iso(r["created_at"]), "updated_at": _iso(r["updated_at"]),
    }
