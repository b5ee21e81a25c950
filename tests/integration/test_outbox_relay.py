"""The transactional outbox and its relay on real PostgreSQL and Kafka: only committed messages are
published, with key = order id and their headers, in enqueue order per key, once, by one leader."""

import uuid
from collections import defaultdict
from typing import Any

import asyncpg
import orjson
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

from oms_contracts import new_envelope
from oms_contracts.orders import OrderCancellationRequestedV1
from oms_platform.outbox import OutgoingMessage, message
from tests.integration.conftest import Relays
from tests.integration.helpers import enqueue
from tests.support.kafka import TopicReader
from tests.support.polling import eventually

pytestmark = pytest.mark.infra


def _message(topic: str, order_id: uuid.UUID, seq: int, **headers: str) -> OutgoingMessage:
    value = orjson.dumps({"order_id": str(order_id), "seq": seq, "id": uuid.uuid4().hex})
    return OutgoingMessage(topic, str(order_id), value, [("seq", str(seq)), *headers.items()])


async def _all_sent(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) = 0 FROM outbox WHERE parked_at IS NULL")


async def test_rolled_back_messages_are_never_published(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    await relays.start("rollback")
    doomed, kept = uuid.uuid4(), uuid.uuid4()

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [_message(topic, doomed, i) for i in range(3)])
            raise Abort
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [_message(topic, kept, 0)])

    # The relay publishes in id order: once the later, committed message is out, the rolled-back ones
    # would have been too.
    await reader.wait_for(lambda rs: any(r.key == str(kept).encode() for r in rs))
    await reader.drain(1.0)
    assert [r.key for r in reader.records] == [str(kept).encode()]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", str(doomed)) == 0


async def test_committed_messages_are_published_with_key_and_headers_and_marked_sent(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    await relays.start("headers")
    order_id = uuid.uuid4()
    event = OrderCancellationRequestedV1(order_id=order_id, reason="customer asked", requested_by="ops")

    # A remote parent span, as a consumer or an HTTP request would have: its trace must travel along.
    trace_id, span_id = uuid.uuid4().int, uuid.uuid4().int >> 64 or 1
    parent = trace.NonRecordingSpan(trace.SpanContext(
        trace_id=trace_id, span_id=span_id, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    ))
    token = otel_context.attach(trace.set_span_in_context(parent))
    try:
        env = new_envelope(event, producer="test", order_id=order_id)
        msg = message(topic, env)
    finally:
        otel_context.detach(token)
    traceparent = f"00-{trace_id:032x}-{span_id:016x}-01"
    assert dict(msg.headers)["traceparent"] == traceparent
    msg = OutgoingMessage(msg.topic, msg.key, msg.value, [*msg.headers, ("x-custom", "café ✓")])

    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [msg])

    records = await reader.wait_for(lambda rs: len(rs) >= 1)
    await reader.drain(1.0)
    assert len(records) == 1
    rec = records[0]
    assert rec.key == str(order_id).encode()
    headers = dict(rec.headers)
    assert headers["traceparent"] == traceparent.encode()
    assert headers["event_type"] == b"OrderCancellationRequested"
    assert headers["event_version"] == b"1"
    assert headers["content-type"] == b"application/json"
    assert headers["x-custom"] == "café ✓".encode()
    body = orjson.loads(rec.value)
    assert body["event_id"] == str(env.event_id) and body["order_id"] == str(order_id)
    assert body["payload"] == {"order_id": str(order_id), "reason": "customer asked", "requested_by": "ops"}

    await eventually(lambda: _all_sent(pool), what="the outbox row to be marked sent")
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0  # marked sent = deleted


async def test_each_keys_messages_arrive_in_enqueue_order(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    # A small batch size makes the relay go through many batches (its "more waiting" path).
    await relays.start("order", batch_size=16)
    orders = [uuid.uuid4() for _ in range(5)]
    sent: dict[bytes, list[int]] = defaultdict(list)
    seq = 0
    for _tx in range(10):  # 10 transactions of 20 messages, the orders interleaved
        batch = []
        for i in range(20):
            order_id = orders[(i * 3 + _tx) % 5]
            batch.append(_message(topic, order_id, seq))
            sent[str(order_id).encode()].append(seq)
            seq += 1
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, batch)

    await reader.wait_for(lambda rs: len(rs) >= 200, timeout=60)
    await reader.drain(1.0)
    got: dict[bytes, list[int]] = defaultdict(list)
    for rec in reader.records:
        got[rec.key].append(orjson.loads(rec.value)["seq"])
    assert len(reader.records) == 200
    assert got == sent  # every key's messages, all of them, in the order they were enqueued
    await eventually(lambda: _all_sent(pool), what="every row to be marked sent")


async def test_rows_committed_while_the_relay_was_stopped_are_published(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    order_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [_message(topic, order_id, i) for i in range(3)])

    relay = await relays.start("late")
    await reader.wait_for(lambda rs: len(rs) >= 3)

    # Stopped again, then more committed (no relay listens to the notification): published on restart.
    await relays.stop(relay)
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [_message(topic, order_id, i) for i in range(3, 5)])
    relay = await relays.start("late2")

    await reader.wait_for(lambda rs: len(rs) >= 5)
    await reader.drain(1.0)
    assert [orjson.loads(r.value)["seq"] for r in reader.records] == [0, 1, 2, 3, 4]
    await eventually(lambda: _all_sent(pool), what="every row to be marked sent")


async def test_two_relays_on_one_database_one_leads_and_nothing_is_published_twice(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    a, b = await relays.start("a"), await relays.start("b")

    async def one_leader() -> bool:
        return a.is_leader or b.is_leader

    await eventually(one_leader, what="a relay to lead")
    orders = [uuid.uuid4() for _ in range(4)]
    for tx in range(5):
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [_message(topic, orders[i % 4], tx * 10 + i) for i in range(10)])
        assert not (a.is_leader and b.is_leader)
    await reader.wait_for(lambda rs: len(rs) >= 50)
    await reader.drain(1.5)
    assert [a.is_leader, b.is_leader].count(True) == 1
    ids = [orjson.loads(r.value)["id"] for r in reader.records]
    assert len(ids) == 50 and len(set(ids)) == 50

    # The leader goes away: the standby takes over and publishes what is committed next, once.
    leader, standby = (a, b) if a.is_leader else (b, a)
    await relays.stop(leader)
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [_message(topic, orders[0], 100 + i) for i in range(5)])
    await reader.wait_for(lambda rs: len(rs) >= 55)
    await reader.drain(1.0)
    assert standby.is_leader
    ids = [orjson.loads(r.value)["id"] for r in reader.records]
    assert len(ids) == 55 and len(set(ids)) == 55
    await eventually(lambda: _all_sent(pool), what="every row to be marked sent")


async def test_published_rows_are_marked_together_and_when_the_relay_stops(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    relay = await relays.start("marks", mark_interval=30)
    order_id = uuid.uuid4()
    for i in range(3):  # three publishes, each of its own transaction
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [_message(topic, order_id, i)])
        await reader.wait_for(lambda rs, n=i + 1: len(rs) >= n)
    await reader.drain(0.5)
    assert len(reader.records) == 3  # published once each, though none is marked yet (reads skip them)
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 3
    await relays.stop(relay)
    assert await _all_sent(pool)  # stopping marks what was published: a restart sends nothing again


async def test_a_due_mark_rides_on_the_relays_next_read_of_the_outbox(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Marking published rows sent costs no statement of its own while the relay runs: once their
    mark is due, the relay's next read of the outbox (made then at the latest) marks them."""
    executed: list[str] = []
    real_connect = asyncpg.connect

    class Counted:  # the relay's prepared statements, counted (it only fetches them)
        def __init__(self, statement: Any, query: str):
            self.statement, self.query = statement, query

        async def fetch(self, *args: Any) -> Any:
            executed.append(self.query)
            return await self.statement.fetch(*args)

    class Counting(asyncpg.Connection):
        async def prepare(self, query: str, *args: Any, **kwargs: Any) -> Any:
            return Counted(await super().prepare(query, *args, **kwargs), query)

    async def connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        return await real_connect(*args, connection_class=Counting, **kwargs)

    monkeypatch.setattr(asyncpg, "connect", connect)
    relay = await relays.start("rides", mark_interval=0.2)
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [_message(topic, uuid.uuid4(), 0)])
    await reader.wait_for(lambda rs: len(rs) >= 1)
    await eventually(lambda: _all_sent(pool), what="the published row to be marked sent")
    assert executed and not [q for q in executed if q.startswith("DELETE FROM outbox")]
    assert any(q.startswith("WITH marked AS (DELETE FROM outbox") for q in executed)
    await relays.stop(relay)


async def test_the_relay_finds_rows_by_primary_key_never_by_a_sequential_scan(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    """The outbox of a new database has statistics of an empty table, for which the planner prefers
    sequential scans; the relay's reads and deletes still use the primary key (a scan of every page a
    burst left behind would cost far more than the rows it finds)."""
    stats = "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'outbox'"
    seq_before, idx_before = await pool.fetchrow(stats)
    relay = await relays.start("by-key", mark_interval=0.05)
    for i in range(3):
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [_message(topic, uuid.uuid4(), i)])
        await reader.wait_for(lambda rs, n=i + 1: len(rs) >= n)
    await relays.stop(relay)  # its statistics are flushed when its connection closes
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0

    async def scanned() -> Any:
        seq, idx = await pool.fetchrow(stats)
        return (seq, idx) if idx >= idx_before + 3 else None

    seq_after, _ = await eventually(scanned, what="the relay's index scans to be counted", timeout=10)
    assert seq_after == seq_before
