"""The inbox and the BatchProcessor on a real database, fed aiokafka ConsumerRecords directly: each
event applied once, failures retried then dead-lettered through the outbox, and a database failure
aborting the whole batch with nothing committed."""

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord

from oms_contracts import Envelope, new_envelope
from oms_contracts.orders import OrderCancellationRequestedV1, OrderStatusChangedV1
from oms_platform import inbox, metrics
from oms_platform.consumer import BatchProcessor, ConsumerSpec, Message, UnitOfWork
from oms_platform.outbox import Outbox
from tests.support.infra import Infra

pytestmark = pytest.mark.infra

TOPIC = "test.batch.in"
OUT_TOPIC = "test.batch.out"
GROUP = "test-service.cancellations"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Handlers:
    """A handler whose behaviour is chosen by the event's `reason`; counts its calls per event."""

    def __init__(self, admin_dsn: str | None = None) -> None:
        self.calls: Counter[uuid.UUID] = Counter()
        self.admin_dsn = admin_dsn

    async def on_cancellation(self, msg: Message, uow: UnitOfWork[None]) -> None:
        event = msg.payload
        assert isinstance(event, OrderCancellationRequestedV1)
        eid = msg.envelope.event_id
        self.calls[eid] += 1
        await uow.conn.execute("INSERT INTO effects (event_id, reason) VALUES ($1, $2)", eid, event.reason)
        uow.emit(OUT_TOPIC, OrderStatusChangedV1(
            order_id=event.order_id, old_status="confirmed", new_status="cancelled", changed_at=datetime.now(UTC),
        ))
        match event.reason:
            case "poison":
                raise RuntimeError("poisoned")
            case "flaky" if self.calls[eid] == 1:
                raise RuntimeError("transient")
            case "handler-bug":
                raise KeyError("no such sku")
            case "database-down":
                raise asyncpg.PostgresConnectionError("connection to the database lost")
            case "connection-killed":
                admin = await asyncpg.connect(self.admin_dsn)
                try:
                    await admin.execute("SELECT pg_terminate_backend($1)", uow.conn.get_server_pid())
                finally:
                    await admin.close()
                await uow.conn.execute("INSERT INTO effects (event_id, reason) VALUES ($1, 'after kill')", eid)

    def spec(self) -> ConsumerSpec:
        return ConsumerSpec(name="cancellations", topics=[TOPIC], handlers={
            "OrderCancellationRequested": self.on_cancellation,
        })


@pytest.fixture
async def effects_pool(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    await pool.execute("CREATE TABLE effects (id bigserial PRIMARY KEY, event_id uuid NOT NULL, reason text)")
    yield pool


def _processor(pool: asyncpg.Pool, handlers: Handlers, **kwargs: Any) -> BatchProcessor:
    kwargs = {"max_attempts": 3, "backoff": 0.01, **kwargs}
    return BatchProcessor(handlers.spec(), pool, outbox=Outbox("test-service"), group_id=GROUP, **kwargs)


def _envelope(reason: str = "ok", order_id: uuid.UUID | None = None) -> Envelope:
    order_id = order_id or uuid.uuid4()
    event = OrderCancellationRequestedV1(order_id=order_id, reason=reason, requested_by="customer")
    return new_envelope(event, producer="test-upstream", order_id=order_id)


_offsets = Counter[str]()


def _record(envelope: Envelope | bytes, *, topic: str = TOPIC, key: bytes | None = None) -> ConsumerRecord:
    if isinstance(envelope, Envelope):
        value = orjson.dumps(envelope.model_dump(mode="json"))
        key = key or str(envelope.order_id).encode()
        event_type = envelope.event_type.encode()
    else:
        value, event_type = envelope, b"unknown"
    offset = _offsets[topic]
    _offsets[topic] += 1
    headers = (("event_type", event_type), ("traceparent", TRACEPARENT.encode()))
    return ConsumerRecord(topic, 1, offset, 0, 0, key, value, None, len(key or b""), len(value), headers)


async def _effects(pool: asyncpg.Pool) -> Counter[uuid.UUID]:
    return Counter(r["event_id"] for r in await pool.fetch("SELECT event_id FROM effects"))


async def _outbox(pool: asyncpg.Pool, topic: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT key, value, headers FROM outbox WHERE topic = $1 ORDER BY id", topic)


async def test_the_same_event_twice_in_one_batch_is_applied_once(effects_pool: asyncpg.Pool) -> None:
    handlers = Handlers()
    env = _envelope()
    await _processor(effects_pool, handlers).process([_record(env), _record(env), _record(env)])
    assert handlers.calls[env.event_id] == 1
    assert await _effects(effects_pool) == {env.event_id: 1}
    assert len(await _outbox(effects_pool, OUT_TOPIC)) == 1
    assert await effects_pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", GROUP) == 1


async def test_the_same_event_in_two_batches_is_applied_once(effects_pool: asyncpg.Pool) -> None:
    handlers = Handlers()
    processor = _processor(effects_pool, handlers)
    first, second = _envelope(), _envelope()
    await processor.process([_record(first)])
    reclaimed = _reclaimed()
    await processor.process([_record(first), _record(second)])  # a redelivery beside a new event
    assert await _effects(effects_pool) == {first.event_id: 1, second.event_id: 1}
    assert len(await _outbox(effects_pool, OUT_TOPIC)) == 2
    # The batch was applied claiming at its end, found `first` taken, rolled back, and was applied
    # again claiming first: the redelivered event's handler ran in the rolled-back attempt only.
    assert _reclaimed() == reclaimed + 1
    assert handlers.calls == {first.event_id: 2, second.event_id: 2}


async def test_a_batch_of_new_events_claims_them_with_its_messages_in_one_statement(
    effects_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims_first = []
    claim = inbox.claim

    async def counted(conn, consumer, ids):
        claims_first.append(list(ids))
        return await claim(conn, consumer, ids)

    monkeypatch.setattr(inbox, "claim", counted)
    handlers = Handlers()
    events = [_envelope() for _ in range(3)]
    reclaimed = _reclaimed()
    await _processor(effects_pool, handlers).process([_record(e) for e in events])
    assert claims_first == [] and _reclaimed() == reclaimed  # claimed with the messages, at the end
    assert await _effects(effects_pool) == {e.event_id: 1 for e in events}
    assert handlers.calls == {e.event_id: 1 for e in events}
    claimed = await effects_pool.fetch("SELECT event_id FROM inbox WHERE consumer = $1", GROUP)
    assert {r["event_id"] for r in claimed} == {e.event_id for e in events}
    assert len(await _outbox(effects_pool, OUT_TOPIC)) == 3


def _reclaimed() -> float:
    return metrics.CONSUMER_RECLAIMED.labels("cancellations")._value.get()  # noqa: SLF001 - a test's peek


async def test_the_inbox_is_per_consumer_group(effects_pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()
    async with effects_pool.acquire() as conn, conn.transaction():
        assert await inbox.claim(conn, "group-a", [event_id, event_id]) == {event_id}
        assert await inbox.claim(conn, "group-a", [event_id]) == set()
        assert await inbox.claim(conn, "group-b", [event_id]) == {event_id}
        assert await inbox.claim(conn, "group-b", []) == set()


async def test_a_message_that_keeps_failing_is_dead_lettered_and_the_rest_applied(effects_pool: asyncpg.Pool) -> None:
    handlers = Handlers()
    good1, poison, good2 = _envelope(), _envelope("poison"), _envelope()
    poison_record = _record(poison)
    await _processor(effects_pool, handlers).process([_record(good1), poison_record, _record(good2)])

    assert handlers.calls[poison.event_id] == 3  # max_attempts
    # Every failed attempt rolled back to its savepoint: no effect and no emitted message of the poison.
    assert await _effects(effects_pool) == {good1.event_id: 1, good2.event_id: 1}
    emitted = await _outbox(effects_pool, OUT_TOPIC)
    assert sorted(orjson.loads(r["value"])["causation_id"] for r in emitted) == sorted(
        [str(good1.event_id), str(good2.event_id)])

    [dead] = await _outbox(effects_pool, f"{TOPIC}.dlq")
    assert dead["key"] == str(poison.order_id)
    assert bytes(dead["value"]) == poison_record.value  # the original bytes, untouched
    headers = dict(dead["headers"])
    assert headers["event_type"] == "OrderCancellationRequested"
    assert headers["traceparent"] == TRACEPARENT
    assert headers["dlq.error"] == "RuntimeError: poisoned"
    assert headers["dlq.original_topic"] == TOPIC
    assert headers["dlq.original_partition"] == "1"
    assert headers["dlq.original_offset"] == str(poison_record.offset)
    assert headers["dlq.consumer"] == GROUP
    assert datetime.fromisoformat(headers["dlq.failed_at"]).tzinfo is not None

    # A redelivery of the dead-lettered message is a duplicate: not retried, not dead-lettered again.
    # (Its handler runs once more, in the attempt that claims at the end and is rolled back when the
    # batch is redone message by message, claiming first: the dead-lettered id is taken.)
    await _processor(effects_pool, handlers).process([poison_record])
    assert handlers.calls[poison.event_id] == 3 + 1
    assert len(await _outbox(effects_pool, f"{TOPIC}.dlq")) == 1
    assert await _effects(effects_pool) == {good1.event_id: 1, good2.event_id: 1}


async def test_a_handler_failing_once_then_succeeding_is_applied_once(effects_pool: asyncpg.Pool) -> None:
    handlers = Handlers()
    flaky = _envelope("flaky")
    await _processor(effects_pool, handlers).process([_record(flaky)])
    assert handlers.calls[flaky.event_id] == 2
    assert await _effects(effects_pool) == {flaky.event_id: 1}
    [emitted] = await _outbox(effects_pool, OUT_TOPIC)  # the failed attempt's message was not kept
    assert await _outbox(effects_pool, f"{TOPIC}.dlq") == []

    out = Envelope.model_validate_json(bytes(emitted["value"]))
    assert out.event_type == "OrderStatusChanged" and out.producer == "test-service"
    assert out.causation_id == flaky.event_id and out.correlation_id == flaky.correlation_id
    assert emitted["key"] == str(flaky.order_id)


async def test_a_handler_bug_is_retried_like_any_error_before_dead_lettering(effects_pool: asyncpg.Pool) -> None:
    # A KeyError raised by the handler is the handler's failure, not an invalid payload.
    handlers = Handlers()
    buggy = _envelope("handler-bug")
    await _processor(effects_pool, handlers).process([_record(buggy)])
    assert handlers.calls[buggy.event_id] == 3
    [dead] = await _outbox(effects_pool, f"{TOPIC}.dlq")
    assert dict(dead["headers"])["dlq.error"] == "KeyError: 'no such sku'"


async def test_invalid_envelopes_and_payloads_are_dead_lettered_without_calling_the_handler(
    effects_pool: asyncpg.Pool,
) -> None:
    handlers = Handlers()
    good = _envelope()
    not_json = _record(b"\x00 this is not json", key=b"k-1")
    no_order = _record(orjson.dumps({"event_id": str(uuid.uuid4()), "event_type": "OrderCancellationRequested"}))
    bad_payload = _envelope()
    bad_payload = bad_payload.model_copy(update={"payload": {"order_id": "not-a-uuid"}})
    unknown_version = _envelope().model_copy(update={"event_version": 99})
    batch = [not_json, no_order, _record(bad_payload), _record(unknown_version), _record(good)]
    await _processor(effects_pool, handlers).process(batch)

    assert handlers.calls == {good.event_id: 1}
    assert await _effects(effects_pool) == {good.event_id: 1}
    dead = await _outbox(effects_pool, f"{TOPIC}.dlq")
    assert len(dead) == 4
    errors = [dict(d["headers"])["dlq.error"] for d in dead]
    assert errors[0].startswith("invalid envelope") and errors[1].startswith("invalid envelope")
    assert errors[2].startswith("invalid payload") and errors[3].startswith("invalid payload")
    assert "OrderCancellationRequested v99" in errors[3]
    assert dead[0]["key"] == "k-1" and bytes(dead[0]["value"]) == not_json.value
    assert dead[1]["key"] == ""  # no key on the record: the dead letter has none either
    assert all(dict(d["headers"])["traceparent"] == TRACEPARENT for d in dead)


async def test_event_types_without_a_handler_are_skipped(effects_pool: asyncpg.Pool) -> None:
    handlers = Handlers()
    order_id = uuid.uuid4()
    other = new_envelope(OrderStatusChangedV1(
        order_id=order_id, old_status=None, new_status="pending", changed_at=datetime.now(UTC),
    ), producer="orchestrator", order_id=order_id)
    mine = _envelope(order_id=order_id)
    await _processor(effects_pool, handlers).process([_record(other), _record(mine)])
    assert handlers.calls == {mine.event_id: 1}
    assert await effects_pool.fetchval("SELECT array_agg(event_id) FROM inbox") == [mine.event_id]
    assert await _outbox(effects_pool, f"{TOPIC}.dlq") == []


@pytest.mark.parametrize("reason", ["database-down", "connection-killed"])
async def test_a_database_failure_aborts_the_batch_with_nothing_committed(
    effects_pool: asyncpg.Pool, infra: Infra, reason: str
) -> None:
    handlers = Handlers(infra.pg_admin_dsn)
    before, failing, after = _envelope(), _envelope(reason), _envelope()
    batch = [_record(before), _record(failing), _record(after)]
    with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError)):
        await _processor(effects_pool, handlers).process(batch)

    # The event applied before the failure, its inbox row and its emitted message: all rolled back.
    assert handlers.calls == {before.event_id: 1, failing.event_id: 1}
    assert await _effects(effects_pool) == {}
    assert await effects_pool.fetchval("SELECT count(*) FROM inbox") == 0
    assert await effects_pool.fetchval("SELECT count(*) FROM outbox") == 0

    # The batch is redelivered once the database is back: every event applied once.
    handlers = Handlers()
    recovered = failing.model_copy(update={"payload": {**failing.payload, "reason": "ok"}})
    await _processor(effects_pool, handlers).process([_record(before), _record(recovered), _record(after)])
    assert await _effects(effects_pool) == {before.event_id: 1, failing.event_id: 1, after.event_id: 1}
    assert len(await _outbox(effects_pool, OUT_TOPIC)) == 3


async def test_without_span_export_a_message_carries_its_trace_on_and_starts_no_span(
    effects_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No exporter (telemetry.enabled() is False): the consumer makes the message's trace context
    current instead of starting a non-recording span per message; what it emits carries the trace."""
    processor = _processor(effects_pool, Handlers())
    started: list[Any] = []

    def start(*args: Any, **kwargs: Any) -> Any:
        started.append(args)
        raise AssertionError("a span was started")

    monkeypatch.setattr(processor._tracer, "start_as_current_span", start)
    await processor.process([_record(_envelope())])
    out = await _outbox(effects_pool, OUT_TOPIC)
    assert len(out) == 1 and started == []
    assert dict(out[0]["headers"])["traceparent"] == TRACEPARENT  # the message's own context, as it came
