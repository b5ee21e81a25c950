"""A consumer batch, an HTTP handler's transaction or an order placed, in the process whose relay leads,
hands its rows (with their ids) to that relay once it has committed, instead of notifying through
pg_notify; otherwise (no relay, or a standby) it notifies. The decision is the Outbox's, whichever way
the messages are written."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from oms_contracts import new_envelope
from oms_contracts.orders import OrderCancellationRequestedV1, OrderStatusChangedV1
from oms_platform.consumer import BatchProcessor, ConsumerSpec, Message, UnitOfWork
from oms_platform.outbox import NOTIFY_CHANNEL, Outbox
from tests.integration.helpers import consumer_record, migrated_pool

pytestmark = pytest.mark.infra


class FakeRelay:
    """What the Outbox asks of its relay: whether it leads, and handoff() of the rows just committed
    with their ids (wake() when it has no ids)."""

    def __init__(self, leads: bool):
        self.leads, self.wakes, self.handed = leads, 0, []

    def wake(self) -> None:
        self.wakes += 1

    def handoff(self, rows: list) -> None:
        self.wakes += 1
        self.handed += rows


async def _handed_are_the_rows(pool: asyncpg.Pool, relay: FakeRelay | None, topic: str) -> None:
    """A leading relay was handed exactly the committed rows: their ids, topics, keys and values."""
    if relay is None or not relay.leads:
        assert relay is None or relay.handed == []
        return
    rows = await pool.fetch("SELECT id, topic, key, value FROM outbox WHERE topic = $1 ORDER BY id", topic)
    assert [(i, m.topic, m.key, m.value) for i, m in relay.handed] == [tuple(r) for r in rows]


# (this process's relay: leading, standby or none; wakes expected, notifications expected)
RELAYS = pytest.mark.parametrize(("leads", "woken", "notified"), [(True, 1, 0), (False, 0, 1), (None, 0, 1)])


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


def _changed(order_id: uuid.UUID) -> OrderStatusChangedV1:
    return OrderStatusChangedV1(order_id=order_id, old_status="pending", new_status="cancelled",
                                changed_at=datetime.now(UTC))


async def _emit(msg: Message, uow: UnitOfWork[None]) -> None:
    uow.emit("test.out", _changed(msg.envelope.order_id))


def _record() -> ConsumerRecord:
    order_id = uuid.uuid4()
    env = new_envelope(OrderCancellationRequestedV1(order_id=order_id, reason="r", requested_by="customer"),
                       producer="test", order_id=order_id)
    return consumer_record("test.in", env)


@RELAYS
async def test_a_batch_wakes_its_leading_relay_directly_and_notifies_otherwise(
    pool: asyncpg.Pool, notifications: list[str], leads: bool | None, woken: int, notified: int
) -> None:
    relay = None if leads is None else FakeRelay(leads)
    spec = ConsumerSpec(name="c", topics=["test.in"], handlers={"OrderCancellationRequested": _emit})
    processor = BatchProcessor(spec, pool, outbox=Outbox("test", relay), group_id="g")  # type: ignore[arg-type]
    await processor.process([_record(), _record()])
    await asyncio.sleep(0.3)  # a notification would have arrived by now
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'test.out'") == 2
    assert (relay.wakes if relay else 0) == woken
    assert len(notifications) == notified
    await _handed_are_the_rows(pool, relay, "test.out")


@RELAYS
async def test_a_transaction_of_an_http_handler_wakes_or_notifies_the_same_way(
    pool: asyncpg.Pool, notifications: list[str], leads: bool | None, woken: int, notified: int
) -> None:
    relay = None if leads is None else FakeRelay(leads)
    outbox = Outbox("test", relay)  # type: ignore[arg-type]
    async with outbox.transaction(pool) as uow:
        uow.emit("test.out", _changed(uuid.uuid4()), order_id=uuid.uuid4())
        uow.emit("test.out", _changed(uuid.uuid4()), order_id=uuid.uuid4())
    with pytest.raises(RuntimeError):  # refused: nothing stored, nothing sent, nobody woken
        async with outbox.transaction(pool) as uow:
            uow.emit("test.out", _changed(uuid.uuid4()), order_id=uuid.uuid4())
            raise RuntimeError("refused")
    await asyncio.sleep(0.3)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'test.out'") == 2
    assert (relay.wakes if relay else 0) == woken
    assert len(notifications) == notified
    await _handed_are_the_rows(pool, relay, "test.out")


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
        await handlers.place_order(capture_pool, Outbox("order-capture", relay), order,  # type: ignore[arg-type]
                                   f"key-{uuid.uuid4()}")
        await asyncio.sleep(0.3)
    finally:
        await listening.remove_listener(NOTIFY_CHANNEL, listener)
        await capture_pool.release(listening)
    assert await capture_pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'oms.orders.events'") == 1
    assert (relay.wakes, len(got)) == (woken, notified)
    await _handed_are_the_rows(capture_pool, relay, "oms.orders.events")
