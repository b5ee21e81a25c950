"""Kafka consumers of order capture: keeps each order's status current from oms.orders.status.

A batch's changes are written with one statement at its end: per order the latest one (by changed_at;
on a tie the later in the batch), and only where no later change was applied before (a redelivered or
reordered older change never overwrites a newer status)."""

from uuid import UUID

import asyncpg

from oms_contracts import Envelope
from oms_contracts.orders import OrderStatusChangedV1
from oms_contracts.topics import ORDERS_STATUS
from oms_platform.consumer import BatchLocal, ConsumerSpec, MessageContext
from order_capture import repository as repo

_CHANGES: BatchLocal[dict[UUID, OrderStatusChangedV1]] = BatchLocal("status_changes")


async def _begin(conn: asyncpg.Connection, _envelopes: list[Envelope]) -> None:
    _CHANGES.set(conn, {})


async def on_status_changed(ctx: MessageContext) -> None:
    event = ctx.payload
    assert isinstance(event, OrderStatusChangedV1)
    changes = _CHANGES.get(ctx.conn)
    if changes is None:  # outside a batch: at once
        await repo.apply_statuses(ctx.conn, [event])
        return
    latest = changes.get(event.order_id)
    if latest is None or event.changed_at >= latest.changed_at:
        changes[event.order_id] = event


async def _write(conn: asyncpg.Connection) -> None:
    changes = _CHANGES.get(conn)
    if changes:
        events = list(changes.values())
        changes.clear()
        await repo.apply_statuses(conn, events)


STATUS = ConsumerSpec(name="order-status", topics=[ORDERS_STATUS], handlers={"OrderStatusChanged": on_status_changed},
                      before_batch=_begin, after_batch=_write)
