"""A consumer batch (or an order placed) in the process whose relay leads wakes that relay directly
once it has committed, instead of through pg_notify; otherwise (no relay, or a standby) it notifies."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from oms_contracts import new_envelope
from oms_contracts.orders import OrderCancellationRequestedV1, OrderStatusChangedV1
from oms_platform.consumer import BatchProcessor, ConsumerSpec, MessageContext
from oms_platform.outbox import NOTIFY_CHANNEL
from tests.integration.helpers import consumer_record, migrated_pool

pytestmark = pytest.mark.infra


class FakeRelay:
    """What BatchProcessor asks of its relay: whether it leads, and wake()."""

    def __init__(self, leads: bool):
        self.leads, self.wakes = leads, 0

    def wake(self) -> None:
        self.wakes += 1


@pytest.fixture
async def notifications(pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    got: list[str] = []

    def listener(*args: object) -> None:
        got.append(str(args[-1]))

    conn = await pool.acquire()
    await conn.add_listener(NOTIFY_CHANNEL, listener)
    yield got
    await conn.remove_listener(NOTIFY_CHANNEL, listener)
    await pool.release(conn)


async def _emit(ctx: MessageContext) -> None:
    ctx.emit("test.out", OrderStatusChangedV1(order_id=ctx.envelope.order_id, old_status="pending",
                                             new_status="cancelled", changed_at=ctx.envelope.occurred_at))


def _record() -> ConsumerRecord:
    order_id = uuid.uuid4()
    env = new_envelope(OrderCancellationRequestedV1(order_id=order_id, reason="r", requested_by="customer"),
                       producer="test", order_id=order_id)
    return consumer_record("test.in", env)


@pytest.mark.parametrize(("relay", "woken", "notified"), [
    (FakeRelay(leads=True), 1, 0),
    (FakeRelay(leads=False), 0, 1),
    (None, 0, 1),
])
async def test_a_batch_wakes_its_leading_relay_directly_and_notifies_otherwise(
    pool: asyncpg.Pool, notifications: list[str], relay: FakeRelay | None, woken: int, notified: int
) -> None:
    spec = ConsumerSpec(name="c", topics=["test.in"], handlers={"OrderCancellationRequested": _emit})
    processor = BatchProcessor(spec, pool, producer="test", group_id="g", relay=relay)  # type: ignore[arg-type]
    await processor.process([_record(), _record()])
    await asyncio.sleep(0.3)  # a notification would have arrived by now
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'test.out'") == 2
    assert (relay.wakes if relay else 0) == woken
    assert len(notifications) == notified


@pytest.fixture
async def capture_pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    from pathlib import Path

    import order_capture

    async with migrated_pool(fresh_db, Path(order_capture.__file__).parent / "migrations") as p:
        yield p


@pytest.mark.parametrize(("leads", "woken", "notified"), [(True, 1, 0), (False, 0, 1)])
async def test_an_order_placed_wakes_the_leading_relay_of_its_process(
    capture_pool: asyncpg.Pool, leads: bool, woken: int, notified: int
) -> None:
    from order_capture import handlers
    from order_capture.domain import OrderIn
    from tests.support.orders import new_order

    got: list[str] = []

    def listener(*args: object) -> None:
        got.append(str(args[-1]))

    listening = await capture_pool.acquire()
    await listening.add_listener(NOTIFY_CHANNEL, listener)
    try:
        relay = FakeRelay(leads)
        order = OrderIn.model_validate(new_order())
        await handlers.place_order(capture_pool, order, f"key-{uuid.uuid4()}", relay)  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
    finally:
        await listening.remove_listener(NOTIFY_CHANNEL, listener)
        await capture_pool.release(listening)
    assert await capture_pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'oms.orders.events'") == 1
    assert (relay.wakes, len(got)) == (woken, notified)
