"""Replicas of one consumer group on real Kafka with the platform's assignor: partition p of every
topic goes to one member (one order's messages from all the group's topics meet in one replica), and a
member leaving moves only its own partitions."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from oms_platform.assignor import CoPartitionedStickyAssignor
from oms_platform.kafka import ensure_topics
from tests.support.infra import Infra

pytestmark = pytest.mark.infra

# Not a multiple of the members: round-robin over all topic-partitions would split an order's partitions.
PARTITIONS = 4


def numbers(consumer: AIOKafkaConsumer, topics: list[str]) -> list[set[int]]:
    assigned = consumer.assignment()
    return [{tp.partition for tp in assigned if tp.topic == t} for t in topics]


async def settled(consumers: list[AIOKafkaConsumer], topics: list[str], timeout: float = 60) -> None:
    """Polls every member until together they hold every partition of every topic exactly once."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await asyncio.gather(*(c.getmany(timeout_ms=200) for c in consumers))
        held = [tp for c in consumers for tp in c.assignment()]
        if len(held) == len(set(held)) == PARTITIONS * len(topics):
            return
        assert asyncio.get_running_loop().time() < deadline, f"group never settled: {held}"


async def test_replicas_get_co_partitioned_shares_and_keep_them_when_one_leaves(infra: Infra) -> None:
    topics = [f"assignor-{uuid.uuid4().hex[:8]}-{name}" for name in ("orders", "stock")]
    await ensure_topics(infra.kafka_bootstrap, topics, partitions=PARTITIONS)
    group = f"assignor-test-{uuid.uuid4().hex[:8]}"
    consumers = [AIOKafkaConsumer(*topics, bootstrap_servers=infra.kafka_bootstrap, group_id=group,
                                  partition_assignment_strategy=(CoPartitionedStickyAssignor(),),
                                  session_timeout_ms=10_000, heartbeat_interval_ms=1_000)
                 for _ in range(3)]
    try:
        for c in consumers:
            await c.start()
        await settled(consumers, topics)
        before = {}
        for i, c in enumerate(consumers):
            orders, stock = numbers(c, topics)
            assert orders == stock and len(orders) in (1, 2), (orders, stock)
            before[i] = orders

        await consumers[1].stop()
        await settled([consumers[0], consumers[2]], topics)
        for i in (0, 2):
            orders, stock = numbers(consumers[i], topics)
            assert orders == stock and len(orders) == 2
            assert before[i] <= orders  # kept its own, took one of the leaver's
    finally:
        for c in consumers:
            await c.stop()
