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
    EVENTS,
    alert_low_stock,
    allocation_rows,
    locations_of,
    reserved_event,
    serve_backorders,
    units_by_pair,
)
from oms_contracts import Envelope
from oms_contracts.inventory import (
    ReleaseStockV1,
    ReserveStockV1,
    StockBackorderedV1,
    StockReleasedV1,
    StockReservationFailedV1,
)
from oms_platform.ids import uuid7
from oms_platform.outbox import UnitOfWork

MAX_LINE_QUANTITY = 1_000_000


def _short(short: tuple[domain.Short, ...]) -> list[dict[str, Any]]:
    return [{"sku": s.sku, "requested": s.requested, "available": s.available} for s in short]


def _is_valid(lines: dict[str, int]) -> bool:
    return bool(lines) and all(sku and 0 < q <= MAX_LINE_QUANTITY for sku, q in lines.items())


class ReserveBatch:
    """The batch state of the command consumer. Every command changes stock or reservations: the
    inventory lock is taken once for the whole batch (it is held until the batch's transaction ends),
    not once per command. The ReserveStock commands' state is read (and the stock rows locked) once for
    all of them, each is decided in memory seeing the units the earlier ones took, and their outcomes
    are stored with one statement (`flush`): at the batch's end, or as soon as anything else is about
    to read or change stock in the database (`hand_over`)."""

    def __init__(self) -> None:
        self.existing: dict[str, Any] = {}
        self.rows: dict[tuple[str, str], Any] = {}  # in (sku, location) order
        self.settings: dict[str, Any] = {}
        self.queued: dict[str, int] = {}
        self.skus: set[str] = set()
        self.pending: list[repo.NewReservation] = []
        self.decided: set[str] = set()
        self.current = False  # True while memory holds the truth for the SKUs read

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        await repo.lock_inventory(conn)
        reserves = [env for env in envelopes if env.event_type == ReserveStockV1.EVENT_TYPE]
        if not reserves:
            return
        skus = sorted({li["sku"] for env in reserves for li in env.payload["lines"]})
        state = await repo.load_for_reserve(conn, [env.order_id for env in reserves], skus)
        self.existing = state.existing
        self.rows = {(r["sku"], r["location_id"]): r for r in state.stock}
        self.settings, self.queued, self.skus = state.settings, state.queued, set(skus)
        self.current = True

    async def state_for(self, conn: asyncpg.Connection, order_id: UUID, skus: list[str]) -> repo.ReserveState:
        """This order's state: from memory while it holds the truth, else (the batch is no longer
        current, the order was already decided in it, or a SKU was not read) from the database."""
        key = str(order_id)
        if self.current and key not in self.decided and self.skus.issuperset(skus):
            wanted = set(skus)
            return repo.ReserveState(
                existing={key: self.existing[key]} if key in self.existing else {},
                stock=[r for r in self.rows.values() if r["sku"] in wanted],
                settings={k: v for k, v in self.settings.items() if k in wanted},
                queued={k: v for k, v in self.queued.items() if k in wanted},
            )
        await self.hand_over(conn)
        return await repo.load_for_reserve(conn, [order_id], skus)

    def add(self, item: repo.NewReservation) -> None:
        self.pending.append(item)
        self.decided.add(str(item.row["order_id"]))
        if self.current:
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


async def reserve(uow: UnitOfWork[ReserveBatch], cmd: ReserveStockV1) -> None:
    """Answers StockReserved, StockBackordered or StockReservationFailed. An order has one outcome:
    a repeated command gets the stored one, never a second reservation. Its state comes from the
    batch and its outcome is stored with the batch's (ReserveBatch)."""
    conn, batch, cause = uow.conn, uow.state, uow.cause
    assert cause is not None
    lines = domain.merge_lines((li.sku, li.quantity) for li in cmd.lines)
    state = await batch.state_for(conn, cmd.order_id, sorted(lines))

    def store(row: dict[str, Any], units: Sequence[tuple[str, str, int]] = (),
              waiting: Sequence[tuple[str, int]] = ()) -> None:
        batch.add(repo.NewReservation(row, list(units), list(waiting)))

    existing = state.existing.get(str(cmd.order_id))
    if existing is not None:
        await _answer_again(uow, cmd.order_id, existing)
        return
    record: dict[str, Any] = {
        "order_id": cmd.order_id, "reservation_id": uuid7(), "destination_country": cmd.destination_country.upper(),
        "lines": [{"sku": sku, "quantity": q} for sku, q in lines.items()],
        "command_event_id": cause.event_id, "correlation_id": cause.correlation_id,
    }
    if not _is_valid(lines):
        store({**record, "status": "failed", "failure_reason": "invalid_request"})
        uow.emit(EVENTS, StockReservationFailedV1(order_id=cmd.order_id, reason="invalid_request", short=[]),
                 order_id=cmd.order_id)
        return
    decision = domain.decide(
        lines, record["destination_country"], locations_of(state.stock),
        backorderable=[sku for sku, s in state.settings.items() if s["allow_backorder"]],
        queued=state.queued,
    )
    if decision.sourcing is not None:
        s = decision.sourcing
        allocations = allocation_rows(s)
        store({**record, "status": "reserved", "allocations": allocations, "strategy": s.strategy,
               "reason": s.reason}, units_by_pair(s.allocations))
        uow.emit(EVENTS, reserved_event(cmd.order_id, record["reservation_id"], allocations, s.strategy, s.reason),
                 order_id=cmd.order_id)
        watched = [sku for sku in lines if state.settings.get(sku, {}).get("watched")]
        if watched:
            await batch.flush(conn)  # the low-stock check reads the totals from the database
        await alert_low_stock(uow, watched)
    elif decision.outcome == "backordered":
        short = _short(decision.short)
        store({**record, "status": "backordered", "short": short}, waiting=list(lines.items()))
        uow.emit(EVENTS, StockBackorderedV1(order_id=cmd.order_id, short=short), order_id=cmd.order_id)
    else:
        short = _short(decision.short)
        store({**record, "status": "failed", "failure_reason": "out_of_stock", "short": short})
        uow.emit(EVENTS, StockReservationFailedV1(order_id=cmd.order_id, reason="out_of_stock", short=short),
                 order_id=cmd.order_id)


async def _answer_again(uow: UnitOfWork[Any], order_id: UUID, existing: dict[str, Any]) -> None:
    status = existing["status"]
    if status in ("reserved", "committed"):
        event: Any = reserved_event(order_id, UUID(existing["reservation_id"]), existing["allocations"],
                                    existing["strategy"], existing["reason"])
    elif status == "backordered":
        assert uow.cause is not None
        await repo.set_waiting_cause(uow.conn, order_id, uow.cause.event_id, uow.cause.correlation_id)
        event = StockBackorderedV1(order_id=order_id, short=existing["short"])
    elif status == "failed":
        event = StockReservationFailedV1(order_id=order_id, reason=existing["failure_reason"],
                                         short=existing["short"])
    else:  # released: the order was given up; nothing is reserved for it any more
        event = StockReservationFailedV1(order_id=order_id, reason="invalid_request", short=[])
    uow.emit(EVENTS, event, order_id=order_id)


async def release(uow: UnitOfWork[Any], cmd: ReleaseStockV1, *, scan_limit: int) -> None:
    """Gives back what the order holds (its uncommitted reserved units, or its place in the backorder
    queue), once; a repeated release answers what the first one gave back."""
    conn, cause = uow.conn, uow.cause
    assert cause is not None
    r = await repo.get_reservation(conn, cmd.order_id, for_update=True)
    if r is None:
        await repo.insert_released(conn, cmd.order_id, uuid7(), cmd.reason, cause.event_id, cause.correlation_id)
        uow.emit(EVENTS, StockReleasedV1(order_id=cmd.order_id, released=[], reason=cmd.reason), order_id=cmd.order_id)
        return
    if r["status"] not in ("reserved", "backordered"):
        uow.emit(EVENTS, StockReleasedV1(order_id=cmd.order_id, released=r["released"] or [],
                                reason=r["release_reason"] or cmd.reason), order_id=cmd.order_id)
        return
    freed = [
        {"location_id": a["location_id"], "sku": a["sku"], "quantity": a["quantity"] - a["committed"]}
        for a in r["allocations"] if a["quantity"] > a["committed"]
    ]
    await repo.change_stock(conn, [(a["sku"], a["location_id"], 0, -a["quantity"]) for a in freed],
                            reason="release", order_id=cmd.order_id)
    await repo.mark_released(conn, cmd.order_id, freed, cmd.reason)
    uow.emit(EVENTS, StockReleasedV1(order_id=cmd.order_id, released=freed, reason=cmd.reason), order_id=cmd.order_id)
    # Freed units, or a place left in the queue, may let waiting orders through.
    skus = {a["sku"] for a in freed} | {li["sku"] for li in r["lines"]}
    taken = await serve_backorders(uow, skus, scan_limit)
    await alert_low_stock(uow, {a["sku"] for a in freed} | taken)
