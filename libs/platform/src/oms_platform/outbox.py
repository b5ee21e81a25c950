"""Transactional outbox: messages are written in the same transaction as the state change, and a relay
publishes them to Kafka (key = order id, in commit order per order) and marks them sent.

The process that commits hands its rows (with their ids) straight to its relay when that relay leads,
which publishes them without reading them back; the relay reads the table for other processes' commits
(pg_notify), at least every poll interval, and when it starts leading. A crash anywhere between commit
and publish loses nothing: unsent rows stay until published. A crash between publish and marking sent
publishes those rows again, with the same event_id, which the consumers' inbox drops; the relay
therefore delivers at least once and consumers apply exactly once. Published rows are marked sent
(deleted: Kafka keeps what was sent) at most every `mark_interval`, all of them at once, in the relay's
next read of the outbox (in a DELETE of their own when the relay publishes only rows handed to it),
and when the relay stops. Every row in the table is therefore unsent, or parked (refused by Kafka for good).
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
import orjson
from pydantic import BaseModel

from oms_contracts import Envelope, Publishes, new_envelope
from oms_platform import db, metrics, telemetry
from oms_platform.outbox_publisher import RelayPublisher

log = logging.getLogger(__name__)

S = TypeVar("S")
NOTIFY_CHANNEL = "oms_outbox"
# One relay per database publishes at a time (it holds this advisory lock); a second instance of
# the service waits as a standby. One publisher keeps each order's messages in commit order.
_RELAY_LOCK = 0x0A15_0002
# After a failure the relay retries quickly, never waiting more than this: it resumes within about a
# second once PostgreSQL or Kafka is back.
MAX_BACKOFF = 1.0


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    topic: str
    key: str
    value: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def message(topic: str, envelope: Envelope) -> OutgoingMessage:
    """The one way to build an outgoing message: a contracts envelope on a topic, keyed by its order id
    (one order's messages stay in order), with the headers of CONTRACT.md (event_type, event_version,
    the current trace's traceparent). The envelope is serialised by orjson as pydantic would in JSON
    mode (UUIDs as strings, times as RFC 3339 with Z), without walking the payload a second time."""
    body = {
        "event_id": envelope.event_id, "event_type": envelope.event_type, "event_version": envelope.event_version,
        "occurred_at": envelope.occurred_at, "producer": envelope.producer, "order_id": envelope.order_id,
        "correlation_id": envelope.correlation_id, "causation_id": envelope.causation_id,
        "payload": envelope.payload,
    }
    headers = {"event_type": envelope.event_type, "event_version": str(envelope.event_version),
               "content-type": "application/json", **telemetry.inject_headers()}
    # default=str: ids read by asyncpg are its own UUID type, which orjson does not take as a UUID.
    value = orjson.dumps(body, default=str, option=orjson.OPT_UTC_Z)
    return OutgoingMessage(topic, str(envelope.order_id), value, list(headers.items()))


@dataclass(slots=True)
class UnitOfWork(Generic[S]):
    """One transaction's work: `conn` (the open transaction), `state` (a consumer's batch state: see
    ConsumerSpec.batch_state; None elsewhere) and `emit`, the one way to send a message. What is
    emitted is written to the outbox in the same transaction, and the relay is woken once it commits
    (by whoever runs the transaction: the BatchProcessor, or Outbox.transaction)."""

    conn: asyncpg.Connection
    producer: str
    state: S
    # The message being handled: what is emitted is caused by it and shares its correlation id (None
    # in an HTTP request or a background task: then the correlation id is the order id).
    cause: Envelope | None = None
    messages: list[OutgoingMessage] = field(default_factory=list)

    def emit(self, topic: str, event: BaseModel, *, order_id: UUID | None = None,
             correlation_id: UUID | None = None, causation_id: UUID | None = None) -> Envelope:
        """Sends a contract event (wrapped in a new envelope; order id, correlation and causation from
        the message being handled unless given) or an Envelope built already (sent as it is: e.g. the
        saga engine records its commands' ids)."""
        if isinstance(event, Envelope):
            envelope = event
        else:
            cause = self.cause
            if cause is not None:
                order_id = order_id or cause.order_id
                correlation_id = correlation_id or cause.correlation_id
                causation_id = causation_id or cause.event_id
            if order_id is None:
                raise ValueError(f"{type(event).__name__} needs an order_id outside a consumed message")
            envelope = new_envelope(event, producer=self.producer, order_id=order_id, correlation_id=correlation_id,
                                    causation_id=causation_id)
        self.messages.append(message(topic, envelope))
        return envelope


NOTIFY_SQL = f"pg_notify('{NOTIFY_CHANNEL}', '')"


@dataclass(frozen=True, slots=True)
class OutboxWrite:
    """Messages written by a statement of the caller's (SQL fragments for a hot path that writes them
    with its own change, in one round trip): put `cte` in the statement's WITH list and `wake` in its
    SELECT list, pass `params` at the parameter numbers it was made for, give `took()` what the
    statement returned for `wake`, and call `committed()` once the transaction has committed."""

    cte: str
    wake: str
    params: tuple[list[str], list[str], list[bytes], list[str]]
    _relay: "OutboxRelay | None"
    messages: Sequence[OutgoingMessage] = ()
    _ids: list[int] = field(default_factory=list)

    def took(self, returned: object) -> None:
        """What the statement returned for `wake`: the rows' ids when this process's relay leads."""
        if isinstance(returned, list):
            self._ids[:] = returned

    def committed(self) -> None:
        """After the commit (at once: nothing awaited in between, so the relay gets one process's
        commits in their order): hands the rows to this process's relay when it was chosen over
        pg_notify, so it publishes them without reading them back (or wakes it, without their ids)."""
        if self._relay is not None and self.params[0]:
            if len(self._ids) == len(self.messages):
                self._relay.handoff(list(zip(self._ids, self.messages, strict=True)))
            else:
                self._relay.wake()


class Outbox:
    """A service's way out (ServiceRuntime.outbox): every message is written to the outbox table in
    the transaction of the change it reports, and the relay hears of it once that commits. While this
    process's relay leads, the rows (with the ids the statement returned) are handed to it after the
    commit (no notification, and no read of them); otherwise pg_notify wakes the leader, whichever
    process it is in (a commit made just as leadership moves is found by that relay's poll at the latest).

    Services send with `uow.emit` only. HTTP handlers and background tasks get their uow from
    `async with outbox.transaction(pool) as uow:`; consumers from the BatchProcessor, which writes their
    messages with its inbox claim. `sql` and `write` are how those (and one hot path, order capture's
    single-statement place-order) write the rows."""

    def __init__(self, producer: str, relay: "OutboxRelay | None" = None, publishes: Publishes | None = None):
        self.producer, self.relay, self.publishes = producer, relay, publishes  # publishes: what it may send

    def sql(self, messages: Sequence[OutgoingMessage], first_param: int, *, name: str = "outbox_rows",
            only_if: str | None = None) -> OutboxWrite:
        """The write of `messages` as a data-modifying CTE `name` taking parameters first_param..+3
        (only when the CTE `only_if` returned a row, if given), and the select item that wakes the
        relay at commit when it wrote any (pg_notify), or, when this process's relay leads, returns
        the rows' ids for `took()`, and `committed()` hands the rows over."""
        if self.publishes is not None:
            self.publishes.check((m.topic, m.headers) for m in messages)
        p, gate = first_param,  f" WHERE EXISTS (SELECT 1 FROM {only_if})" if only_if else ""
        # Ids are taken in the order of the unnest, the messages' order (sorted, they pair with them).
        cte = (f"{name} AS (INSERT INTO outbox (topic, key, value, headers) SELECT t, k, v, h::jsonb "
               f"FROM unnest(${p}::text[], ${p + 1}::text[], ${p + 2}::bytea[], ${p + 3}::text[]) AS u(t, k, v, h)"
               f"{gate} RETURNING id)")
        params = ([m.topic for m in messages], [m.key for m in messages], [m.value for m in messages],
                  [orjson.dumps(m.headers).decode() for m in messages])
        relay = self.relay if self.relay is not None and self.relay.leads else None
        wake = (f"(SELECT array_agg(id ORDER BY id) FROM {name})" if relay is not None
                else f"(SELECT {NOTIFY_SQL} FROM {name} LIMIT 1)")
        return OutboxWrite(cte, wake, params, relay, messages)

    async def write(self, conn: asyncpg.Connection, messages: Sequence[OutgoingMessage]) -> OutboxWrite:
        """Writes messages in the caller's transaction with one INSERT; call committed() after the commit."""
        w = self.sql(messages, 1)
        if messages:
            w.took(await conn.fetchval(f"WITH {w.cte} SELECT {w.wake}", *w.params))
        return w

    @asynccontextmanager
    async def transaction(self, pool: asyncpg.Pool) -> AsyncIterator[UnitOfWork[None]]:
        """A transaction whose emitted messages are written with one INSERT before it commits (nothing
        of it, messages included, if the block raises)."""
        async with pool.acquire() as conn:
            async with conn.transaction():
                uow: UnitOfWork[None] = UnitOfWork(conn, self.producer, None)
                yield uow
                written = await self.write(conn, uow.messages)
            written.committed()


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        bootstrap_servers: str,
        *,
        client_id: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        inbox_retention_seconds: int = 7 * 86400,
        topic_prefix: str = "",
        mark_interval: float = 0.1,
    ):
        self.dsn, self.bootstrap_servers, self.client_id = dsn, bootstrap_servers, client_id
        self.batch_size, self.poll_interval = batch_size, poll_interval
        self.inbox_retention_seconds = inbox_retention_seconds
        self.publisher = RelayPublisher(bootstrap_servers, client_id, topic_prefix)
        # Published rows are marked sent at most this often, in one statement (reads skip them until then).
        self.mark_interval = mark_interval
        self._stopping = False
        self._wake = asyncio.Event()
        # Rows this process committed, handed over with their ids (handoff): published without a read.
        self._handed: list[tuple[int, OutgoingMessage]] = []
        self._read_wanted = True  # a wake() (pg_notify, another process's commit; stop): read the table
        self.reads = 0  # the outbox reads made (tests)
        self._task: asyncio.Task | None = None
        self.is_leader = False
        self._failing_since: float | None = None  # and the backoff: see _run
        self._backoff = 0.1
        self._counted_at = float("-inf")  # when the backlog was last counted (see _gauges)

    async def start(self) -> None:
        await self.publisher.start()
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
        await self.publisher.stop()

    def wake(self, *_: object) -> None:
        """Something was committed that this relay was not handed (pg_notify, or a commit without its
        ids): the next round reads the table."""
        self._read_wanted = True
        self._wake.set()

    def handoff(self, rows: list[tuple[int, OutgoingMessage]]) -> None:
        """Rows this process has just committed, with their ids, in commit order (Outbox.committed):
        the relay publishes them as they are, without reading them back, and marks them as it marks
        what it read. Rows it already published (a read that saw the commit first) are skipped."""
        self._handed += rows
        self._wake.set()

    @property
    def leads(self) -> bool:
        """This process's relay publishes this database's outbox: a transaction of this process can
        skip pg_notify and hand its rows over once it has committed (one message less through
        PostgreSQL's notification queue, and no read of what was just written). A commit made just as
        leadership moves to another process is found by that relay's poll (OUTBOX_POLL_INTERVAL) at the
        latest."""
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
        # The relay's statements find rows by primary key (in id order, or by id). Published rows are
        # deleted, so the table is small on average and its statistics say so, and the planner then
        # chooses sequential scans: after a burst they read every page the burst left (at 10 orders/s
        # after a 50,000-order run: 14,000 blocks and 27 ms of PostgreSQL CPU per order).
        await conn.execute("SET enable_seqscan = off")
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                if self._stopping:
                    return
                await asyncio.sleep(self.poll_interval)
            self.is_leader = True
            await conn.add_listener(NOTIFY_CHANNEL, self.wake)
            # Rows published but not yet marked are skipped (they are few: marks wait mark_interval at most).
            # The read also marks (deletes) the rows whose mark is due ($3): one round trip, not a read and
            # a DELETE. (Its SELECT sees the rows as before the DELETE: they are skipped as published, $2.)
            fetch = await conn.prepare(
                "WITH marked AS (DELETE FROM outbox WHERE id = ANY($3::bigint[])) "
                "SELECT id, topic, key, value, headers, extract(epoch FROM clock_timestamp() - created_at)::float8 "
                "AS age FROM outbox WHERE parked_at IS NULL AND id <> ALL($2::bigint[]) ORDER BY id LIMIT $1"
            )
            mark = await conn.prepare("DELETE FROM outbox WHERE id = ANY($1::bigint[])")
            park = await conn.prepare(
                "UPDATE outbox SET parked_at = now(), last_error = u.error "
                "FROM unnest($1::bigint[], $2::text[]) AS u(id, error) WHERE outbox.id = u.id"
            )
            loop = asyncio.get_running_loop()
            next_cleanup = loop.time() + 60
            unmarked: list[int] = []
            mark_due = 0.0
            read_at = float("-inf")
            self._handed, self._read_wanted = [], True  # a new leader reads first: what was handed is in it
            while True:
                self._wake.clear()
                handed, self._handed = self._handed, []
                done = set(unmarked)  # published: a handed row among them (or read now) is not sent again
                due = bool(unmarked) and (loop.time() >= mark_due or len(unmarked) >= self.batch_size)
                rows: list[Any] = []
                # Rows handed over need no read, unless another process's commit (pg_notify) or the poll
                # interval asks for one: those rows (and any a failure left) are only in the table.
                if not handed or self._read_wanted or loop.time() >= read_at + self.poll_interval:
                    self._read_wanted = False
                    self.reads += 1
                    rows = await fetch.fetch(self.batch_size, unmarked, unmarked if due else [])
                    read_at = loop.time()
                    if len(rows) == self.batch_size:
                        # More waiting: read again at once; the handed rows are among it, read in id order.
                        self._read_wanted, handed = True, []
                    self._healthy()
                    await self._gauges(conn, rows)
                elif due:
                    await mark.fetch(unmarked)
                unmarked = [] if due else unmarked
                done.update(r["id"] for r in rows)
                # Read rows first (older), then the handed ones in id order (one process's commit order).
                rows += [{"id": i, "topic": m.topic, "key": m.key, "value": m.value, "headers": m.headers}
                         for i, m in sorted(handed, key=lambda h: h[0]) if i not in done]
                if rows:
                    parked = await self.publisher.publish(rows)
                    if parked:
                        await park.fetch(list(parked), list(parked.values()))
                    if not unmarked:
                        mark_due = loop.time() + self.mark_interval
                    unmarked += [r["id"] for r in rows if r["id"] not in parked]
                if self._stopping:
                    if unmarked:
                        await mark.fetch(unmarked)
                    return
                if self._read_wanted or self._handed:
                    continue  # more waiting: no sleep
                if loop.time() >= next_cleanup:
                    from oms_platform.inbox import prune_inbox  # (inbox imports this module)

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

    async def _gauges(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> None:
        """oms_outbox_unsent and oms_outbox_oldest_unsent_age_seconds from the read just made: a read
        short of batch_size is the whole backlog (the rows it skips are published already); only a full
        one needs a count, made at most every few seconds (a backlog is when counting costs most)."""
        metrics.OUTBOX_OLDEST_AGE.set(max(0.0, rows[0]["age"]) if rows else 0.0)
        if len(rows) < self.batch_size:
            metrics.OUTBOX_LAG.set(len(rows))
            return
        now = asyncio.get_running_loop().time()
        if now >= self._counted_at + 5.0:
            self._counted_at = now
            metrics.OUTBOX_LAG.set(await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE parked_at IS NULL"))
