"""Use cases of tracking: applying a batch of the OMS's events to the timelines, recording a carrier's
scan (with its events, through the outbox, in the same transaction), and reading an order's tracking."""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from oms_contracts import Envelope, new_envelope, orders
from oms_contracts.fulfilment import ShipmentDeliveredV1, ShipmentsCreatedV1
from oms_contracts.topics import events
from oms_contracts.tracking import CarrierScanRecordedV1, ScanStatus, ShipmentDeliveryFailedV1
from oms_platform import links, telemetry
from oms_platform.channel_keys import Caller
from oms_platform.errors import NotFound, Violation
from oms_platform.fields import Timestamp
from oms_platform.ids import uuid7
from oms_platform.outbox import Outbox, UnitOfWork
from tracking import domain
from tracking import repository as repo

log = logging.getLogger(__name__)
EVENTS = events("tracking")


class CarrierEvent(BaseModel):
    """The body of POST /v1/carrier-events. Fields a carrier adds beyond these are ignored (carriers
    extend their payloads without notice; refusing them would only make the carrier retry)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"carrier": "oms-post", "event_id": "evt-1", "tracking_number": "OMS0000000019PT", "status": "delivered",
         "occurred_at": "2026-12-04T10:00:00Z", "location": "Front door"},
    ]})

    carrier: str = Field(min_length=1, max_length=64)
    event_id: str = Field(min_length=1, max_length=200)
    tracking_number: str = Field(min_length=1, max_length=64)
    status: ScanStatus
    occurred_at: Timestamp  # ISO 8601 with a timezone (README, Input rules), never an epoch
    location: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=500)


@dataclass(frozen=True)
class ScanResult:
    outcome: Literal["recorded", "duplicate"]
    order_id: UUID
    shipment_id: UUID
    shipment_status: str


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


class Tracking:
    def __init__(self, *, outbox: Outbox, link_secret: str, public_url: str):
        self.outbox, self.link_secret, self.public_url = outbox, link_secret, public_url

    # --- the OMS's events (inside the consumer's batch transaction) ---------------------------------

    async def apply(self, conn: asyncpg.Connection, batch: list[tuple[Envelope, BaseModel]],
                    traces: dict[UUID, str] | None = None) -> None:
        """A batch of events in a few set-based statements: orders' channels and statuses (and the
        traceparent of each order's OrderPlaced, in `traces`), shipments, their warehouse statuses, and
        one timeline entry per event."""
        placed: dict[UUID, tuple[UUID, str, str, datetime, str | None]] = {}
        statuses: dict[UUID, orders.OrderStatusChangedV1] = {}
        shipments: list[dict[str, Any]] = []
        moves: list[tuple[UUID, str]] = []
        entries = []
        for env, event in batch:
            entries.append(domain.entry_for(env.event_id, env.order_id, env.occurred_at, event))
            if isinstance(event, orders.OrderPlacedV1):
                placed[event.order_id] = (event.order_id, event.channel, event.external_id, event.created_at,
                                          (traces or {}).get(event.order_id))
            elif isinstance(event, orders.OrderStatusChangedV1):
                latest = statuses.get(event.order_id)
                if latest is None or event.newer_than(latest):
                    statuses[event.order_id] = event
            elif isinstance(event, ShipmentsCreatedV1):
                shipments += [{**s.model_dump(include={"shipment_id", "location_id", "carrier", "service",
                                                       "tracking_number"}), "order_id": event.order_id}
                              for s in event.shipments]
            else:
                moves += domain.warehouse_status(event)
        await repo.record_placed(conn, list(placed.values()))
        await repo.record_statuses(conn, [(e.order_id, e.new_status, e.reason, e.changed_at, e.sequence)
                                          for e in statuses.values()])
        await repo.insert_shipments(conn, shipments)
        if moves:
            before = await repo.lock_shipments(conn, [sid for sid, _ in moves])
            current = dict(before)
            for sid, new in moves:  # in the order they happened
                if sid in current and domain.warehouse_moves(current[sid], new):
                    current[sid] = new
            await repo.set_shipment_statuses(conn, {sid: st for sid, st in current.items() if st != before[sid]})
        await repo.insert_entries(conn, entries)

    # --- carrier webhook ----------------------------------------------------------------------------

    async def record_scan(self, pool: asyncpg.Pool, scan: CarrierEvent) -> ScanResult:
        """Stores the scan once per (carrier, event id), moves the shipment when the scan is its newest
        news, adds it to the timeline, and queues its events: all in one transaction, or nothing."""
        async with self.outbox.transaction(pool) as uow:
            conn = uow.conn
            ship = await repo.shipment_by_tracking(conn, scan.carrier, scan.tracking_number)
            if ship is None:  # not (yet) known: the carrier retries, and then it may be
                message = f"unknown tracking number {scan.tracking_number} for carrier {scan.carrier}"
                raise NotFound(message, [Violation("tracking_number", "known_tracking_number", message)])
            order_id, shipment_id = ship["order_id"], ship["shipment_id"]
            # The scan's span and log lines: found by the order; its trace links to the order's.
            telemetry.set_order_id(order_id, link=ship["order_traceparent"])
            event_id = uuid7()
            if not await repo.insert_scan(conn, carrier=scan.carrier, carrier_event_id=scan.event_id,
                                          shipment_id=shipment_id, order_id=order_id, status=scan.status,
                                          occurred_at=scan.occurred_at, location=scan.location, reason=scan.reason,
                                          event_id=event_id):
                return ScanResult("duplicate", order_id, shipment_id, ship["status"])
            moves = domain.scan_moves(ship["status"], ship["scan_at"], scan.status, scan.occurred_at)
            if moves:
                await repo.apply_scan(conn, shipment_id, scan.status, scan.occurred_at, scan.location, scan.reason)
            detail = domain.scan_detail(scan.status, scan.carrier, scan.tracking_number, scan.location, scan.reason)
            await repo.insert_entries(conn, [domain.Entry(event_id, order_id, scan.occurred_at,
                                                          CarrierScanRecordedV1.EVENT_TYPE, detail)])
            _emit_scan(uow, scan, event_id, order_id, shipment_id, moves)
        log.info("scan %s/%s of shipment %s: %s%s", scan.carrier, scan.event_id, shipment_id, scan.status,
                 "" if moves else " (older than the shipment's status: recorded only)")
        return ScanResult("recorded", order_id, shipment_id, scan.status if moves else ship["status"])

    # --- reads ----------------------------------------------------------------------------------------

    async def load(self, conn: asyncpg.Connection, order_id: UUID, caller: Caller | None) -> dict[str, Any]:
        """The order's tracking as the API shows it. 404 when unknown or (for a channel) not its own:
        another channel cannot tell whether the order exists. caller None: the customer's signed page."""
        row = await repo.order(conn, order_id)
        if row is None or (caller is not None and not (caller.operator or (
                row["channel"] is not None and caller.may_see(row["channel"])))):
            raise NotFound(f"order {order_id} not found")
        shipments = await repo.shipments_of(conn, order_id)
        timeline = await repo.timeline(conn, order_id)
        return {
            "order_id": str(order_id),
            "external_id": row["external_id"],
            "channel": row["channel"],
            "status": row["status"],
            "status_reason": row["status_reason"],
            "timeline": [entry_view(e) for e in timeline],
            "shipments": [shipment_view(s) for s in shipments],
            "tracking_url": links.tracking_url(self.public_url, self.link_secret, order_id),
        }


def entry_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "at": _iso(row["at"]), "type": row["type"], "detail": row["detail"]}


def shipment_view(row: asyncpg.Record) -> dict[str, Any]:
    scan = None
    if row["scan_status"] is not None:
        scan = {"status": row["scan_status"], "at": _iso(row["scan_at"]), "location": row["scan_location"],
                "reason": row["scan_reason"]}
    return {
        "shipment_id": str(row["shipment_id"]), "location_id": row["location_id"], "carrier": row["carrier"],
        "service": row["service"], "tracking_number": row["tracking_number"], "status": row["status"],
        "latest_scan": scan,
    }


def _emit_scan(uow: UnitOfWork[None], scan: CarrierEvent, event_id: UUID, order_id: UUID, shipment_id: UUID,
           moves: bool) -> None:
    recorded = CarrierScanRecordedV1(
        order_id=order_id, shipment_id=shipment_id, carrier=scan.carrier, carrier_event_id=scan.event_id,
        tracking_number=scan.tracking_number, status=scan.status, occurred_at=scan.occurred_at,
        location=scan.location, reason=scan.reason,
    )
    # Its event id is the timeline entry's, so one can be found from the other.
    uow.emit(EVENTS, new_envelope(recorded, producer=uow.producer, order_id=order_id).model_copy(
        update={"event_id": event_id}))
    follow: BaseModel | None = None
    if moves and scan.status == "delivered":
        follow = ShipmentDeliveredV1(order_id=order_id, shipment_id=shipment_id,
                                     tracking_number=scan.tracking_number, delivered_at=scan.occurred_at)
    elif moves and scan.status in ("delivery_failed", "returned_to_sender"):
        follow = ShipmentDeliveryFailedV1(order_id=order_id, shipment_id=shipment_id,
                                          tracking_number=scan.tracking_number, status=scan.status,
                                          reason=scan.reason, occurred_at=scan.occurred_at)
    if follow is not None:
        uow.emit(EVENTS, follow, order_id=order_id, correlation_id=order_id, causation_id=event_id)
