"""Rows committed in the process whose relay leads are handed to it with their ids and published
without a read of the outbox (Outbox.committed -> OutboxRelay.handoff), on real PostgreSQL and Kafka:
in commit order per key, each once, marked like the rows the relay reads, and mixed with rows other
processes commit (pg_notify, read from the table) without a duplicate or a key out of order."""

import uuid
from collections import defaultdict

import asyncpg
import orjson
import pytest

from oms_platform.outbox import Outbox, OutboxRelay, OutgoingMessage
from tests.integration.conftest import Relays
from tests.support.kafka import TopicReader
from tests.support.polling import eventually

pytestmark = pytest.mark.infra


def _message(topic: str, order_id: uuid.UUID, seq: int) -> OutgoingMessage:
    value = orjson.dumps({"seq": seq, "id": uuid.uuid4().hex})
    return OutgoingMessage(topic, str(order_id), value, [("seq", str(seq))])


async def _leading(relay: OutboxRelay) -> None:
    async def leads_and_read() -> bool:
        return relay.leads and relay.reads >= 1

    await eventually(leads_and_read, what="the relay to lead and make its first read")


async def test_rows_handed_over_are_published_without_a_read_and_marked_when_it_stops(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    # No poll and no mark due during the test: any read would be for the handed rows.
    relay = await relays.start("handoff", poll_interval=60, mark_interval=60)
    await _leading(relay)
    reads = relay.reads
    out, order_id = Outbox("test", relay), uuid.uuid4()
    for tx in range(3):
        async with out.transaction(pool) as uow:
            uow.messages.extend(_message(topic, order_id, tx * 2 + i) for i in range(2))
    await reader.wait_for(lambda rs: len(rs) >= 6)
    await reader.drain(0.5)
    assert [orjson.loads(r.value)["seq"] for r in reader.records] == [0, 1, 2, 3, 4, 5]
    assert relay.reads == reads  # published from what it was handed
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 6  # not marked yet (mark_interval)
    await relays.stop(relay)
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_handed_and_notified_commits_of_the_same_keys_arrive_once_each_in_commit_order(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    relay = await relays.start("mixed", batch_size=4, mark_interval=0.05)
    await _leading(relay)
    here, elsewhere = Outbox("test", relay), Outbox("test")  # elsewhere: another process (pg_notify)
    orders = [uuid.uuid4() for _ in range(3)]
    sent: dict[bytes, list[int]] = defaultdict(list)
    for seq in range(60):
        order_id = orders[seq % 3]
        async with (here if seq % 4 else elsewhere).transaction(pool) as uow:
            uow.messages.append(_message(topic, order_id, seq))
        sent[str(order_id).encode()].append(seq)
    await reader.wait_for(lambda rs: len(rs) >= 60, timeout=30)
    await reader.drain(1.0)
    got: dict[bytes, list[int]] = defaultdict(list)
    for rec in reader.records:
        got[rec.key].append(orjson.loads(rec.value)["seq"])
    assert got == sent  # all, once each, every key in commit order
    assert relay.reads < 60  # the handed rows were not each read back
    await eventually(lambda: _empty(pool), what="every row to be marked")


async def _empty(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) = 0 FROM outbox")
