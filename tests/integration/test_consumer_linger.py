"""CONSUMER_LINGER_MS on real Kafka: a poll that returned a record at a steady rate also takes the
records that arrive within the linger window (the next fetch goes out as the first records are taken,
with the services' long fetch wait), so they are one batch; without the linger they are two."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from oms_platform.consumer_lag import Linger, poll_without_idle_sleep
from oms_platform.kafka import ensure_topics
from tests.support.infra import Infra

pytestmark = pytest.mark.infra


async def _first_batch(infra: Infra, linger: Linger | None) -> list[bytes]:
    """Record "a", then "b" 0.3 s after "a" was produced: the values of the first batch polled."""
    topic = f"linger-{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra.kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    # As the services poll: a long fetch wait, answered as soon as a record comes.
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap, group_id=topic,
                                auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=5000)
    await producer.start()
    await consumer.start()
    try:
        while not consumer.assignment():  # joined: the fetch for "a" is waiting at the broker
            await consumer.getmany(timeout_ms=100)
        get_msg = poll_without_idle_sleep(5000, 500, None, linger)
        poll = asyncio.create_task(get_msg(consumer))
        await asyncio.sleep(0.2)
        await producer.send_and_wait(topic, b"a")
        await asyncio.sleep(0.3)
        await producer.send_and_wait(topic, b"b")
        return [r.value for r in await asyncio.wait_for(poll, 10)]
    finally:
        await consumer.stop()
        await producer.stop()


async def test_a_small_batch_at_a_steady_rate_waits_for_the_records_of_its_window(infra: Infra) -> None:
    linger = Linger(1.5)
    linger.rate = 10.0  # records/s seen lately: 15 expected within the window
    assert await _first_batch(infra, linger) == [b"a", b"b"]


async def test_without_a_linger_each_record_is_its_own_batch(infra: Infra) -> None:
    assert await _first_batch(infra, None) == [b"a"]
