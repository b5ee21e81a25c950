"""Use cases of the saga's stock step: reserve an order's lines (or queue it as a backorder, or refuse
it), and release them again (compensation). The caller holds the inventory lock (the consumer takes
it once per batch: see repository/stock.py)."""

from collections.abc import Sequence
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


class ReserveBatch:
    """The ReserveStock commands of one consumed batch: their state is read (and the stock rows locked)
    once for all of them, each is decided in memory seeing the units the earlier ones took, and their
    outcomes are stored with one statement (`flush`): at the batch's end, or as soon as anything else
    is about to read or change stock in the database."""

    def __init__(self, state: repo.ReserveState, skus: list[str]):
        self.existing = state.existing
        self.rows = {(r["sku"], r["location_id"]): r for r in state.stock}  # in (sku, location) order
        self.settings, self.queued, self.skus = state.settings, state.queued, set(skus)
        self.pending: list[repo.NewReservation] = []
        self.decided: set[str] = set()
        self.current = True  # False once the database may hold changes this batch did not make itself

    def view(self, order_id: UUID, skus: list[str]) -> repo.ReserveState | None:
        """This order's state from memory; None when only the database can tell (the batch is no longer
        current, the order was already decided in it, or a SKU was not read)."""
        key = str(order_id)
        if not self.current or key in self.decided or not self.skus.issuperset(skus):
            return None
        wanted = set(skus)
        return repo.ReserveState(
            existing={key: self.existing[key]} if key in self.existing else {},
            stock=[r for r in self.rows.values() if r["sku"] in wanted],
            settings={k: v for k, v in self.settings.items() if k in wanted},
            queued={k: v for k, v in self.queued.items() if k in wanted},
        )

    def add(self, item: repo.NewReservation) -> None:
        self.pending.append(item)
        self.decided.add(str(item.row["order_id"]))
        for sku, loc, q in item.reserve:
            self.rows[(sku, loc)]["reserved"] += q
        for sku, q in item.waiting_lines:
            self.queued[sku] = self.queued.get(sku, 0) + q

    async def flush(self, conn: asyncpg.Connection) -> None:
        items, self.pending = self.pending, []
        await repo.insert_reservations(conn, items)

    async def hand_over(self, conn: asyncpg.Connection) -> None:
        """Before another use case touches stock: what was decided is written, and from then on the
        database is the only truth for the rest of the batch."""
        await self.flush(conn)
        self.current = False


async def load_batch(conn: asyncpg.Connection, order_ids: list[UUID], skus: list[str]) -> ReserveBatch:
    skus = sorted(set(skus))
    return ReserveBatch(await repo.load_for_reserve(conn, order_ids, skus), skus)


async def reserve(
    conn: asyncpg.Connection, cmd: ReserveStockV1, cause: Cause, out: Outgoing, batch: ReserveBatch | None = None
) -> None:
    """Answers StockReserved, StockBackordered or StockReservationFailed. An order has one outcome:
    a repeated command gets the stored one, never a second reservation. Inside a consumed batch its
    state comes from the batch and its outcome is stored with the batch's (ReserveBatch)."""
    lines = domain.merge_lines((li.sku, li.quantity) for li in cmd.lines)
    skus = sorted(lines)
    state = batch.view(cmd.order_id, skus) if batch is not None else None
    if state is None:
        if batch is not None:
            await batch.hand_over(conn)
            batch = None
        state = await repo.load_for_reserve(conn, [cmd.order_id], skus)

    async def store(row: dict[str, Any], units: Sequence[tuple[str, str, int]] = (),
                    waiting: Sequence[tuple[str, int]] = ()) -> None:
        item = repo.NewReservation(row, list(units), list(waiting))
        if batch is None:
            await repo.insert_reservations(conn, [item])
        else:
            batch.add(item)

    existing = state.existing.get(str(cmd.order_id))
    if existing is not None:
        await _answer_again(conn, cmd.order_id, existing, cause, out)
        return
    assert cause.event_id is not None and cause.correlation_id is not None
    record: dict[str, Any] = {
        "order_id": cmd.order_id, "reservation_id": uuid7(), "destination_country": cmd.destination_country.upper(),
        "lines": [{"sku": sku, "quantity": q} for sku, q in lines.items()],
        "command_event_id": cause.event_id, "correlation_id": cause.correlation_id,
    }
    if not _is_valid(lines):
        await store({**record, "status": "failed", "failure_reason": "invalid_request"})
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
        await store({**record, "status": "reserved", "allocations": allocations, "strategy": s.strategy,
                     "reason": s.reason}, units_by_pair(s.allocations))
        out.add(reserved_event(cmd.order_id, record["reservation_id"], allocations, s.strategy, s.reason),
                order_id=cmd.order_id, cause=cause)
        watched = [sku for sku in lines if state.settings.get(sku, {}).get("watched")]
        if watched and batch is not None:
            await batch.flush(conn)  # the low-stock check reads the totals from the database
        await alert_low_stock(conn, watched, out, cause)
    elif decision.outcome == "backordered":
        short = _short(decision.short)
        await store({**record, "status": "backordered", "short": short}, waiting=list(lines.items()))
        out.add(StockBackorderedV1(order_id=cmd.order_id, short=short), order_id=cmd.order_id, cause=cause)
    else:
        short = _short(decision.short)
        await store({**record, "status": "failed", "failure_reason": "out_of_stock", "short": short})
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
