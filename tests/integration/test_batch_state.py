"""A consumer's batch state (ConsumerSpec.batch_state) on a real database: made fresh per batch, loaded
once with the batch's events before the handlers, which see it as uow.state, and flushed once after
them; after a handler failure, each message's attempt has a state of its own, loaded for it and
flushed inside its savepoint, so nothing a failed attempt decided in memory survives it."""

import uuid
from collections import Counter
from typing import Any

import asyncpg
import pytest

from oms_contracts import Envelope, new_envelope
from oms_contracts.orders import OrderCancellationRequestedV1
from oms_platform.consumer import BatchProcessor, ConsumerSpec, Message, UnitOfWork
from oms_platform.outbox import Outbox
from tests.integration.helpers import consumer_record

pytestmark = pytest.mark.infra


class Recorder:
    """Records what the platform calls; flush writes the ids the handlers decided on."""

    calls: list[tuple[str, list[uuid.UUID]]] = []

    def __init__(self) -> None:
        self.decided: list[uuid.UUID] = []

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        Recorder.calls.append(("load", [e.event_id for e in envelopes]))

    async def flush(self, conn: asyncpg.Connection) -> None:
        Recorder.calls.append(("flush", self.decided))
        await conn.execute("INSERT INTO decided SELECT unnest($1::uuid[])", self.decided)


@pytest.fixture
async def decided_pool(pool: asyncpg.Pool) -> asyncpg.Pool:
    await pool.execute("CREATE TABLE decided (event_id uuid NOT NULL)")
    Recorder.calls = []
    return pool


def _processor(pool: asyncpg.Pool, fail_once: set[uuid.UUID]) -> BatchProcessor:
    seen: Counter[uuid.UUID] = Counter()

    async def decide(msg: Message, uow: UnitOfWork[Recorder]) -> None:
        assert isinstance(uow.state, Recorder)
        uow.state.decided.append(msg.envelope.event_id)  # decided in memory, written by flush
        seen[msg.envelope.event_id] += 1
        if msg.envelope.event_id in fail_once and seen[msg.envelope.event_id] == 1:
            raise RuntimeError("transient")

    spec = ConsumerSpec(name="c", topics=["test.in"], handlers={"OrderCancellationRequested": decide},
                        batch_state=Recorder)
    return BatchProcessor(spec, pool, outbox=Outbox("test"), group_id="g", backoff=0.01)


def _events(n: int) -> list[Any]:
    out = []
    for _ in range(n):
        order_id = uuid.uuid4()
        out.append(new_envelope(OrderCancellationRequestedV1(order_id=order_id, reason="r", requested_by="x"),
                                producer="test", order_id=order_id))
    return out


async def _decided(pool: asyncpg.Pool) -> Counter[uuid.UUID]:
    return Counter(r["event_id"] for r in await pool.fetch("SELECT event_id FROM decided"))


async def test_a_batch_loads_its_state_once_and_flushes_it_once(decided_pool: asyncpg.Pool) -> None:
    a, b, c = _events(3)
    await _processor(decided_pool, set()).process([consumer_record("test.in", e, i) for i, e in enumerate((a, b, c))])
    ids = [a.event_id, b.event_id, c.event_id]
    assert Recorder.calls == [("load", ids), ("flush", ids)]
    assert await _decided(decided_pool) == Counter(ids)


async def test_after_a_failure_each_attempt_has_a_state_of_its_own(decided_pool: asyncpg.Pool) -> None:
    a, b, c = _events(3)
    await _processor(decided_pool, {b.event_id}).process(
        [consumer_record("test.in", e, i) for i, e in enumerate((a, b, c))])
    ids = [a.event_id, b.event_id, c.event_id]
    assert Recorder.calls == [
        ("load", ids),  # the fast path, which fails at b (nothing flushed, all rolled back)
        ("load", ids),  # message by message: the batch's locks first
        ("load", [a.event_id]), ("flush", [a.event_id]),
        ("load", [b.event_id]), ("flush", [b.event_id]),  # b's retry, from a fresh state
        ("load", [c.event_id]), ("flush", [c.event_id]),
    ]
    assert await _decided(decided_pool) == Counter(ids)  # each once: the failed attempt left nothing


POISON: set[uuid.UUID] = set()


class RefusesPoison(Recorder):
    """Its load or flush fails whenever a poisoned event is among its messages (as a value the
    database refuses would): batch-level code failing because of one message."""

    fail_in = "flush"

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        await super().load(conn, envelopes)
        if self.fail_in == "load" and POISON & {e.event_id for e in envelopes}:
            await conn.execute("SELECT 1/0")

    async def flush(self, conn: asyncpg.Connection) -> None:
        if self.fail_in == "flush" and POISON & set(self.decided):
            await conn.execute("SELECT 1/0")
        await super().flush(conn)


class RefusesPoisonOnLoad(RefusesPoison):
    fail_in = "load"


@pytest.mark.parametrize("state", [RefusesPoison, RefusesPoisonOnLoad], ids=["flush", "load"])
async def test_a_batch_state_failing_for_one_message_dead_letters_that_message_alone(
    decided_pool: asyncpg.Pool, state: type[Recorder],
) -> None:
    """Issue 13, 2a: a load or flush error is isolated per message like a handler's (it was raised as the
    batch's, which was redelivered for ever and stalled its partitions)."""
    a, b, c = _events(3)
    POISON.clear()
    POISON.add(b.event_id)
    processor = _processor(decided_pool, set())
    processor.spec.batch_state = state
    await processor.process([consumer_record("test.in", e, i) for i, e in enumerate((a, b, c))])
    assert await _decided(decided_pool) == Counter([a.event_id, c.event_id])
    dead = await decided_pool.fetch("SELECT value FROM outbox WHERE topic = 'test.in.dlq'")
    assert [Envelope.model_validate_json(r["value"]).event_id for r in dead] == [b.event_id]
    claimed = await decided_pool.fetch("SELECT event_id FROM inbox WHERE consumer = 'g'")
    assert {r["event_id"] for r in claimed} == {a.event_id, b.event_id, c.event_id}
