"""The whole consuming path on real Kafka: a ServiceRuntime started in-process with a test consumer
reads its topic in batches, dead-letters a poison message to `<topic>.dlq` through the outbox and
relay, applies the good ones, and ignores redeliveries."""

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from oms_contracts import Envelope, new_envelope
from oms_contracts.orders import OrderCancellationRequestedV1
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork
from oms_platform.runtime import ServiceRuntime, create_app
from oms_platform.settings import ServiceSettings
from tests.support.infra import Infra
from tests.support.kafka import TopicReader, produce
from tests.support.polling import eventually

pytestmark = pytest.mark.infra

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Probe:
    def __init__(self) -> None:
        self.calls: Counter[uuid.UUID] = Counter()

    async def on_cancellation(self, msg: Message, uow: UnitOfWork[None]) -> None:
        event = msg.payload
        assert isinstance(event, OrderCancellationRequestedV1)
        self.calls[msg.envelope.event_id] += 1
        if event.reason == "poison":
            raise RuntimeError(f"cannot handle {msg.envelope.event_id}")
        if event.reason == "database-blip" and self.calls[msg.envelope.event_id] == 1:
            raise asyncpg.PostgresConnectionError("connection lost")
        await uow.conn.execute("INSERT INTO effects (event_id, reason) VALUES ($1, $2)", msg.envelope.event_id,
                               event.reason)


@pytest.fixture
async def started(fresh_db: str, infra: Infra, tmp_path: Path, request: pytest.FixtureRequest
                  ) -> AsyncIterator[tuple[ServiceRuntime, Probe, str]]:
    """A runtime consuming a new topic; with a KAFKA_TOPIC_PREFIX when the test gives one (indirect
    parameter): the topic yielded is then the one on Kafka, the prefix before the spec's topic."""
    prefix = getattr(request, "param", "")
    logical = f"test.{uuid.uuid4().hex}"
    topic = prefix + logical
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_effects.sql").write_text(
        "CREATE TABLE effects (id bigserial PRIMARY KEY, event_id uuid NOT NULL, reason text NOT NULL);"
    )
    probe = Probe()
    spec = ConsumerSpec(name="probe", topics=[logical], handlers={"OrderCancellationRequested": probe.on_cancellation})
    settings = ServiceSettings(
        database_url=fresh_db, kafka_bootstrap_servers=infra.kafka_bootstrap, service_name="platform-probe",
        outbox_poll_interval=0.2, kafka_group_suffix=f".t{uuid.uuid4().hex[:12]}", log_level="WARNING",
        kafka_topic_prefix=prefix,
    )
    runtime = ServiceRuntime(settings, migrations=migrations, consumers=[spec])
    await runtime.start()
    try:
        yield runtime, probe, topic
    finally:
        await runtime.stop()


def _message(reason: str, order_id: uuid.UUID) -> tuple[Envelope, tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    env = new_envelope(OrderCancellationRequestedV1(order_id=order_id, reason=reason, requested_by="ops"),
                       producer="test-upstream", order_id=order_id)
    headers = [("event_type", env.event_type.encode()), ("traceparent", TRACEPARENT.encode()),
               ("x-origin", b"runtime-test")]
    return env, (str(order_id).encode(), orjson.dumps(env.model_dump(mode="json")), headers)


async def _effects(pool: asyncpg.Pool) -> Counter[uuid.UUID]:
    return Counter(r["event_id"] for r in await pool.fetch("SELECT event_id FROM effects"))


@pytest.mark.parametrize("started", ["", "pfx."], indirect=True, ids=["contract-topics", "topic-prefix"])
async def test_poison_is_dead_lettered_the_good_applied_and_a_redelivery_ignored(
    started: tuple[ServiceRuntime, Probe, str], infra: Infra
) -> None:
    runtime, probe, topic = started
    assert runtime.pool is not None
    pool = runtime.pool
    assert topic in runtime.topics() and f"{topic}.dlq" in runtime.topics()
    dlq = await TopicReader(infra.kafka_bootstrap, f"{topic}.dlq").start(from_beginning=True)
    try:
        order_id = uuid.uuid4()
        poison, poison_msg = _message("poison", order_id)
        good, good_msg = _message("ok", order_id)
        await produce(infra.kafka_bootstrap, topic, [poison_msg, good_msg])

        async def good_applied() -> bool:
            return (await _effects(pool))[good.event_id] == 1

        await eventually(good_applied, timeout=60, what="the good message to be applied")
        await dlq.wait_for(lambda rs: len(rs) >= 1, timeout=30)
        await dlq.drain(1.0)
        [dead] = dlq.records
        assert dead.key == str(order_id).encode()
        assert dead.value == poison_msg[1]
        headers = dict(dead.headers)
        assert headers["event_type"] == b"OrderCancellationRequested"
        assert headers["traceparent"] == TRACEPARENT.encode()
        assert headers["x-origin"] == b"runtime-test"
        assert headers["dlq.error"] == f"RuntimeError: cannot handle {poison.event_id}".encode()
        assert headers["dlq.original_topic"] == topic.encode()
        assert headers["dlq.consumer"] == runtime.group_id(runtime.consumers[0]).encode()
        assert probe.calls[poison.event_id] == runtime.settings.consumer_max_attempts
        assert poison.event_id not in await _effects(pool)

        # The same envelope delivered again, then a new one behind it on the same partition (same key):
        # once the new one is applied, the redelivery has been read, and it had no second effect.
        marker, marker_msg = _message("ok", order_id)
        await produce(infra.kafka_bootstrap, topic, [good_msg, poison_msg, marker_msg])

        async def marker_applied() -> bool:
            return (await _effects(pool))[marker.event_id] == 1

        await eventually(marker_applied, timeout=60, what="the message behind the redelivery to be applied")
        assert await _effects(pool) == {good.event_id: 1, marker.event_id: 1}
        # The redelivered events' handlers ran once more, in the attempt that claims at the end and was
        # rolled back on finding their ids taken; nothing of it stayed, and the poison was not retried.
        assert probe.calls[good.event_id] == 2
        assert probe.calls[poison.event_id] == runtime.settings.consumer_max_attempts + 1
        await dlq.drain(1.0)
        assert len(dlq.records) == 1  # and not dead-lettered again
    finally:
        await dlq.stop()


async def test_a_batch_aborted_by_a_database_failure_is_redelivered_and_applied_once(
    started: tuple[ServiceRuntime, Probe, str], infra: Infra
) -> None:
    runtime, probe, topic = started
    assert runtime.pool is not None
    pool = runtime.pool
    order_id = uuid.uuid4()
    first, first_msg = _message("ok", order_id)
    blip, blip_msg = _message("database-blip", order_id)
    last, last_msg = _message("ok", order_id)
    await produce(infra.kafka_bootstrap, topic, [first_msg, blip_msg, last_msg])

    async def all_applied() -> bool:
        return len(await _effects(pool)) == 3

    await eventually(all_applied, timeout=60, what="the redelivered batch to be applied")
    assert await _effects(pool) == {first.event_id: 1, blip.event_id: 1, last.event_id: 1}
    assert probe.calls[blip.event_id] == 2
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0  # nothing dead-lettered


async def test_the_app_answers_health_readiness_and_metrics(started: tuple[ServiceRuntime, Probe, str]) -> None:
    runtime, _, _ = started
    app = create_app(runtime, [], title="platform probe")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "kafka": "ok", "consumers": "ok"}}
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "oms_outbox_unsent" in metrics.text
