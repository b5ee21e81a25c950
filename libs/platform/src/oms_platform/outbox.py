"""Transactional outbox: messages are written in the same transaction as the state change, and a relay
publishes them to Kafka (key = order id, in commit order per order) and marks them sent.

A crash anywhere between commit and publish loses nothing: unsent rows stay until published. A crash
between publish and marking sent publishes those rows again, with the same event_id, which the
consumers' inbox drops; the relay therefore delivers at least once and consumers apply exactly once.
Published rows are marked sent at most every `mark_interval` (one UPDATE for all of them, not one per
publish) and when the relay stops.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from pydantic import BaseModel

from oms_contracts import Envelope, new_envelope
from oms_platform import db, faults, metrics, telemetry

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "oms_outbox"
# One relay per database publishes at a time (it holds this advisory lock); a second instance of
# the service waits as a standby. One publisher keeps each order's messages in commit order.
_RELAY_LOCK = 0x0A15_0002
# Errors Kafka gives for one message that no retry can fix: the row is parked, the rest flows.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.CorruptRecordException,
    kafka_errors.UnsupportedForMessageFormatError,
)
# After a failure the relay retries quickly, never waiting more than this: it resumes within about a
# second once PostgreSQL or Kafka is back.
MAX_BACKOFF = 1.0


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: str
    value: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def _headers(event_type: str, event_version: int, extra: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The headers of CONTRACT.md (event_type, traceparent...) with the current trace context."""
    return list({
        "event_type": event_type,
        "event_version": str(event_version),
        "content-type": "application/json",
        **telemetry.inject_headers(),
        **(extra or {}),
    }.items())


def envelope_message(topic: str, envelope: Envelope, extra_headers: dict[str, str] | None = None) -> OutgoingMessage:
    return OutgoingMessage(
        topic=topic,
        key=str(envelope.order_id),
        value=orjson.dumps(envelope.model_dump(mode="json")),
        headers=_headers(envelope.event_type, envelope.event_version, extra_headers),
    )


def event_message(
    topic: str,
    event: BaseModel,
    *,
    producer: str,
    order_id: UUID,
    correlation_id: UUID | None = None,
    causation_id: UUID | None = None,
) -> tuple[Envelope, OutgoingMessage]:
    env = new_envelope(
        event, producer=producer, order_id=order_id, correlation_id=correlation_id, causation_id=causation_id
    )
    return env, envelope_message(topic, env)


def payload_message(
    topic: str,
    event_type: str,
    event_version: int,
    payload: dict,
    *,
    producer: str,
    order_id: UUID,
    correlation_id: UUID | None = None,
    causation_id: UUID | None = None,
) -> OutgoingMessage:
    """Like event_message, for a payload that is already plain JSON data validated upstream (the hot
    path of order capture): no second round of model validation. Tests check it against the model."""
    body = {
        "event_id": str(uuid4()), "event_type": event_type, "event_version": event_version,
        "occurred_at": datetime.now(UTC).isoformat(), "producer": producer, "order_id": str(order_id),
        "correlation_id": str(correlation_id or order_id), "causation_id": str(causation_id) if causation_id else None,
        "payload": payload,
    }
    return OutgoingMessage(
        topic=topic, key=str(order_id), value=orjson.dumps(body), headers=_headers(event_type, event_version)
    )


def insert_cte(source: str, first_param: int) -> str:
    """SQL of a data-modifying CTE body that writes one outbox row per row of `source` (an earlier CTE),
    taking topic, key, value and headers from parameters $first_param..$first_param+3 (see cte_params).
    Lets a service write its state change and its message in ONE statement (one round trip)."""
    p = first_param
    return (
        f"INSERT INTO outbox (topic, key, value, headers) SELECT ${p}, ${p + 1}, ${p + 2}, ${p + 3}::text::jsonb "
        f"FROM {source} RETURNING 1"
    )


def cte_params(message: OutgoingMessage) -> tuple[str, str, bytes, str]:
    return message.topic, message.key, message.value, orjson.dumps(message.headers).decode()


NOTIFY_SQL = f"pg_notify('{NOTIFY_CHANNEL}', '')"


def rows_cte(first_param: int) -> str:
    """SQL of a data-modifying CTE body that writes one outbox row per message, from the four arrays
    of rows_params at parameters $first_param..$first_param+3 (for statements that write their
    messages along with something else)."""
    p = first_param
    return (
        "INSERT INTO outbox (topic, key, value, headers) SELECT t, k, v, h::jsonb "
        f"FROM unnest(${p}::text[], ${p + 1}::text[], ${p + 2}::bytea[], ${p + 3}::text[]) AS u(t, k, v, h) RETURNING 1"
    )


def rows_params(messages: Sequence[OutgoingMessage]) -> tuple[list[str], list[str], list[bytes], list[str]]:
    return (
        [m.topic for m in messages], [m.key for m in messages], [m.value for m in messages],
        [orjson.dumps(m.headers).decode() for m in messages],
    )


def wake_sql(cte: str, notify: bool) -> str:
    """A select item that wakes the relay at commit when the CTE `cte` wrote a row (NULL without notify)."""
    return f"(SELECT {NOTIFY_SQL} FROM {cte} LIMIT 1)" if notify else "NULL"


_INSERT = {notify: f"WITH ins AS ({rows_cte(1)}) SELECT {wake_sql('ins', notify)}" for notify in (True, False)}


async def enqueue(conn: asyncpg.Connection, messages: Sequence[OutgoingMessage], *, notify: bool = True) -> None:
    """Writes messages into the outbox inside the caller's transaction (one round trip), and wakes
    the relay when that transaction commits (notify=False: the caller wakes its own process's leading
    relay after the commit instead, see OutboxRelay.leads)."""
    if not messages:
        return
    await conn.fetchrow(_INSERT[notify], *rows_params(messages))


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        bootstrap_servers: str,
        *,
        client_id: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        retention_seconds: int = 3600,
        inbox_retention_seconds: int = 7 * 86400,
        topic_prefix: str = "",
        mark_interval: float = 0.1,
    ):
        self.dsn = dsn
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention_seconds = retention_seconds
        self.inbox_retention_seconds = inbox_retention_seconds
        self.topic_prefix = topic_prefix  # rows hold the topics of CONTRACT.md; Kafka gets prefix + topic
        # Published rows are marked sent at most this often, in one statement (reads skip them until then).
        self.mark_interval = mark_interval
        self._stopping = False
        self.producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.is_leader = False
        self._failing_since: float | None = None
        self._backoff = 0.1

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,  # broker drops producer retries' duplicates, keeps order
            linger_ms=2,
            max_batch_size=256 * 1024,
            compression_type=None,
        )
        await self.producer.start()
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.client_id}")

    async def stop(self) -> None:
        """Marks what it published (so a restart does not publish it again), then stops."""
        if self._task:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except Exception:  # noqa: BLE001 - it did not finish in time (or failed): stop it anyway
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self.producer:
            await self.producer.stop()

    def wake(self, *_: object) -> None:
        self._wake.set()

    @property
    def leads(self) -> bool:
        """This process's relay publishes this database's outbox: a transaction of this process can
        skip pg_notify and call wake() once it has committed (one message less through PostgreSQL's
        notification queue and one wake-up less on the way). A commit made just as leadership moves
        to another process is found by that relay's poll (OUTBOX_POLL_INTERVAL) at the latest."""
        return self.is_leader and not self._stopping

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                await self._lead_and_relay()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.is_leader = False
                if self._failing_since is None:  # one line when a failure streak starts, one when it ends
                    self._failing_since = loop.time()
                    log.warning("outbox relay failing (%s: %s); retrying every %.1fs at most",
                                type(exc).__name__, exc, MAX_BACKOFF, exc_info=True)
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def _healthy(self) -> None:
        """The relay leads and has read the outbox: a failure streak is over, the backoff starts afresh."""
        if self._failing_since is not None:
            log.warning("outbox relay recovered after %.1fs", asyncio.get_running_loop().time() - self._failing_since)
            self._failing_since = None
        self._backoff = 0.1

    async def _lead_and_relay(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        await db.init_connection(conn)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                if self._stopping:
                    return
                await asyncio.sleep(self.poll_interval)
            self.is_leader = True
            await conn.add_listener(NOTIFY_CHANNEL, self.wake)
            # Rows published but not yet marked are skipped (they are few: marks wait mark_interval at most).
            fetch = await conn.prepare(
                "SELECT id, topic, key, value, headers FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL "
                "AND id <> ALL($2::bigint[]) ORDER BY id LIMIT $1"
            )
            mark = await conn.prepare("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])")
            park = await conn.prepare(
                "UPDATE outbox SET parked_at = now(), last_error = u.error "
                "FROM unnest($1::bigint[], $2::text[]) AS u(id, error) WHERE outbox.id = u.id"
            )
            loop = asyncio.get_running_loop()
            next_cleanup = loop.time() + 60
            unmarked: list[int] = []
            mark_due = 0.0
            while True:
                self._wake.clear()
                rows = await fetch.fetch(self.batch_size, unmarked)
                self._healthy()
                metrics.OUTBOX_LAG.set(len(rows))
                if rows:
                    parked = await self._publish(rows)
                    if parked:
                        await park.fetch(list(parked), list(parked.values()))
                    if not unmarked:
                        mark_due = loop.time() + self.mark_interval
                    unmarked += [r["id"] for r in rows if r["id"] not in parked]
                if unmarked and (loop.time() >= mark_due or len(unmarked) >= self.batch_size or self._stopping):
                    await mark.fetch(unmarked)
                    unmarked = []
                if self._stopping:
                    return
                if len(rows) == self.batch_size:
                    continue  # more waiting: no sleep
                if loop.time() >= next_cleanup:
                    await conn.execute(
                        "DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)",
                        self.retention_seconds,
                    )
                    await prune_inbox(conn, self.inbox_retention_seconds)
                    next_cleanup = loop.time() + 60
                timeout = max(0.0, mark_due - loop.time()) if unmarked else self.poll_interval
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
        finally:
            self.is_leader = False
            await conn.close()

    async def _publish(self, rows: list[asyncpg.Record]) -> dict[int, str]:
        """Publishes the rows, queueing every message first and then waiting for all acknowledgements
        (no wait per message). Returns the rows Kafka refused for good (id -> error), to be parked;
        any other failure raises, and the whole read is published again (same event ids)."""
        faults.crash_point("relay.before_publish")
        assert self.producer is not None
        parked: dict[int, str] = {}
        sent: list[tuple[asyncpg.Record, asyncio.Future]] = []
        for r in rows:
            headers = [(k, v.encode()) for k, v in r["headers"]]
            try:
                future = await self.producer.send(
                    self.topic_prefix + r["topic"], value=r["value"], key=r["key"].encode(), headers=headers
                )
            except PERMANENT_ERRORS as exc:
                parked[r["id"]] = self._parked(r, exc)
                continue
            sent.append((r, future))
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        failure: BaseException | None = None
        for (r, _), result in zip(sent, results, strict=True):
            if isinstance(result, PERMANENT_ERRORS):
                parked[r["id"]] = self._parked(r, result)
            elif isinstance(result, BaseException):
                failure = failure or result
            else:
                metrics.OUTBOX_PUBLISHED.labels(r["topic"]).inc()
        if failure is not None:
            raise failure
        faults.crash_point("relay.after_publish")
        return parked

    def _parked(self, row: asyncpg.Record, exc: BaseException) -> str:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        metrics.OUTBOX_PARKED.labels(row["topic"]).inc()
        log.error("outbox row %d (topic %s, key %s, %d bytes) refused by Kafka for good, parked: %s",
                  row["id"], row["topic"], row["key"], len(row["value"]), error)
        return error


async def prune_inbox(conn: asyncpg.Connection, retention_seconds: int, *, chunk: int = 10_000) -> int:
    """Deletes inbox rows older than the retention, a chunk at a time (short locks). A redelivery comes
    within seconds of the original (offsets are committed every CONSUMER_COMMIT_INTERVAL_MS), so the
    default week is far beyond any redelivery; an older event replayed on purpose (`dlq replay`) gets a
    new event id anyway."""
    total = 0
    while True:
        status = await conn.execute(
            "DELETE FROM inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbox "
            "WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2))", retention_seconds, chunk,
        )
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < chunk:
            return total
