"""Use cases of __NAME__. They raise the domain errors of oms_platform.errors (NotFound, Conflict,
RuleBroken, ...), which the platform turns into the contract's error body: no HTTP here.

To publish, a handler calls `uow.emit(topic, SomeContractEventV1(...))`: the message
goes to the outbox in the same transaction as the change it reports."""

from typing import Any
from uuid import UUID

import asyncpg

from __PKG__ import repository as repo
from __PKG__.domain import OrderSeen, order_seen
from oms_contracts.orders import OrderPlacedV1
from oms_platform.errors import NotFound
from oms_platform.pagination import Keyset, Page

ORDERS = Keyset(key=lambda r: {"i": str(r["order_id"])}, parse=lambda v: UUID(v["i"]))


def order_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"order_id": str(row["order_id"]), "channel": row["channel"], "currency": row["currency"],
            "total": str(row["total"]), "placed_at": row["placed_at"].isoformat()}


class Service:
    def order_placed(self, orders: list[OrderSeen], event: OrderPlacedV1) -> None:
        """Decided in memory; the batch's orders are saved in one statement at its end."""
        orders.append(order_seen(event))

    async def save_orders(self, conn: asyncpg.Connection, orders: list[OrderSeen]) -> None:
        await repo.insert_orders(conn, orders)

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
