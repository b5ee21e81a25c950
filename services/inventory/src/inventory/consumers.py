"""Kafka consumer of inventory: the saga's commands on oms.inventory.commands, answered on
oms.inventory.events through the outbox, in the batch's transaction."""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from inventory import repository as repo
from inventory.handlers import movements, reservations
from inventory.handlers.effects import Cause, Outgoing
from oms_contracts import Envelope
from oms_contracts.inventory import ReserveStockV1
from oms_contracts.topics import commands
from oms_platform.consumer import BatchLocal, ConsumerSpec, Handler, MessageContext

# None: the batch has no ReserveStock (set anyway, so no earlier batch's state is seen).
_RESERVES: BatchLocal[reservations.ReserveBatch | None] = BatchLocal("inventory_reserves")


def _bind(use_case: Callable[..., Awaitable[None]], **options: Any) -> Handler:
    async def handle(ctx: MessageContext) -> None:
        # Replies go into ctx.outgoing (written to the outbox with this message), causation = this command.
        cause = Cause(ctx.envelope.event_id, ctx.envelope.correlation_id)
        batch = _RESERVES.get(ctx.conn)
        if batch is not None:
            await batch.hand_over(ctx.conn)  # it reads and changes stock in the database
        await use_case(ctx.conn, ctx.payload, cause, Outgoing(ctx.producer, ctx.outgoing), **options)

    return handle


async def _reserve(ctx: MessageContext) -> None:
    cause = Cause(ctx.envelope.event_id, ctx.envelope.correlation_id)
    assert isinstance(ctx.payload, ReserveStockV1)
    await reservations.reserve(ctx.conn, ctx.payload, cause, Outgoing(ctx.producer, ctx.outgoing),
                               _RESERVES.get(ctx.conn))


async def _begin(conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
    """Every command changes stock or reservations: the inventory lock is taken once for the whole
    batch (it is held until the batch's transaction ends), not once per command. Then the state of
    every ReserveStock of the batch is read in one statement (see ReserveBatch)."""
    await repo.lock_inventory(conn)
    reserves = [env for env in envelopes if env.event_type == "ReserveStock"]
    batch = None
    if reserves:
        skus = [li["sku"] for env in reserves for li in env.payload["lines"]]
        batch = await reservations.load_batch(conn, [env.order_id for env in reserves], skus)
    _RESERVES.set(conn, batch)


async def _write(conn: asyncpg.Connection) -> None:
    batch = _RESERVES.get(conn)
    if batch is not None:
        await batch.flush(conn)


def commands_consumer(*, backorder_scan_limit: int) -> ConsumerSpec:
    return ConsumerSpec(
        name="commands",
        topics=[commands("inventory")],
        before_batch=_begin,
        after_batch=_write,
        handlers={
            "ReserveStock": _reserve,
            "ReleaseStock": _bind(reservations.release, scan_limit=backorder_scan_limit),
            "CommitStock": _bind(movements.commit),
            "Restock": _bind(movements.restock, scan_limit=backorder_scan_limit),
        },
    )
