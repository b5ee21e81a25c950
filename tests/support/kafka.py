"""Reading and writing Kafka topics from tests."""

import asyncio
import time
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from oms_platform.kafka import ensure_topics


class TopicReader:
    """Reads a topic from its current end (or the beginning) without a consumer group."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap, self.topic = bootstrap, topic
        self.consumer: AIOKafkaConsumer | None = None
        self.records: list[ConsumerRecord] = []

    async def start(self, *, from_beginning: bool = False) -> "TopicReader":
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                         auto_offset_reset="earliest")
        await self.consumer.start()
        await ensure_topics(self.bootstrap, [self.topic])
        parts = None
        for _ in range(50):
            parts = (await self.consumer._client.fetch_all_metadata()).partitions_for_topic(self.topic)
            if parts:
                break
            await asyncio.sleep(0.1)
        assert parts, f"topic {self.topic} does not exist"
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        if from_beginning:
            await self.consumer.seek_to_beginning(*tps)
        else:
            await self.consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the end offsets now, not at the first read
                await self.consumer.position(tp)
        return self

    async def poll(self, timeout: float = 0.5) -> list[ConsumerRecord]:
        assert self.consumer is not None
        batch = await self.consumer.getmany(timeout_ms=int(timeout * 1000))
        new = [r for rs in batch.values() for r in rs]
        self.records.extend(new)
        return new

    async def wait_for(self, predicate: Callable[[list[ConsumerRecord]], bool], timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.records):
                return self.records
            await self.poll(0.3)
        raise AssertionError(f"timed out waiting on {self.topic}; have {len(self.records)} records")

    async def drain(self, seconds: float = 1.5) -> list[ConsumerRecord]:
        """Keeps reading for a while: to show that nothing more (e.g. no duplicate) arrives."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.poll(0.3)
        return self.records

    def envelopes(self, order_id: str | None = None) -> list[dict]:
        out = [orjson.loads(r.value) for r in self.records]
        return [e for e in out if order_id is None or e.get("order_id") == order_id]

    async def stop(self) -> None:
        if self.consumer:
            await self.consumer.stop()


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes, list]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()
