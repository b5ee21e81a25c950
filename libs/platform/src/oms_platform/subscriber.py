"""A BatchProcessor bound to faststream's Kafka broker: the batch subscriber of every consumer group."""

import asyncio
import logging
from typing import Any

from oms_platform.assignor import CoPartitionedStickyAssignor
from oms_platform.consumer import BatchProcessor
from oms_platform.consumer_lag import LagGauge, Linger, poll_without_idle_sleep
from oms_platform.offsets import OffsetCommitter

log = logging.getLogger(__name__)


def subscribe(
    broker: Any, processor: BatchProcessor, *, max_records: int = 500, auto_offset_reset: str = "earliest",
    session_timeout_ms: int = 10_000, poll_ms: int = 5000, commit_interval: float = 0.2,
    group_instance_id: str | None = None, fetch_max_wait_ms: int = 5000, linger_ms: int = 0,
) -> Any:
    """Binds a BatchProcessor to a faststream KafkaBroker as a batch subscriber. Offsets are
    committed only after the batch's transaction commits (by an OffsetCommitter, at most every
    `commit_interval` seconds: `subscriber.committer`); on an error the batch is sought back and
    redelivered (after a pause, so a database outage is not a busy loop).

    Records are handed over as soon as they arrive: a poll waits up to `poll_ms` for the first one
    and returns at once when there is any. (faststream's own batch poll sleeps another batch_timeout_ms
    after every empty poll, so a record arriving to an idle consumer waited up to that long at every
    hop of the saga; `poll_without_idle_sleep` replaces it.) With `linger_ms`, a small batch at a
    steady rate also takes the records that come within that window (consumer_lag.Linger). The
    envelopes are parsed by the processor, so faststream's own JSON decoding of every record is skipped."""
    from faststream import AckPolicy
    from faststream.message import AckStatus

    subscriber = broker.subscriber(
        *(processor.topic_prefix + t for t in processor.spec.topics),
        group_id=processor.group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=poll_ms,
        auto_offset_reset=auto_offset_reset,
        session_timeout_ms=session_timeout_ms,
        group_instance_id=group_instance_id,
        heartbeat_interval_ms=max(1000, session_timeout_ms // 4),
        fetch_max_wait_ms=fetch_max_wait_ms,  # a long poll: see ServiceSettings.consumer_poll_ms
        # Co-partitioned and sticky (oms_platform.assignor), and alone: aiokafka 0.14 sends one JoinGroup
        # per assignor, each with one more protocol than the last, so with a fallback every join looked
        # to the broker like a member changing its metadata, and groups rebalanced for minutes.
        partition_assignment_strategy=(CoPartitionedStickyAssignor(group_instance_id),),
        ack_policy=AckPolicy.NACK_ON_ERROR,  # an error seeks every partition back to the batch's start
        decoder=_the_message,
    )
    subscriber.linger = Linger(linger_ms / 1000) if linger_ms else None
    subscriber.get_msg = poll_without_idle_sleep(
        poll_ms, max_records, LagGauge(processor.spec.name, processor.topic_prefix), subscriber.linger)
    committer = subscriber.committer = OffsetCommitter(commit_interval)

    @subscriber
    async def _on_batch(message: Any) -> None:  # the KafkaMessage itself (see _the_message)
        records = message.raw_message
        if not isinstance(records, tuple | list):
            records = (records,)
        try:
            await processor.process(records)
        except Exception:
            log.exception("batch of %d failed; it will be redelivered", len(records))
            await asyncio.sleep(1.0)
            raise
        # The offsets go through the committer, not faststream's ack (a commit per batch).
        message.committed = AckStatus.ACKED
        await committer.processed(subscriber.consumer, records)

    return subscriber


async def _the_message(message: Any) -> Any:
    """faststream decoder: the handler gets the message itself (it reads message.raw_message, never a
    decoded body), so with the runtime's apply_types=False no dependency injection runs per batch
    (resolving a `KafkaMessage` parameter through FastDepends ran in a worker thread, every batch)."""
    return message
