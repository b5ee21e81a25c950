"""The batch subscriber polls without faststream's idle sleep: an empty poll is followed at once by the
next one, so a record arriving to an idle consumer is not held back (at every hop of the saga)."""

import asyncio
import time
from typing import Any

from faststream.kafka import KafkaBroker

from oms_platform.consumer import BatchProcessor, ConsumerSpec, subscribe


class FakeConsumer:
    """getmany as aiokafka's: {partition: [records]}, empty when nothing arrived in time."""

    def __init__(self, answers: list[dict[Any, list[Any]]]):
        self.answers, self.calls = answers, []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        self.calls.append((timeout_ms, max_records))
        return self.answers.pop(0) if self.answers else {}


def _subscriber(poll_ms: int = 500, max_records: int = 300) -> Any:
    spec = ConsumerSpec(name="probe", topics=["test.poll"], handlers={})
    processor = BatchProcessor(spec, pool=None, producer="probe", group_id="probe.group")  # type: ignore[arg-type]
    return subscribe(KafkaBroker("127.0.0.1:1"), processor, max_records=max_records, poll_ms=poll_ms)


async def test_an_empty_poll_returns_at_once_without_sleeping():
    subscriber = _subscriber(poll_ms=500)
    consumer = FakeConsumer([{}])
    started = time.monotonic()
    assert await subscriber.get_msg(consumer) == ()
    # faststream's own get_msg sleeps batch_timeout_ms (here 0.5 s) after an empty poll.
    assert time.monotonic() - started < 0.2
    assert consumer.calls == [(500, 300)]


async def test_records_of_every_partition_come_in_one_batch():
    subscriber = _subscriber()
    consumer = FakeConsumer([{"p0": ["a", "b"], "p1": ["c"]}])
    assert await asyncio.wait_for(subscriber.get_msg(consumer), 1) == ("a", "b", "c")
