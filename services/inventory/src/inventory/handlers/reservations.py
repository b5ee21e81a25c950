"""Use cases of the saga's stock step: reserve an order's lines (or queue it as a backorder, or refuse
it), and release them again (compensation). The caller holds the inventory lock (the consumer takes
it once per batch: see repository/stock.py)."""

from typing import Any
from uuid import UUID

import asyncpg

from inventory import domain
from inventory import repository as repo
from inventory.handlers.effects import (
    Cause,
    Outgoing,
    alert_low_stock,
    allocation_rows,
    locations_of,
    reserved_event,
    serve_backorders,
    units_by_pair,
)
from oms_contracts.inventory import (
    ReleaseStockV1,
    ReserveStockV1,
    StockBackorderedV1,
    StockReleasedV1,
    StockReservationFailedV1,
)
from oms_platform.ids import uuid7

MAX_LINE_QUANTITY = 1_000_000


def _short(short: tuple[domain.Short, ...]) -> list[dict[str, Any]]:
    return [{"sku": s.sku, "requested": s.requested, "available": s.available} for s in short]


def _is_valid(lines: dict[str, int]) -> bool:
    return bool(lines) and all(sku and 0 < q <= MAX_LINE_QUANTITY for sku, q in lines.items())


async def reserve(conn: asyncpg.Connection, cmd: ReserveStockV1, cause: Cause, out: Outgoing) -> None:
    """Answers StockReserved, StockBackordered or StockReservationFailed. An order has one outcome:
    a repeated command gets the stored one, never a second reservation."""
    lines = domain.merge_lines((li.sku, li.quantity) for li in cmd.lines)
    state = await repo.load_for_reserve(conn, cmd.order_id, sorted(lines))
    if state.existing is not None:
        await _answer_again(conn, cmd.order_id, state.existing, cause, out)
        return
    assert cause.event_id is not None and cause.correlation_id is not None
    record: dict[str, Any] = {
        "order_id": cmd.order_id, "reservation_id": uuid7(), "destination_country": cmd.destination_country.upper(),
        "lines": [{"sku": sku, "quantity": q} for sku, q in lines.items()],
        "command_event_id": cause.event_id, "correlation_id": cause.correlation_id,
    }
    if not _is_valid(lines):
        await repo.insert_reservation(conn, {**record, "status": "failed", "failure_reason": "invalid_request"}, [], [])
        out.add(StockReservationFailedV1(order_id=cmd.order_id, reason="invalid_request", short=[]),
                order_id=cmd.order_id, cause=cause)
        return
    decision = domain.decide(
        lines, record["destination_country"], locations_of(state.stock),
        backorderable=[sku for sku, s in state.settings.items() if s["allow_backorder"]],
        queued=state.queued,
    )
    if decision.sourcing is not None:
        s = decision.sourcing
        allocations = allocation_rows(s)
        await repo.insert_reservation(
            conn, {**record, "status": "reserved", "allocations": allocations, "strategy": s.strategy,
                   "reason": s.reason},
            units_by_pair(s.allocations), [],
        )
        out.add(reserved_event(cmd.order_id, record["reservation_id"], allocations, s.strategy, s.reason),
                order_id=cmd.order_id, cause=cause)
        watched = [sku for sku in lines if state.settings.get(sku, {}).get("watched")]
        await alert_low_stock(conn, watched, out, cause)
    elif decision.outcome == "backordered":
        short = _short(decision.short)
        await repo.insert_reservation(conn, {**record, "status": "backordered", "short": short}, [],
                                      list(lines.items()))
        out.add(StockBackorderedV1(order_id=cmd.order_id, short=short), order_id=cmd.order_id, cause=cause)
    else:
        short = _short(decision.short)
        await repo.insert_reservation(
            conn, {**record, "status": "failed", "failure_reason": "out_of_stock", "short": short}, [], []
        )
        out.add(StockReservationFailedV1(order_id=cmd.order_id, reason="out_of_stock", short=short),
                order_id=cmd.order_id, cause=cause)


async def _answer_again(
    conn: asyncpg.Connection, order_id: UUID, existing: dict[str, Any], cause: Cause, out: Outgoing
) -> None:
    status = existing["status"]
    if status in ("reserved", "committed"):
        event: Any = reserved_event(order_id, UUID(existing["reservation_id"]), existing["allocations"],
                                    existing["strategy"], existing["reason"])
    elif status == "backordered":
        assert cause.event_id is not None and cause.correlation_id is not None
        await repo.set_waiting_cause(conn, order_id, cause.event_id, cause.correlation_id)
        event = StockBackorderedV1(order_id=order_id, short=existing["short"])
    elif status == "failed":
        event = StockReservationFailedV1(order_id=order_id, reason=existing["failure_reason"],
                                         short=existing["short"])
    else:  # released: the order was given up; nothing is reserved for it any more
        event = StockReservationFailedV1(order_id=order_id, reason="invalid_request", short=[])
    out.add(event, order_id=order_id, cause=cause)


async def release(conn: asyncpg.Connection, cmd: ReleaseStockV1, cause: Cause, out: Outgoing, *,
                  scan_limit: int) -> None:
    """Gives back what the order holds (its uncommitted reserved units, or its place in the backorder
    queue), once; a repeated release answers what the first one gave back."""
    r = await repo.get_reservation(conn, cmd.order_id, for_update=True)
    if r is None:
        assert cause.event_id is not None and cause.correlation_id is not None
        await repo.insert_released(conn, cmd.order_id, uuid7(), cmd.reason, cause.event_id, cause.correlation_id)
        out.add(StockReleasedV1(order_id=cmd.order_id, released=[], reason=cmd.reason),
                order_id=cmd.order_id, cause=cause)
        return
    if r["status"] not in ("reserved", "backordered"):
        out.add(StockReleasedV1(order_id=cmd.order_id, released=r["released"] or [],
                                reason=r["release_reason"] or cmd.reason),
                order_id=cmd.order_id, cause=cause)
        return
    freed = [
        {"location_id": a["location_id"], "sku": a["sku"], "quantity": a["quantity"] - a["committed"]}
        for a in r["allocations"] if a["quantity"] > a["committed"]
    ]
    await repo.change_stock(conn, [(a["sku"], a["location_id"], 0, -a["quantity"]) for a in freed],
                            reason="release", order_id=cmd.order_id)
    await repo.mark_released(conn, cmd.order_id, freed, cmd.reason)
    out.add(StockReleasedV1(order_id=cmd.order_id, released=freed, reason=cmd.reason),
            order_id=cmd.order_id, cause=cause)
    # Freed units, or a place left in the queue, may let waiting orders through.
    skus = {a["sku"] for a in freed} | {li["sku"] for li in r["lines"]}
    taken = await serve_backorders(conn, skus, out, scan_limit)
    await alert_low_stock(conn, {a["sku"] for a in freed} | taken, out, cause)
