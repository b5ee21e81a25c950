"""The relay under failure, on real PostgreSQL and Kafka: a row Kafka refuses for good is parked and
does not hold back the rows after it; after a database outage the relay resumes within about a
second and starts its next outage with a short backoff; the inbox is pruned by age; topics get the
partition, replication and min.insync.replicas settings."""

import asyncio
import time
import uuid

import asyncpg
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from oms_platform import metrics
from oms_platform.inbox import prune_inbox
from oms_platform.kafka import ensure_topics, topic_settings
from oms_platform.outbox import MAX_BACKOFF, OutgoingMessage
from tests.integration.conftest import Relays
from tests.integration.helpers import enqueue
from tests.support.infra import Infra
from tests.support.kafka import TopicReader
from tests.support.polling import eventually

pytestmark = pytest.mark.infra


def _message(topic: str, key: str, seq: int, size: int = 0) -> OutgoingMessage:
    return OutgoingMessage(topic, key, orjson.dumps({"seq": seq, "pad": "x" * size}), [("seq", str(seq))])


async def test_a_row_kafka_refuses_is_parked_and_the_rows_after_it_flow(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays
) -> None:
    parked_before = metrics.OUTBOX_PARKED.labels(topic)._value.get()
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [
            _message(topic, "a", 1), _message(topic, "a", 2, size=2 * 1024 * 1024),  # over Kafka's 1 MiB
            _message(topic, "b", 3), _message(topic, "a", 4),
        ])
    await relays.start("park")
    await reader.wait_for(lambda rs: {r.value and orjson.loads(r.value)["seq"] for r in rs} >= {1, 3, 4})
    await reader.drain(2.0)  # the refused row is not retried, and nothing is published twice
    assert sorted(orjson.loads(r.value)["seq"] for r in reader.records) == [1, 3, 4]
    row = await pool.fetchrow("SELECT parked_at, last_error FROM outbox WHERE octet_length(value) > 1000000")
    assert row["parked_at"] is not None  # kept, not deleted as sent
    assert "TooLarge" in row["last_error"]
    assert metrics.OUTBOX_PARKED.labels(topic)._value.get() == parked_before + 1
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE parked_at IS NULL") == 0


async def test_a_batch_the_broker_refuses_is_sent_again_row_by_row_and_only_the_row_at_fault_is_parked(
    pool: asyncpg.Pool, infra: Infra, relays: Relays
) -> None:
    # The relay sends a record batch per partition. The broker refuses a whole batch when one row is
    # over the topic's max.message.bytes (below the producer's own limit, so only the broker knows):
    # every row of the batch fails, and the relay must find the one at fault rather than park them all.
    topic = f"test.small.{uuid.uuid4().hex}"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "4000"})])
    finally:
        await admin.close()
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [_message(topic, "a", 1), _message(topic, "a", 2, size=10_000),
                             _message(topic, "b", 3), _message(topic, "a", 4)])
    reader = await TopicReader(infra.kafka_bootstrap, topic).start(from_beginning=True)
    try:
        await relays.start("refused-batch")
        await reader.wait_for(lambda rs: {r.value and orjson.loads(r.value)["seq"] for r in rs} >= {1, 3, 4})
        await reader.drain(1.0)
        assert [orjson.loads(r.value)["seq"] for r in reader.records] == [1, 3, 4]  # in order, once each
    finally:
        await reader.stop()
    row = await pool.fetchrow("SELECT parked_at, last_error FROM outbox WHERE octet_length(value) > 10000")
    assert row["parked_at"] is not None and "TooLarge" in row["last_error"]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1  # the others were published and deleted


async def _refuse_connections(admin_dsn: str, database: str, refuse: bool) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"false" if refuse else "true"}')
        if refuse:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database)
    finally:
        await conn.close()


async def test_after_a_database_outage_the_relay_resumes_within_a_second(
    fresh_db: str, pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays, infra: Infra
) -> None:
    relay = await relays.start("outage")
    await eventually(lambda: asyncio.sleep(0, relay.is_leader), what="the relay leads")
    database = fresh_db.rpartition("/")[2]
    await _refuse_connections(infra.pg_admin_dsn, database, True)
    await asyncio.sleep(6)  # long enough for an uncapped backoff to grow to several seconds
    assert relay._failing_since is not None and relay._backoff <= MAX_BACKOFF
    await _refuse_connections(infra.pg_admin_dsn, database, False)
    await pool.expire_connections()
    back = time.monotonic()
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [_message(topic, "k", 1)])
    await reader.wait_for(lambda rs: len(rs) >= 1, timeout=10)
    assert time.monotonic() - back < MAX_BACKOFF + 1.0
    # The failure streak is over: a next outage starts from a short backoff again.
    await eventually(lambda: asyncio.sleep(0, relay._failing_since is None), what="the relay recovered")
    assert relay._backoff < 0.2


async def test_the_inbox_is_pruned_by_age(pool: asyncpg.Pool) -> None:
    old, new = [uuid.uuid4() for _ in range(5)], [uuid.uuid4() for _ in range(3)]
    await pool.execute(
        "INSERT INTO inbox (consumer, event_id, processed_at) SELECT 'c', id, now() - interval '8 days' "
        "FROM unnest($1::uuid[]) AS id", old)
    await pool.execute("INSERT INTO inbox (consumer, event_id) SELECT 'c', id FROM unnest($1::uuid[]) AS id", new)
    async with pool.acquire() as conn:
        assert await prune_inbox(conn, 7 * 86400, chunk=2) == 5
    assert {r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox")} == set(new)


def test_topic_settings_follow_the_cluster_unless_configured() -> None:
    assert topic_settings(1, None, None) == (1, 1)
    assert topic_settings(3, None, None) == (3, 2)
    assert topic_settings(5, None, None) == (3, 2)
    assert topic_settings(5, 5, 3) == (5, 3)
    with pytest.raises(RuntimeError, match="needs 3 brokers"):
        topic_settings(1, 3, None)
    with pytest.raises(RuntimeError, match="more than the replication factor"):
        topic_settings(3, 2, 3)


async def test_topics_are_created_with_the_partitions_and_min_insync_replicas(infra: Infra) -> None:
    name = f"test.settings.{uuid.uuid4().hex}"
    await ensure_topics(infra.kafka_bootstrap, [name], partitions=4)
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([name])
        assert len(described[0]["partitions"]) == 4
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        entries = {e[0]: e[1] for e in configs[0].resources[0][4]}
        assert entries["min.insync.replicas"] == "1"
    finally:
        await admin.close()
    with pytest.raises(RuntimeError, match="needs 2 brokers"):
        await ensure_topics(infra.kafka_bootstrap, [f"{name}.b"], replication_factor=2)


async def test_the_unsent_gauges_follow_the_backlog(
    pool: asyncpg.Pool, topic: str, reader: TopicReader, relays: Relays, monkeypatch: pytest.MonkeyPatch
) -> None:
    """oms_outbox_unsent counts the backlog (a read that fills batch_size counts it all) and
    oms_outbox_oldest_unsent_age_seconds is the oldest unsent row's age; both go to 0 once published."""
    seen: dict[str, list[float]] = {"unsent": [], "age": []}
    for name, gauge in (("unsent", metrics.OUTBOX_LAG), ("age", metrics.OUTBOX_OLDEST_AGE)):
        def record(value: float, _set=gauge.set, _seen=seen[name]) -> None:
            _seen.append(value)
            _set(value)
        monkeypatch.setattr(gauge, "set", record)
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [_message(topic, "a", seq) for seq in range(3)])
    await pool.execute("UPDATE outbox SET created_at = now() - interval '30 seconds'")
    await relays.start("gauges", batch_size=2)
    await reader.wait_for(lambda rs: len(rs) == 3)

    async def drained() -> bool:
        return metrics.OUTBOX_LAG._value.get() == 0 and metrics.OUTBOX_OLDEST_AGE._value.get() == 0

    await eventually(drained, timeout=10, what="the gauges to fall to 0")
    assert seen["unsent"][0] == 3  # the first read was full: the backlog was counted
    assert 30 <= seen["age"][0] < 60
