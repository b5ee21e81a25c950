"""Kafka consumer of inventory: the saga's commands on oms.inventory.commands, answered on
oms.inventory.events through the outbox, in the batch's transaction."""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from inventory import repository as repo
from inventory.handlers import movements, reservations
from inventory.handlers.effects import Cause, Outgoing
from oms_contracts import Envelope
from oms_contracts.topics import commands
from oms_platform.consumer import ConsumerSpec, Handler, MessageContext


def _bind(use_case: Callable[..., Awaitable[None]], **options: Any) -> Handler:
    async def handle(ctx: MessageContext) -> None:
        # Replies go into ctx.outgoing (written to the outbox with this message), causation = this command.
        cause = Cause(ctx.envelope.event_id, ctx.envelope.correlation_id)
        await use_case(ctx.conn, ctx.payload, cause, Outgoing(ctx.producer, ctx.outgoing), **options)

    return handle


async def _lock_inventory(conn: asyncpg.Connection, _envelopes: list[Envelope]) -> None:
    """Every command changes stock or reservations: the inventory lock is taken once for the whole
    batch (it is held until the batch's transaction ends), not once per command."""
    await repo.lock_inventory(conn)


def commands_consumer(*, backorder_scan_limit: int) -> ConsumerSpec:
    return ConsumerSpec(
        name="commands",
        topics=[commands("inventory")],
        before_batch=_lock_inventory,
        handlers={
            "ReserveStock": _bind(reservations.reserve),
            "ReleaseStock": _bind(reservations.release, scan_limit=backorder_scan_limit),
            "CommitStock": _bind(movements.commit),
            "Restock": _bind(movements.restock, scan_limit=backorder_scan_limit),
        },
    )
