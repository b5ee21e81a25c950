"""The batch subscriber's poll, and the consumer lag per topic and partition it reports
(`oms_consumer_lag`) from what the consumer already knows: its fetch position and the high watermark
every fetch response carries. No call to Kafka is made for it, so it is cheap enough to refresh after
every poll (at most every `interval` seconds)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from oms_platform import metrics


class LagGauge:
    """Sets the lag of a consumer's assigned partitions (high watermark minus the position of the next
    record it will fetch: records fetched and being applied are no longer lag) and drops the series of
    partitions it no longer has after a rebalance (they are another replica's to report)."""

    def __init__(self, consumer_name: str, topic_prefix: str = "", interval: float = 1.0):
        self.name, self.prefix, self.interval = consumer_name, topic_prefix, interval
        self._shown: set[tuple[str, str]] = set()
        self._next = 0.0

    def update(self, consumer: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        shown: set[tuple[str, str]] = set()
        for tp, lag in _lags(consumer).items():
            labels = (tp.topic.removeprefix(self.prefix), str(tp.partition))
            metrics.CONSUMER_LAG.labels(self.name, *labels).set(lag)
            shown.add(labels)
        for labels in self._shown - shown:
            metrics.CONSUMER_LAG.remove(self.name, *labels)
        self._shown = shown


def _lags(consumer: Any) -> dict[Any, int]:
    """{partition: lag} of the assigned partitions whose high watermark and position are known (after
    the first fetch of each). aiokafka's public highwater() reads the same assignment state."""
    # Private state (the one highwater() reads): read defensively, so a change in aiokafka loses the
    # gauge, never the consumer (tests/integration/test_consumer_lag.py notices).
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    assignment = getattr(subscription, "assignment", None)
    if assignment is None:
        return {}
    lags = {}
    for tp in assignment.tps:
        state = assignment.state_value(tp)
        if state is not None and state.highwater is not None and state.has_valid_position:
            lags[tp] = max(0, state.highwater - state.position)
    return lags


# aiokafka fetches again for the partitions that have no unconsumed records once the others' have waited
# its prefetch backoff (0.1 s). With a long fetch wait (KAFKA_FETCH_MAX_WAIT_MS) Kafka holds that fetch,
# on quiet partitions, for up to the whole wait, and the busy partitions, once consumed, cannot be
# fetched meanwhile (one fetch in flight per broker): at 5 s the saga ran 316 orders/s against 474
# with 500 ms. Holding every fetch while records wait to be consumed keeps the next fetch of the busy
# partitions immediate (it goes out as the consumer takes them, and overlaps their processing).
HOLD_FETCHES_SECONDS = 3600.0


def hold_fetches_while_unconsumed(consumer: Any) -> bool:
    """Sets the consumer's prefetch backoff (aiokafka's private Fetcher state, read defensively: a change
    in aiokafka loses the setting, never the consumer; tests/unit/test_subscriber.py notices)."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "_prefetch_backoff"):
        return False
    fetcher._prefetch_backoff = HOLD_FETCHES_SECONDS
    return True


class Linger:
    """A batch's window (CONSUMER_LINGER_MS): once a poll has returned records, wait `seconds` and take
    what came meanwhile too, when the records' recent rate says at least one more is likely by then
    and the batch is still small. Every batch costs about the same whatever its size (a transaction,
    the relay's wake-up, a produce, an offset commit), so at a moderate rate (a record every few ms)
    batches of several records cost less per record than one record per batch; that trades this
    much latency per hop for CPU. At a low rate (nothing likely to come) and at a high one (batches
    large already) it does not wait. seconds 0: off."""

    # The rate is the records of the last completed period (at least this long) over its duration.
    PERIOD = 1.0

    def __init__(self, seconds: float, *, below: int = 32):
        self.seconds, self.below = seconds, below
        self.rate = 0.0  # records per second
        self._count, self._since = 0, time.monotonic()

    def counted(self, n: int, now: float) -> None:
        self._count += n
        if now - self._since >= self.PERIOD:
            self.rate = self._count / (now - self._since)
            self._count, self._since = 0, now

    def wanted(self, n: int) -> bool:
        """Whether a batch of n records waits: records are likely within the window and it is small."""
        return 0 < n < self.below and self.seconds > 0 and self.rate * self.seconds >= 1.0


def poll_without_idle_sleep(
    poll_ms: int, max_records: int, lag: LagGauge | None = None, linger: Linger | None = None,
) -> Callable[[Any], Awaitable[tuple]]:
    """The batch subscriber's get_msg (faststream 0.6, pinned in uv.lock; tests/unit/test_subscriber.py
    checks it is the one used): every record available, waiting for the first up to poll_ms, and no
    sleep after an empty poll (the loop polls again at once), and fetches held while records wait to be
    consumed (hold_fetches_while_unconsumed). With a `linger`, a small batch at a steady rate waits for
    the records of the linger window too (Linger). After a poll it refreshes the lag gauge
    from the fetch positions and high watermarks the consumer now knows."""

    held: set[int] = set()  # the consumers (by id) whose fetches are held already

    async def get_msg(consumer: Any) -> tuple:
        if id(consumer) not in held:
            held.add(id(consumer))
            hold_fetches_while_unconsumed(consumer)
        batches = await consumer.getmany(timeout_ms=poll_ms, max_records=max_records)
        if linger is not None and batches:
            n = sum(len(records) for records in batches.values())
            if linger.wanted(n):
                # The records taken, the next fetch is out: what it brings within the window joins them.
                await asyncio.sleep(linger.seconds)
                for tp, records in (await consumer.getmany(timeout_ms=0, max_records=max_records - n)).items():
                    batches.setdefault(tp, []).extend(records)
                    n += len(records)
            linger.counted(n, time.monotonic())
        if lag is not None:
            lag.update(consumer)
        return tuple(rec for records in batches.values() for rec in records)

    return get_msg
