"""Use cases of the orchestrator: start an order's saga, apply an event to it, read sagas."""

from typing import Any
from uuid import UUID

import asyncpg

from oms_contracts.orders import OrderPlacedV1
from oms_platform.consumer import Message, UnitOfWork
from oms_platform.errors import NotFound
from oms_platform.pagination import Keyset, Page
from oms_saga.runner import SagaBatch, SagaRunner
from oms_saga.view import saga_view
from orchestrator import repository as repo
from orchestrator.domain import initial_data


async def start_saga(runner: SagaRunner, msg: Message, uow: UnitOfWork[SagaBatch]) -> None:
    placed = msg.payload
    assert isinstance(placed, OrderPlacedV1)
    await runner.start(msg, uow, placed.order_id, initial_data(placed))


async def apply_event(runner: SagaRunner, msg: Message, uow: UnitOfWork[SagaBatch]) -> None:
    await runner.handle(msg, uow)


async def get_saga(pool: asyncpg.Pool, saga_type: str, order_id: UUID) -> dict[str, Any]:
    async with pool.acquire() as conn:
        found = await saga_view(conn, saga_type, order_id)
    if found is None:
        raise NotFound(f"no {saga_type} saga for order {order_id}")
    return found


# Newest first, before the last saga id of a page.
SAGAS = Keyset(key=lambda r: {"i": str(r["saga_id"])}, parse=lambda v: UUID(v["i"]))


async def list_sagas(
    pool: asyncpg.Pool, *, saga_type: str | None, state: str | None, stuck: bool | None, cursor: str | None,
    limit: int,
) -> Page:
    before = SAGAS.after(cursor)
    async with pool.acquire() as conn:
        rows = await repo.list_sagas(conn, saga_type=saga_type, state=state, stuck=stuck, before=before,
                                     limit=limit + 1)
    return SAGAS.page(rows, limit, dict)
