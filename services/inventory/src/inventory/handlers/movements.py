"""Use cases that move goods in or out: a dispatched shipment leaves (CommitStock), units come back
(Restock). Each is applied once per business id (shipment_id, restock_id). The caller holds the
inventory lock (the consumer takes it once per batch: see repository/stock.py)."""

import logging
from typing import Any

from inventory import domain
from inventory import repository as repo
from inventory.handlers.effects import EVENTS, alert_low_stock, serve_backorders
from oms_contracts.inventory import CommitStockV1, RestockV1, StockCommittedV1, StockRestockedV1
from oms_platform.outbox import UnitOfWork

log = logging.getLogger(__name__)

DISPATCH = "dispatch"


class UnknownLocation(LookupError):
    """A command names a location this inventory does not have (an operator must create it)."""


async def commit(uow: UnitOfWork[Any], cmd: CommitStockV1) -> None:
    """The shipment's units leave the building: its lines at that location come off on_hand and off the
    order's reservation (a movement with reason "dispatch")."""
    conn = uow.conn
    reply = StockCommittedV1(order_id=cmd.order_id, shipment_id=cmd.shipment_id, location_id=cmd.location_id,
                             lines=cmd.lines)
    lines = domain.merge_lines((li.sku, li.quantity) for li in cmd.lines if li.quantity > 0)
    state = await repo.load_for_commit(conn, cmd.shipment_id, cmd.order_id, cmd.location_id, sorted(lines))
    if not state.fresh:
        uow.emit(EVENTS, reply, order_id=cmd.order_id)
        return
    r = state.reservation
    allocations = [dict(a) for a in r["allocations"]] if r and r["status"] == "reserved" else []
    rows = {row["sku"]: row for row in state.stock}
    changes: list[tuple[str, str, int, int]] = []
    for sku, qty in lines.items():
        alloc = next((a for a in allocations if a["location_id"] == cmd.location_id and a["sku"] == sku), None)
        take = min(qty, alloc["quantity"] - alloc["committed"]) if alloc else 0
        if alloc:
            alloc["committed"] += take
        row = rows.get(sku)
        if row is None:
            log.warning("shipment %s dispatched %s from %s, which holds none", cmd.shipment_id, sku, cmd.location_id)
            continue
        # Units beyond the order's reservation come out of free stock, never out of other orders' holds.
        leaving = min(qty, row["on_hand"] - (row["reserved"] - take))
        if leaving < qty:
            log.warning("shipment %s dispatched %d x %s from %s, which had only %d to give",
                        cmd.shipment_id, qty, sku, cmd.location_id, leaving)
        changes.append((sku, cmd.location_id, -leaving, -take))
    await repo.change_stock(conn, changes, reason=DISPATCH, order_id=cmd.order_id)
    if allocations:
        done = all(a["committed"] >= a["quantity"] for a in allocations)
        await repo.set_allocations(conn, cmd.order_id, allocations, "committed" if done else "reserved")
    # Normally on_hand and reserved drop together; units taken from free stock lower available.
    await alert_low_stock(uow, [sku for sku, _, d_on, d_res in changes if d_on != d_res])
    uow.emit(EVENTS, reply, order_id=cmd.order_id)


async def restock(uow: UnitOfWork[Any], cmd: RestockV1, *, scan_limit: int) -> None:
    """Units come back into on_hand at a location (movement reason from the command); waiting
    backorders may then be served."""
    conn = uow.conn
    reply = StockRestockedV1(order_id=cmd.order_id, restock_id=cmd.restock_id, location_id=cmd.location_id,
                             lines=cmd.lines)
    lines = domain.merge_lines((li.sku, li.quantity) for li in cmd.lines if li.quantity > 0)
    if not await repo.claim_operation(conn, "restock", cmd.restock_id, cmd.order_id):
        uow.emit(EVENTS, reply, order_id=cmd.order_id)
        return
    if not await repo.location_exists(conn, cmd.location_id):
        raise UnknownLocation(f"restock {cmd.restock_id} names unknown location {cmd.location_id}")
    await repo.change_stock(conn, [(sku, cmd.location_id, q, 0) for sku, q in sorted(lines.items())],
                            reason=cmd.reason.strip() or "restock", order_id=cmd.order_id, upsert=True)
    uow.emit(EVENTS, reply, order_id=cmd.order_id)
    taken = await serve_backorders(uow, lines, scan_limit)
    await alert_low_stock(uow, set(lines) | taken)
