"""Use cases of fulfilment: creating and cancelling an order's shipments (saga commands), the operator
transitions pick -> pack -> dispatch, reading shipments and their labels."""

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from fulfilment import repository as repo
from fulfilment.domain import (
    CANCELLABLE,
    LEFT_BUILDING,
    TRANSITIONS,
    CarrierRule,
    TransitionRefused,
    choose_carrier,
    next_status,
    plan_shipments,
)
from oms_carriers.carriers import BookingRequest, Carriers
from oms_carriers.labels import LabelData
from oms_contracts import Envelope
from oms_contracts.fulfilment import (
    CancelShipmentsV1,
    CreateShipmentsV1,
    ShipmentCancellationRefusedV1,
    ShipmentCreationFailedV1,
    ShipmentDispatchedV1,
    ShipmentInfo,
    ShipmentsCancelledV1,
    ShipmentsCreatedV1,
    ShipmentStatusChangedV1,
)
from oms_contracts.inventory import StockLine
from oms_contracts.orders import Address
from oms_contracts.topics import events
from oms_platform import telemetry
from oms_platform.errors import Conflict, InvalidTransition, NotFound, Violation
from oms_platform.ids import uuid7
from oms_platform.outbox import Outbox, UnitOfWork
from oms_platform.pagination import Keyset, Page

log = logging.getLogger(__name__)
EVENTS = events("fulfilment")


def shipment_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    r = dict(row)
    return {
        "shipment_id": str(r["shipment_id"]), "order_id": str(r["order_id"]), "location_id": r["location_id"],
        "lines": r["lines"], "status": r["status"], "shipping_method": r["shipping_method"],
        "carrier": r["carrier"], "service": r["service"], "tracking_number": r["tracking_number"],
        "created_at": r["created_at"].isoformat(), "updated_at": r["updated_at"].isoformat(),
        "dispatched_at": r["dispatched_at"].isoformat() if r["dispatched_at"] else None,
    }


# Oldest first, after the last shipment id of a page.
SHIPMENTS = Keyset(key=lambda r: {"i": str(r["shipment_id"])}, parse=lambda v: UUID(v["i"]))


def _info(row: asyncpg.Record | dict[str, Any]) -> ShipmentInfo:
    return ShipmentInfo(shipment_id=row["shipment_id"], location_id=row["location_id"], lines=row["lines"],
                        carrier=row["carrier"], service=row["service"], tracking_number=row["tracking_number"])


def _transition_event(row: asyncpg.Record, old: str, new: str, at: datetime) -> BaseModel:
    if new == "dispatched":
        return ShipmentDispatchedV1(
            order_id=row["order_id"], shipment_id=row["shipment_id"], location_id=row["location_id"],
            lines=row["lines"], carrier=row["carrier"], service=row["service"],
            tracking_number=row["tracking_number"], dispatched_at=at,
        )
    return ShipmentStatusChangedV1(order_id=row["order_id"], shipment_id=row["shipment_id"],
                                   old_status=old, new_status=new, at=at)


class CommandBatch:
    """The batch state of the command consumer: its orders locked and their state read once for the
    batch (kept current by its commands), and the shipments it created, written in one statement."""

    def __init__(self) -> None:
        self.states: dict[UUID, tuple[str | None, bool]] = {}  # order -> (cancellation reason, has shipments)
        self.pending: list[dict[str, Any]] = []

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        """The commands of one order are applied one at a time across service instances: the batch locks
        its orders before the first command (and holds them until it commits), then reads their state
        (after the locks: a batch that held them before has committed)."""
        order_ids = [env.order_id for env in envelopes]
        await repo.lock_orders(conn, order_ids)
        self.states = await repo.order_states(conn, order_ids)

    async def state_of(self, conn: asyncpg.Connection, order_id: UUID) -> tuple[str | None, bool]:
        state = self.states.get(order_id)
        if state is None:  # forgotten by a cancellation of the batch: read again
            state = self.states[order_id] = (await repo.order_states(conn, [order_id]))[order_id]
        return state

    async def flush(self, conn: asyncpg.Connection) -> None:
        """Writes the pending shipments (before anything reads shipments back, and at the batch's end)."""
        rows, self.pending = self.pending, []
        await repo.insert_shipments(conn, rows)


class Fulfilment:
    def __init__(self, rules: tuple[CarrierRule, ...], carriers: Carriers, *, outbox: Outbox, sender_name: str):
        self.rules, self.carriers, self.outbox, self.sender_name = rules, carriers, outbox, sender_name

    # --- saga commands (inside the consumer's batch transaction, which holds the order's lock) -----

    async def create_shipments(self, uow: UnitOfWork[CommandBatch], cmd: CreateShipmentsV1) -> BaseModel:
        """One shipment per location, booked with the carrier the rules choose. Idempotent per order:
        a repeat replies with the shipments already made; after a cancellation it creates nothing.
        The shipments are written with the batch's others (CommandBatch)."""
        conn, batch = uow.conn, uow.state
        cancelled, has_shipments = await batch.state_of(conn, cmd.order_id)
        if cancelled is not None:
            return ShipmentCreationFailedV1(order_id=cmd.order_id, reason="order_cancelled")
        if has_shipments:
            await batch.flush(conn)
            existing = await repo.shipments_of_order(conn, cmd.order_id)
            return ShipmentsCreatedV1(order_id=cmd.order_id, shipments=[_info(r) for r in existing])
        plan = plan_shipments(cmd.shipments)
        if isinstance(plan, str):
            return ShipmentCreationFailedV1(order_id=cmd.order_id, reason=plan)
        address = cmd.shipping_address
        rule = choose_carrier(self.rules, cmd.shipping_method, address.country)
        if rule is None:
            return ShipmentCreationFailedV1(order_id=cmd.order_id, reason="no_carrier_for_destination")
        carrier = self.carriers.get(rule.carrier)
        now = datetime.now(UTC)
        rows = []
        order_trace = telemetry.traceparent() if telemetry.enabled() else None
        # Ids ascending in plan order, so every later read (ordered by id) lists them as first replied.
        for planned, shipment_id in zip(plan, sorted(uuid7() for _ in plan), strict=True):
            booking = await carrier.create_shipment(BookingRequest(
                reference=f"{cmd.order_id}/{planned.location_id}", shipment_id=shipment_id, order_id=cmd.order_id,
                service=rule.service, origin_location_id=planned.location_id, destination=address,
                lines=planned.lines,
            ))
            rows.append({
                "shipment_id": shipment_id, "order_id": cmd.order_id, "location_id": planned.location_id,
                "lines": [li.model_dump() for li in planned.lines], "shipping_method": cmd.shipping_method,
                "shipping_address": address.model_dump(), "carrier": rule.carrier, "service": rule.service,
                "tracking_number": booking.tracking_number, "label_pdf": booking.label_pdf, "created_at": now,
                "order_traceparent": order_trace,
            })
        batch.pending.extend(rows)
        batch.states[cmd.order_id] = (None, True)
        return ShipmentsCreatedV1(order_id=cmd.order_id, shipments=[_info(r) for r in rows])

    async def cancel_shipments(self, uow: UnitOfWork[CommandBatch], cmd: CancelShipmentsV1) -> BaseModel:
        """Cancels every shipment of the order unless one has left the building (then nothing changes).
        Idempotent: a repeat replies with the same cancelled shipments and the first reason."""
        conn, batch = uow.conn, uow.state
        await batch.flush(conn)  # it reads (and cancels) the order's shipments from the table
        batch.states.pop(cmd.order_id, None)  # a later command of the batch reads the order again
        # Row locks first: a dispatch racing with this either committed already (seen here) or waits
        # and then finds its shipment cancelled.
        shipments = await repo.shipments_of_order(conn, cmd.order_id, for_update=True)
        gone = [r["shipment_id"] for r in shipments if r["status"] in LEFT_BUILDING]
        if gone:
            return ShipmentCancellationRefusedV1(  # with the shipments: the saga may not know them yet
                order_id=cmd.order_id, reason="already_dispatched", dispatched_shipment_ids=gone,
                shipments=[_info(r) for r in shipments],
            )
        cancelled_now = await repo.cancel_open(conn, cmd.order_id, sorted(CANCELLABLE))
        for row in cancelled_now:
            try:
                await self.carriers.get(row["carrier"]).cancel(row["tracking_number"])
            except Exception:  # noqa: BLE001 - best effort: the shipment is cancelled here regardless
                log.exception("carrier %s could not void %s", row["carrier"], row["tracking_number"])
        reason = await repo.record_cancellation(conn, cmd.order_id, cmd.reason)
        return ShipmentsCancelledV1(
            order_id=cmd.order_id, shipment_ids=[r["shipment_id"] for r in shipments], reason=reason
        )

    # --- operator actions -------------------------------------------------------------------------

    async def transition(self, pool: asyncpg.Pool, shipment_id: UUID, action: str) -> dict[str, Any]:
        """pick / pack / dispatch: the status change and its event commit together, or neither does."""
        expected, new = TRANSITIONS[action]
        now = datetime.now(UTC)
        async with self.outbox.transaction(pool) as uow:
            conn = uow.conn
            row = await repo.transition(conn, shipment_id, expected, new, now)
            if row is None:
                current = await repo.get(conn, shipment_id)
                if current is None:
                    raise NotFound(f"shipment {shipment_id} not found")
                try:
                    next_status(action, current["status"])
                except TransitionRefused as refused:
                    raise InvalidTransition(str(refused), [Violation(
                        "status", f"must_be_{refused.needed}", f"current status is {refused.current}")]) from None
                # The status moved on between the two statements: report what it is now.
                raise InvalidTransition(f"shipment {shipment_id} is {current['status']}")
            # The request's span and log lines are found by the order, and its trace links to the order's.
            telemetry.set_order_id(row["order_id"], link=row["order_traceparent"])
            uow.emit(EVENTS, _transition_event(row, expected, new, now), order_id=row["order_id"])
        return shipment_view(row)

    # --- reads ------------------------------------------------------------------------------------

    async def list_shipments(self, pool: asyncpg.Pool, *, order_id: UUID | None, status: str | None,
                             location_id: str | None, cursor: str | None, limit: int) -> Page:
        after = SHIPMENTS.after(cursor)
        async with pool.acquire() as conn:
            rows = await repo.list_shipments(conn, order_id=order_id, status=status, location_id=location_id,
                                             after=after, limit=limit + 1)
        return SHIPMENTS.page(rows, limit, shipment_view)

    async def get(self, pool: asyncpg.Pool, shipment_id: UUID) -> dict[str, Any]:
        async with pool.acquire() as conn:
            row = await repo.get(conn, shipment_id)
        if row is None:
            raise NotFound(f"shipment {shipment_id} not found")
        return shipment_view(row)

    async def label(self, pool: asyncpg.Pool, shipment_id: UUID) -> tuple[bytes, str]:
        """(PDF bytes, tracking number). A cancelled shipment has no valid label: 409."""
        async with pool.acquire() as conn:
            row = await repo.get(conn, shipment_id)
            stored = await repo.stored_label(conn, shipment_id) if row is not None else None
        if row is None:
            raise NotFound(f"shipment {shipment_id} not found")
        if row["status"] == "cancelled":
            raise Conflict(f"shipment {shipment_id} is cancelled; its label is void", code="shipment_cancelled")
        if stored is not None:
            return stored, row["tracking_number"]
        data = LabelData(
            shipment_id=row["shipment_id"], order_id=row["order_id"], location_id=row["location_id"],
            sender_name=self.sender_name, recipient=Address.model_validate(row["shipping_address"]),
            carrier=row["carrier"], service=row["service"], tracking_number=row["tracking_number"],
            lines=tuple(StockLine.model_validate(li) for li in row["lines"]), created_at=row["created_at"],
        )
        return await self.carriers.get(row["carrier"]).label(data), row["tracking_number"]
