"""The batch subscriber: it polls without faststream's idle sleep (an empty poll is followed at once by
the next one, so a record arriving to an idle consumer is not held back at every hop of the saga), and
commits processed offsets at most every commit interval."""

import asyncio
import time
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker

from oms_platform.consumer import BatchProcessor, ConsumerSpec
from oms_platform.offsets import OffsetCommitter
from oms_platform.outbox import Outbox
from oms_platform.subscriber import subscribe


class FakeConsumer:
    """getmany as aiokafka's: {partition: [records]}, empty when nothing arrived in time."""

    def __init__(self, answers: list[dict[Any, list[Any]]]):
        self.answers, self.calls = answers, []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        self.calls.append((timeout_ms, max_records))
        return self.answers.pop(0) if self.answers else {}


def _subscriber(poll_ms: int = 500, max_records: int = 300, linger_ms: int = 0) -> Any:
    spec = ConsumerSpec(name="probe", topics=["test.poll"], handlers={})
    processor = BatchProcessor(spec, pool=None, outbox=Outbox("probe"), group_id="probe.group")  # type: ignore[arg-type]
    return subscribe(KafkaBroker("127.0.0.1:1"), processor, max_records=max_records, poll_ms=poll_ms,
                     linger_ms=linger_ms)


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


async def test_fetches_are_held_while_records_wait_to_be_consumed():
    import inspect
    from types import SimpleNamespace

    from aiokafka.consumer.fetcher import Fetcher

    from oms_platform.consumer_lag import HOLD_FETCHES_SECONDS

    # The private setting changed is still aiokafka's (pinned in uv.lock): its Fetcher keeps it so.
    assert "self._prefetch_backoff = prefetch_backoff" in inspect.getsource(Fetcher.__init__)
    consumer = FakeConsumer([{}])
    consumer._fetcher = SimpleNamespace(_prefetch_backoff=0.1)  # type: ignore[attr-defined]
    await _subscriber().get_msg(consumer)
    assert consumer._fetcher._prefetch_backoff == HOLD_FETCHES_SECONDS  # type: ignore[attr-defined]


async def test_a_small_batch_at_a_steady_rate_takes_the_records_of_the_linger_window_too():
    subscriber = _subscriber(max_records=300, linger_ms=50)
    subscriber.linger.rate = 200.0  # records/s: 10 expected within 50 ms
    consumer = FakeConsumer([{"p0": ["a"]}, {"p0": ["b"], "p1": ["c"]}])
    started = time.monotonic()
    assert await subscriber.get_msg(consumer) == ("a", "b", "c")
    assert time.monotonic() - started >= 0.05
    assert consumer.calls == [(500, 300), (0, 299)]  # the second poll waits for nothing, takes what came


async def test_no_linger_when_nothing_is_likely_to_come_or_the_batch_is_large_or_it_is_off():
    quiet = _subscriber(linger_ms=50)
    quiet.linger.rate = 5.0  # 0.25 records expected within 50 ms: not worth the wait
    consumer = FakeConsumer([{"p0": ["a"]}, {"p0": ["b"]}])
    assert await quiet.get_msg(consumer) == ("a",) and len(consumer.calls) == 1

    busy = _subscriber(linger_ms=50)
    busy.linger.rate = 10_000.0
    consumer = FakeConsumer([{"p0": [str(i) for i in range(busy.linger.below)]}, {"p0": ["b"]}])
    assert len(await busy.get_msg(consumer)) == busy.linger.below and len(consumer.calls) == 1

    assert _subscriber().linger is None  # CONSUMER_LINGER_MS=0: every batch as it comes


def test_the_linger_rate_is_the_records_of_the_last_period():
    from oms_platform.consumer_lag import Linger

    linger = Linger(0.01)
    start = linger._since
    linger.counted(30, start + 0.5)
    assert linger.rate == 0 and not linger.wanted(1)  # the period is not over yet
    linger.counted(70, start + 1.0)
    assert linger.rate == 100.0 and linger.wanted(1)  # 100 records/s: one expected in 10 ms
    linger.counted(1, start + 11.0)  # a record after ten quiet seconds: the rate falls at once
    assert linger.rate == 0.1 and not linger.wanted(1)


class CommitLog:
    def __init__(self, fail: bool = False):
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail = fail

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            raise RuntimeError("rebalanced")
        self.commits.append(dict(offsets))


def _rec(partition: int, offset: int) -> ConsumerRecord:
    return ConsumerRecord("t", partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])


async def test_offsets_are_committed_at_once_then_at_most_every_interval():
    committer, consumer = OffsetCommitter(0.2), CommitLog()
    await committer.processed(consumer, [_rec(0, 5), _rec(1, 9), _rec(0, 6)])
    assert consumer.commits == [{TopicPartition("t", 0): 7, TopicPartition("t", 1): 10}]  # the next to read
    await committer.processed(consumer, [_rec(0, 7)])
    await committer.processed(consumer, [_rec(0, 8), _rec(1, 10)])
    assert len(consumer.commits) == 1  # within the interval: waiting
    await asyncio.sleep(0.35)
    assert consumer.commits[1:] == [{TopicPartition("t", 0): 9, TopicPartition("t", 1): 11}]


async def test_flush_commits_what_is_pending_and_a_failed_commit_is_dropped():
    committer, consumer = OffsetCommitter(60), CommitLog()
    await committer.processed(consumer, [_rec(0, 1)])
    await committer.processed(consumer, [_rec(0, 2)])
    await committer.flush()
    assert consumer.commits == [{TopicPartition("t", 0): 2}, {TopicPartition("t", 0): 3}]
    failing = OffsetCommitter(0)
    await failing.processed(CommitLog(fail=True), [_rec(0, 1)])  # logged; redelivery covers it
    await failing.flush()


async def test_every_batch_is_committed_with_a_zero_interval():
    committer, consumer = OffsetCommitter(0), CommitLog()
    for offset in range(3):
        await committer.processed(consumer, [_rec(0, offset)])
    assert [c[TopicPartition("t", 0)] for c in consumer.commits] == [1, 2, 3]
