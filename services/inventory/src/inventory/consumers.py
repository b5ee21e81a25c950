"""Kafka consumer of inventory: the saga's commands on oms.inventory.commands, answered on
oms.inventory.events through the outbox, in the batch's transaction (its state: ReserveBatch)."""

from collections.abc import Awaitable, Callable
from typing import Any

from inventory.handlers import movements, reservations
from inventory.handlers.reservations import ReserveBatch
from oms_contracts.inventory import ReserveStockV1
from oms_contracts.topics import commands
from oms_platform.consumer import ConsumerSpec, Handler, Message, UnitOfWork


def _after_reserves(use_case: Callable[..., Awaitable[None]], **options: Any) -> Handler:
    async def handle(msg: Message, uow: UnitOfWork[ReserveBatch]) -> None:
        await uow.state.hand_over(uow.conn)  # it reads and changes stock in the database
        await use_case(uow, msg.payload, **options)

    return handle


async def _reserve(msg: Message, uow: UnitOfWork[ReserveBatch]) -> None:
    assert isinstance(msg.payload, ReserveStockV1)
    await reservations.reserve(uow, msg.payload)


def commands_consumer(*, backorder_scan_limit: int) -> ConsumerSpec:
    return ConsumerSpec(
        name="commands",
        topics=[commands("inventory")],
        batch_state=ReserveBatch,
        handlers={
            "ReserveStock": _reserve,
            "ReleaseStock": _after_reserves(reservations.release, scan_limit=backorder_scan_limit),
            "CommitStock": _after_reserves(movements.commit),
            "Restock": _after_reserves(movements.restock, scan_limit=backorder_scan_limit),
        },
    )
