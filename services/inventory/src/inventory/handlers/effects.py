"""What the use cases share: the topic they emit on, and the effects of a stock change: serving waiting
backorders when units come free, and LowStock alerts."""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from inventory import domain
from inventory import repository as repo
from oms_contracts.inventory import LowStockV1, StockReservedV1
from oms_contracts.topics import events
from oms_platform.outbox import UnitOfWork

EVENTS = events("inventory")
_SKU_NAMESPACE = uuid5(NAMESPACE_URL, "urn:oms:inventory:sku")


def sku_key(sku: str) -> UUID:
    """The envelope order_id (and so the Kafka key) of a SKU's own events such as LowStock: stable per
    SKU, so one SKU's alerts stay in order."""
    return uuid5(_SKU_NAMESPACE, sku)


def locations_of(rows: Iterable[Any]) -> list[domain.Location]:
    """Stock rows (sku, location_id, on_hand, reserved, country) as the domain's locations."""
    by_id: dict[str, tuple[str, dict[str, int]]] = {}
    for r in rows:
        _, free = by_id.setdefault(r["location_id"], (r["country"].strip(), {}))
        free[r["sku"]] = r["on_hand"] - r["reserved"]
    return [domain.Location(loc, country, free) for loc, (country, free) in by_id.items()]


def allocation_rows(sourcing: domain.Sourcing) -> list[dict[str, Any]]:
    return [{"location_id": a.location_id, "sku": a.sku, "quantity": a.quantity, "committed": 0}
            for a in sourcing.allocations]


def reserved_event(order_id: UUID, reservation_id: UUID, allocations: list[dict], strategy: str,
                   reason: str) -> StockReservedV1:
    return StockReservedV1(
        order_id=order_id, reservation_id=reservation_id, strategy=strategy, reason=reason,
        allocations=[{"location_id": a["location_id"], "sku": a["sku"], "quantity": a["quantity"]}
                     for a in allocations],
    )


def units_by_pair(allocations: Iterable[domain.Allocation]) -> list[tuple[str, str, int]]:
    """(sku, location, quantity), one entry per pair: one UPDATE ... FROM applies one source row per target."""
    total: dict[tuple[str, str], int] = {}
    for a in allocations:
        total[(a.sku, a.location_id)] = total.get((a.sku, a.location_id), 0) + a.quantity
    return [(sku, loc, q) for (sku, loc), q in sorted(total.items())]


async def serve_backorders(uow: UnitOfWork[Any], skus: Iterable[str], scan_limit: int) -> set[str]:
    """Units of these SKUs came free: serves the waiting backorders that can now be reserved whole,
    oldest first, each answered with StockReserved as the reply to its original ReserveStock.
    Returns the SKUs whose available units this took."""
    conn = uow.conn
    skus = sorted(set(skus))
    if not skus or not await repo.has_waiting(conn, skus):
        return set()
    rows = await repo.waiting_backorders(conn, skus, scan_limit)
    waiting = [
        domain.Waiting(r["order_id"], {li["sku"]: li["quantity"] for li in r["lines"]}, r["destination_country"], r)
        for r in rows
    ]
    stock = await repo.lock_stock(conn, sorted({sku for w in waiting for sku in w.lines}))
    served = domain.serve_queue(waiting, locations_of(stock))
    if not served:
        return set()
    await repo.mark_served(
        conn,
        [(w.order_id, allocation_rows(s), s.strategy, s.reason) for w, s in served],
        units_by_pair(a for _, s in served for a in s.allocations),
    )
    for w, s in served:
        r: Any = w.ref
        uow.emit(EVENTS, reserved_event(w.order_id, r["reservation_id"], allocation_rows(s), s.strategy, s.reason),
                 order_id=w.order_id, correlation_id=r["correlation_id"], causation_id=r["command_event_id"])
    return {a.sku for _, s in served for a in s.allocations}


async def alert_low_stock(uow: UnitOfWork[Any], skus: Iterable[str]) -> None:
    """Emits LowStock for each SKU whose available units just fell under its threshold (caused by the
    message being handled; keyed by the SKU)."""
    skus = sorted(set(skus))
    if not skus:
        return
    for r in await repo.low_stock_crossings(uow.conn, skus):
        if r["alerted"]:
            event = LowStockV1(sku=r["sku"], available=r["available"], threshold=r["threshold"], at=datetime.now(UTC))
            uow.emit(EVENTS, event, order_id=sku_key(r["sku"]))
