"""The outbox relay's Kafka side: its producer, and the publishing of the rows of one read of the
outbox as one record batch per partition (aiokafka's create_batch and send_batch) rather than one
send() per row. A send() cost a coroutine, a metadata check, a partition hash, a future and its
callback for every row (measured: the orchestrator's CPU per order at the maximum fell by about 3%).

Rows go to the partitions aiokafka's default partitioner (Kafka's own murmur2) gives their keys, in
id order within each partition, so an order's messages keep their order. A row over max_request_size
is refused before sending, as send() refuses it. A batch the broker refuses for good (e.g. one row over
the topic's max.message.bytes) fails every row in it, and leaves the idempotent producer's sequence
number for that partition spent (every later batch would fail as out of order): the producer is then
replaced, and the rows not acknowledged are sent again one at a time, so only the row at fault is parked.
"""

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from oms_platform import faults, metrics, telemetry

log = logging.getLogger(__name__)

# Errors Kafka gives for one message that no retry can fix: the row is parked, the rest flows.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordTooLargeError, kafka_errors.InvalidTopicError,
    kafka_errors.CorruptRecordException, kafka_errors.UnsupportedForMessageFormatError,
)
MAX_REQUEST_SIZE = 1024 * 1024  # aiokafka's default, given to the producer: rows are checked against it here


@functools.lru_cache(maxsize=1 << 16)
def key_hash(key: bytes) -> int:
    """The partitioning hash of aiokafka's DefaultPartitioner (Kafka's murmur2, positive), remembered:
    it is pure Python (3% of the orchestrator's CPU), and a saga sends several messages per order."""
    return murmur2(key) & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(slots=True)
class Submitted:
    """One record batch on its way: the indices of its messages (in what was published), and the
    future set when the broker acknowledges it (or failed with the batch's error)."""

    indices: list[int] = field(default_factory=list)
    future: "asyncio.Future[Any] | None" = None


async def send_batches(
    producer: AIOKafkaProducer, messages: Sequence[Outgoing], max_request_size: int = MAX_REQUEST_SIZE
) -> tuple[list[Submitted], dict[int, BaseException]]:
    """Queues the messages, a record batch per partition (more when one fills up), without waiting for
    Kafka. Returns the batches, and the messages refused before sending (index -> error)."""
    refused: dict[int, BaseException] = {}
    partitions: dict[str, list[int]] = {}
    for topic in {m.topic for m in messages}:
        try:
            partitions[topic] = sorted(await producer.partitions_for(topic))
        except Exception as exc:  # noqa: BLE001 - e.g. an invalid topic name: the caller decides
            refused.update((i, exc) for i, m in enumerate(messages) if m.topic == topic)
    submitted: list[Submitted] = []
    open_batches: dict[tuple[str, int], tuple[Any, Submitted]] = {}
    for i, m in enumerate(messages):
        if i in refused:
            continue
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(m.key, m.value, m.headers)
        if size > max_request_size:
            refused[i] = kafka_errors.MessageSizeTooLargeError(
                f"the message is {size} bytes when serialized, over max_request_size {max_request_size}")
            continue
        ps = partitions[m.topic]
        tp = (m.topic, ps[key_hash(m.key) % len(ps)])  # as DefaultPartitioner does
        entry = open_batches.get(tp)
        if entry is not None and entry[0].append(timestamp=None, key=m.key, value=m.value, headers=m.headers) is None:
            await _submit(producer, tp, entry)  # full: send it, start the next
            entry = None
        if entry is None:
            entry = open_batches[tp] = (producer.create_batch(), Submitted())
            submitted.append(entry[1])
            # An empty batch takes any message (its size was checked above).
            entry[0].append(timestamp=None, key=m.key, value=m.value, headers=m.headers)
        entry[1].indices.append(i)
    for tp, entry in open_batches.items():
        await _submit(producer, tp, entry)
    return submitted, refused


async def _submit(producer: AIOKafkaProducer, tp: tuple[str, int], entry: tuple[Any, Submitted]) -> None:
    batch, sub = entry
    batch.close()  # nothing else is appended to it
    sub.future = await producer.send_batch(batch, tp[0], partition=tp[1])


class RelayPublisher:
    """The relay's producer and its publishing of rows read from the outbox."""

    def __init__(self, bootstrap_servers: str, client_id: str, topic_prefix: str):
        self.bootstrap_servers, self.client_id = bootstrap_servers, client_id
        self.topic_prefix = topic_prefix  # rows hold the topics of CONTRACT.md; Kafka gets prefix + topic
        self.producer: AIOKafkaProducer | None = None
        self._tracer = telemetry.tracer("oms.outbox")

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,  # broker drops producer retries' duplicates, keeps order
            linger_ms=2,
            max_batch_size=256 * 1024,
            max_request_size=MAX_REQUEST_SIZE,
            compression_type=None,
        )
        await producer.start()
        self.producer = producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def _replace_producer(self) -> None:
        """A new producer (a new producer id, sequence numbers from zero) after the broker refused a batch."""
        old = self.producer
        await self.start()
        if old is not None:
            await old.stop()

    async def publish(self, rows: list[asyncpg.Record]) -> dict[int, str]:
        """Publishes the rows (a record batch per partition, all queued before any wait) and returns those
        Kafka refused for good (id -> error), to be parked; any other failure raises, and the read is
        published again (same event ids)."""
        faults.crash_point("relay.before_publish")
        spans: list[Any] | None = [] if telemetry.enabled() else None  # no per-message work when nothing is exported
        outgoing = []
        for r in rows:
            headers = [(k, v.encode()) for k, v in r["headers"]]
            if spans is not None:
                headers = self._publish_span(r["topic"], r["key"], headers, spans)
            outgoing.append(Outgoing(self.topic_prefix + r["topic"], r["key"].encode(), r["value"], headers))
        try:
            parked, again, spent = await self._send(rows, outgoing)
            for i in again:  # after a refused batch: one row at a time, each waited for
                if spent:
                    await self._replace_producer()
                more, _, spent = await self._send([rows[i]], [outgoing[i]])
                parked.update(more)
            if spent:
                await self._replace_producer()
        finally:
            for span in spans or ():
                span.end()
        faults.crash_point("relay.after_publish")
        return parked

    async def _send(self, rows: list[asyncpg.Record],
                    outgoing: list[Outgoing]) -> tuple[dict[int, str], list[int], bool]:
        """Sends and waits. Returns the rows to park (id -> error); when the broker refused a batch for
        good, the indices of the rows to send again one by one and True (the producer is spent)."""
        assert self.producer is not None
        submitted, refused = await send_batches(self.producer, outgoing)
        parked = {rows[i]["id"]: self._parked(rows[i], e)
                  for i, e in refused.items() if isinstance(e, PERMANENT_ERRORS)}
        failure = next((e for e in refused.values() if not isinstance(e, PERMANENT_ERRORS)), None)
        results = await asyncio.gather(*(s.future for s in submitted), return_exceptions=True)  # type: ignore[arg-type]
        spent = any(isinstance(r, PERMANENT_ERRORS) for r in results)
        again: list[int] = []
        sent: Counter[str] = Counter()  # rows acknowledged, per topic
        for sub, result in zip(submitted, results, strict=True):
            if isinstance(result, PERMANENT_ERRORS) and len(sub.indices) == 1:
                parked[rows[sub.indices[0]]["id"]] = self._parked(rows[sub.indices[0]], result)
            elif isinstance(result, BaseException) and spent:  # the refused batch, or one failed after it
                again += sub.indices
            elif isinstance(result, BaseException):
                failure = failure or result
            else:
                sent.update(rows[i]["topic"] for i in sub.indices)
        for topic, n in sent.items():
            metrics.child(metrics.OUTBOX_PUBLISHED, topic).inc(n)
        if failure is not None:
            raise failure
        return parked, sorted(again), spent

    def _publish_span(self, topic: str, key: str, headers: list[tuple[str, bytes]], spans: list) -> list:
        """A producer span continuing the trace the row was written in; the message carries the span's
        own traceparent, so consumers' spans are its children (capture -> relay -> Kafka -> consumer)."""
        span = self._tracer.start_span(
            f"publish {topic}", context=telemetry.extract_context(headers), kind=telemetry.SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic, telemetry.ORDER_ID: key},
        )
        spans.append(span)
        parent = telemetry.traceparent(span).encode()
        return [(k, v) for k, v in headers if k != "traceparent"] + [("traceparent", parent)]

    @staticmethod
    def _parked(row: asyncpg.Record, exc: BaseException) -> str:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        metrics.OUTBOX_PARKED.labels(row["topic"]).inc()
        log.error("outbox row %d (topic %s, key %s, %d bytes) refused by Kafka for good, parked: %s",
                  row["id"], row["topic"], row["key"], len(row["value"]), error)
        return error
