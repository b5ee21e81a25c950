"""Kafka consumers of order capture: keeps each order's status current from oms.orders.status.

A batch's changes are written with one statement at its end: per order the latest one, and only where
no later change was applied before (a redelivered or reordered older change never overwrites a newer
status). Latest: by the orchestrator's per-order `sequence`; by changed_at (on a tie the later in the
batch) for changes without one (announced before it existed), whose clock may be another process's."""

from uuid import UUID

import asyncpg

from oms_contracts import Envelope
from oms_contracts.orders import OrderStatusChangedV1
from oms_contracts.topics import ORDERS_STATUS
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork
from oms_platform.inbox import StatementPart
from order_capture import repository as repo


class StatusChanges:
    """The batch state: each order's latest change of the batch, written in one statement. Optimistic
    (ConsumerSpec.optimistic): it reads nothing, so a batch is one statement with its inbox claim."""

    def __init__(self) -> None:
        self.latest: dict[UUID, OrderStatusChangedV1] = {}

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        """Reads nothing: each status change is applied by a write guarded in SQL (flush)."""

    read = load

    async def flush(self, conn: asyncpg.Connection) -> None:
        if self.latest:
            events, self.latest = list(self.latest.values()), {}
            await repo.apply_statuses(conn, events)

    def write_sql(self, first_param: int) -> StatementPart:
        events, self.latest = list(self.latest.values()), {}
        return repo.apply_statuses_part(events, first_param)


async def on_status_changed(msg: Message, uow: UnitOfWork[StatusChanges]) -> None:
    event = msg.payload
    assert isinstance(event, OrderStatusChangedV1)
    latest = uow.state.latest.get(event.order_id)
    if latest is None or event.newer_than(latest):
        uow.state.latest[event.order_id] = event


STATUS = ConsumerSpec(name="order-status", topics=[ORDERS_STATUS], handlers={"OrderStatusChanged": on_status_changed},
                      batch_state=StatusChanges, optimistic=True)
