"""Kafka consumer of inventory: the saga's commands on oms.inventory.commands, answered on
oms.inventory.events through the outbox, in the batch's transaction."""

from collections.abc import Awaitable, Callable
from typing import Any

from inventory.handlers import movements, reservations
from inventory.handlers.effects import Cause, Outgoing
from oms_contracts.topics import commands
from oms_platform.consumer import ConsumerSpec, Handler, MessageContext


def _bind(use_case: Callable[..., Awaitable[None]], **options: Any) -> Handler:
    async def handle(ctx: MessageContext) -> None:
        # Replies go into ctx.outgoing (written to the outbox with this message), causation = this command.
        cause = Cause(ctx.envelope.event_id, ctx.envelope.correlation_id)
        await use_case(ctx.conn, ctx.payload, cause, Outgoing(ctx.producer, ctx.outgoing), **options)

    return handle


def commands_consumer(*, backorder_scan_limit: int) -> ConsumerSpec:
    return ConsumerSpec(
        name="commands",
        topics=[commands("inventory")],
        handlers={
            "ReserveStock": _bind(reservations.reserve),
            "ReleaseStock": _bind(reservations.release, scan_limit=backorder_scan_limit),
            "CommitStock": _bind(movements.commit),
            "Restock": _bind(movements.restock, scan_limit=backorder_scan_limit),
        },
    )
