"""Use cases of __NAME__. They raise the domain errors of oms_platform.errors (NotFound, Conflict,
RuleBroken, ...), which the platform turns into the contract's error body: no HTTP here.

To publish, a use case calls `uow.emit(topic, SomeContractEventV1(...))` on the unit of work it is
given (a consumer's, or `async with self.outbox.transaction(pool) as uow:` for an HTTP request): the
message goes to the outbox in the same transaction as the change it reports."""

from typing import Any
from uuid import UUID

import asyncpg

from __PKG__ import repository as repo
from __PKG__.domain import OrderSeen, order_seen
from oms_contracts import Envelope
from oms_contracts.orders import OrderPlacedV1
from oms_platform.errors import NotFound
from oms_platform.outbox import Outbox, UnitOfWork
from oms_platform.pagination import Keyset, Page

ORDERS = Keyset(key=lambda r: {"i": str(r["order_id"])}, parse=lambda v: UUID(v["i"]))


def order_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"order_id": str(row["order_id"]), "channel": row["channel"], "currency": row["currency"],
            "total": str(row["total"]), "placed_at": row["placed_at"].isoformat()}


class OrdersBatch:
    """A consumer batch's state (ConsumerSpec.batch_state): handlers add to it in memory, `flush`
    writes everything they decided in one statement at the end of the batch's transaction."""

    def __init__(self) -> None:
        self.orders: list[OrderSeen] = []

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        """Nothing to read first here; a service that decides from stored rows reads (and locks) them
        for the whole batch in one statement."""

    async def flush(self, conn: asyncpg.Connection) -> None:
        if self.orders:
            await repo.insert_orders(conn, self.orders)


class Service:
    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    def order_placed(self, uow: UnitOfWork[OrdersBatch], event: OrderPlacedV1) -> None:
        uow.state.orders.append(order_seen(event))

    async def get_order(self, pool: asyncpg.Pool, order_id: UUID) -> dict[str, Any]:
        async with pool.acquire() as conn:
            row = await repo.get_order(conn, order_id)
        if row is None:
            raise NotFound(f"order {order_id} not found")
        return order_view(row)

    async def list_orders(self, pool: asyncpg.Pool, *, cursor: str | None, limit: int) -> Page:
        after = ORDERS.after(cursor)
        async with pool.acquire() as conn:
            rows = await repo.list_orders(conn, after=after, limit=limit + 1)
        return ORDERS.page(rows, limit, order_view)
