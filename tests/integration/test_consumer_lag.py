"""oms_consumer_lag on real Kafka: the high watermark minus the consumer's position, per partition it
holds, from what the consumer learnt by fetching (aiokafka's private assignment state: this test
notices when a new aiokafka moves it); a partition it no longer holds loses its series."""

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from oms_platform.consumer_lag import LagGauge
from oms_platform.kafka import ensure_topics
from oms_platform.metrics import CONSUMER_LAG
from tests.support.infra import Infra

pytestmark = pytest.mark.infra


def lag_of(consumer: str, topic: str, partition: int) -> float | None:
    return next((s.value for m in CONSUMER_LAG.collect() for s in m.samples
                 if s.labels == {"consumer": consumer, "topic": topic, "partition": str(partition)}), None)


async def test_lag_is_the_records_not_yet_fetched_and_goes_with_the_partition(infra: Infra) -> None:
    prefix = f"lag-{uuid.uuid4().hex[:8]}."
    topic = "probe"
    await ensure_topics(infra.kafka_bootstrap, [prefix + topic], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(prefix + topic, f"{i}".encode(), partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    consumer.assign([TopicPartition(prefix + topic, 0), TopicPartition(prefix + topic, 1)])
    await consumer.start()
    gauge = LagGauge("probe", topic_prefix=prefix, interval=0)
    try:
        fetched = 0
        while fetched == 0:
            fetched = sum(len(r) for r in (await consumer.getmany(timeout_ms=1000, max_records=3)).values())
        gauge.update(consumer)
        assert lag_of("probe", topic, 0) == 10 - fetched
        fetched_all = fetched
        while fetched_all < 10:
            fetched_all += sum(len(r) for r in (await consumer.getmany(timeout_ms=1000)).values())
        await consumer.getmany(timeout_ms=500)  # a fetch after the last record: the position is the end
        gauge.update(consumer)
        assert lag_of("probe", topic, 0) == 0

        consumer.assign([TopicPartition(prefix + topic, 1)])  # partition 0 went elsewhere
        await consumer.getmany(timeout_ms=500)
        gauge.update(consumer)
        assert lag_of("probe", topic, 0) is None
    finally:
        await consumer.stop()
