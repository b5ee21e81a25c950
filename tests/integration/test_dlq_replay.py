"""Dead letters re-driven on real Kafka and PostgreSQL: a message whose handler fails (until a flag is
flipped) is dead-lettered by one consumer group while another group of the topic applies it; after the
flip, `python -m oms_platform.dlq replay` re-drives it and only the group that failed it applies it,
once; a second replay of the same dead letter changes nothing. oms_dlq_messages_total counts it."""

import asyncio
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from oms_contracts import new_envelope
from oms_contracts.orders import OrderCancellationRequestedV1
from oms_platform import metrics
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork
from oms_platform.dlq import dead_letter_topic
from oms_platform.runtime import ServiceRuntime
from oms_platform.settings import ServiceSettings
from tests.support.infra import Infra
from tests.support.kafka import produce
from tests.support.polling import eventually

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]


class Groups:
    """Two consumer groups of one topic recording their effects; `picky` fails on "fragile" events
    while `broken` is set."""

    def __init__(self) -> None:
        self.broken = True

    async def picky(self, msg: Message, uow: UnitOfWork[None]) -> None:
        assert isinstance(msg.payload, OrderCancellationRequestedV1)
        if self.broken and msg.payload.reason == "fragile":
            raise RuntimeError("picky cannot handle it yet")
        await self._effect(uow, "picky", msg)

    async def relaxed(self, msg: Message, uow: UnitOfWork[None]) -> None:
        await self._effect(uow, "relaxed", msg)

    @staticmethod
    async def _effect(uow: UnitOfWork[None], group: str, msg: Message) -> None:
        await uow.conn.execute("INSERT INTO effects (grp, event_id) VALUES ($1, $2)", group, msg.envelope.event_id)


@pytest.fixture
async def started(fresh_db: str, infra: Infra, tmp_path: Path) -> AsyncIterator[tuple[ServiceRuntime, Groups, str]]:
    topic = f"test.{uuid.uuid4().hex}"
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_effects.sql").write_text("CREATE TABLE effects (grp text NOT NULL, event_id uuid NOT NULL);")
    groups = Groups()
    handler = "OrderCancellationRequested"
    specs = [ConsumerSpec(name="picky", topics=[topic], handlers={handler: groups.picky}),
             ConsumerSpec(name="relaxed", topics=[topic], handlers={handler: groups.relaxed})]
    settings = ServiceSettings(
        database_url=fresh_db, kafka_bootstrap_servers=infra.kafka_bootstrap, service_name="dlq-probe",
        outbox_poll_interval=0.2, kafka_group_suffix=f".t{uuid.uuid4().hex[:12]}", log_level="WARNING",
    )
    runtime = ServiceRuntime(settings, migrations=migrations, consumers=specs)
    await runtime.start()
    try:
        yield runtime, groups, topic
    finally:
        await runtime.stop()


def _message(reason: str, order_id: uuid.UUID) -> tuple[uuid.UUID, tuple[bytes, bytes, list]]:
    env = new_envelope(OrderCancellationRequestedV1(order_id=order_id, reason=reason, requested_by="ops"),
                       producer="test-upstream", order_id=order_id)
    return env.event_id, (str(order_id).encode(), orjson.dumps(env.model_dump(mode="json")),
                          [("event_type", env.event_type.encode())])


async def _effects(pool: asyncpg.Pool) -> Counter[tuple[str, uuid.UUID]]:
    return Counter((r["grp"], r["event_id"]) for r in await pool.fetch("SELECT grp, event_id FROM effects"))


async def _dlq(infra: Infra, *args: str) -> str:
    """Runs the operator command as an operator would, and returns what it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oms_platform.dlq", "--bootstrap", infra.kafka_bootstrap, *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "KAFKA_TOPIC_PREFIX": ""},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_a_dead_letter_replayed_is_applied_once_by_the_group_that_failed_it(
    started: tuple[ServiceRuntime, Groups, str], infra: Infra
) -> None:
    runtime, groups, topic = started
    assert runtime.pool is not None
    pool = runtime.pool
    picky_group, relaxed_group = (runtime.group_id(spec) for spec in runtime.consumers)
    dead_before = metrics.DLQ_MESSAGES.labels(topic, "picky")._value.get()
    order_id = uuid.uuid4()
    fragile, fragile_msg = _message("fragile", order_id)
    await produce(infra.kafka_bootstrap, topic, [fragile_msg])

    async def dead_lettered() -> bool:
        return await pool.fetchval("SELECT dead_lettered FROM inbox WHERE consumer = $1 AND event_id = $2",
                                   picky_group, fragile) is True

    await eventually(dead_lettered, timeout=60, what="picky to dead-letter the fragile event")
    assert metrics.DLQ_MESSAGES.labels(topic, "picky")._value.get() == dead_before + 1

    async def listed() -> str:
        out = await _dlq(infra, "list", topic)
        return out if str(fragile) in out or str(order_id) in out else ""

    listing = await eventually(listed, timeout=30, what="the dead letter on the dlq topic", interval=1.0)
    [line] = listing.strip().splitlines()
    dead_id, _, consumer, event_type, order, _, error = line.split("\t")
    assert (consumer, event_type, order) == (picky_group, "OrderCancellationRequested", f"order {order_id}")
    assert error == "RuntimeError: picky cannot handle it yet"
    shown = await _dlq(infra, "show", dead_letter_topic(topic), dead_id)
    assert orjson.loads(shown)["headers"]["dlq.original_topic"] == topic

    async def relaxed_applied() -> bool:
        return (await _effects(pool))[("relaxed", fragile)] == 1

    await eventually(relaxed_applied, timeout=60, what="the other group to apply the event")
    assert (await _effects(pool))[("picky", fragile)] == 0

    groups.broken = False
    out = await _dlq(infra, "replay", topic, dead_id)
    assert f"for {picky_group}" in out

    async def picky_applied() -> bool:
        return (await _effects(pool))[("picky", fragile)] == 1

    await eventually(picky_applied, timeout=60, what="the replayed dead letter to be applied by picky")

    # Replayed again (all of picky's), then a new message behind it on the same partition: once both
    # groups applied the new one, they had read the replay, and it changed nothing.
    await _dlq(infra, "replay", topic, "--all", "--consumer", picky_group)
    marker, marker_msg = _message("ok", order_id)
    await produce(infra.kafka_bootstrap, topic, [marker_msg])

    async def marker_applied() -> bool:
        effects = await _effects(pool)
        return effects[("picky", marker)] == 1 and effects[("relaxed", marker)] == 1

    await eventually(marker_applied, timeout=60, what="the message behind the second replay")
    assert await _effects(pool) == {("picky", fragile): 1, ("relaxed", fragile): 1,
                                    ("picky", marker): 1, ("relaxed", marker): 1}
    assert metrics.DLQ_MESSAGES.labels(topic, "picky")._value.get() == dead_before + 1
    assert metrics.DLQ_MESSAGES.labels(topic, "relaxed")._value.get() == 0
    assert relaxed_group != picky_group
