"""Offsets of a batch consumer, committed after its batches' transactions (oms_platform.consumer)."""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord

log = logging.getLogger(__name__)


class OffsetCommitter:
    """Commits a consumer's processed offsets at most every `interval` seconds (0: after every batch).

    A batch's effects and its inbox rows are committed to PostgreSQL before its offsets are recorded
    here, so an offset committed late only means more redelivery after a crash or a rebalance (at
    most `interval` of batches), which the inbox makes harmless; it saves the Kafka round trip and the
    broker's write of every small batch's offsets. The offsets committed are the processed ones
    (never a fetched batch not yet applied), and `flush` commits what is left when the service stops."""

    def __init__(self, interval: float):
        self.interval = interval
        self.consumer: Any = None
        self._pending: dict[Any, int] = {}
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None

    async def processed(self, consumer: Any, records: Sequence[ConsumerRecord]) -> None:
        from aiokafka import TopicPartition

        self.consumer = consumer
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            self._pending[tp] = max(self._pending.get(tp, 0), rec.offset + 1)
        loop = asyncio.get_running_loop()
        if loop.time() - self._last >= self.interval:
            await self.flush()
        elif self._timer is None:
            self._timer = loop.call_at(self._last + self.interval, self._commit_later)

    def _commit_later(self) -> None:
        self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.flush())

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending or self.consumer is None:
            return
        offsets, self._pending = self._pending, {}
        self._last = asyncio.get_running_loop().time()
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - e.g. partitions moved to another member: it redelivers them
            log.info("offsets %s not committed (%s: %s); those batches may be redelivered",
                     {f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()}, type(exc).__name__, exc)
