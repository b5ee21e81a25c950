"""Running inventory processes for tests, sending them the saga's commands and reading their replies.

Other test runs may have their own inventory process on the same Kafka: it reads the same commands
topic and answers too. So the processes here run under their own SERVICE_NAME, and a reply counts only
when its envelope's producer is that name. Their consumer group starts at the topic's current end, so a
new process does not replay every command ever sent to the shared topic."""

import asyncio
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from oms_contracts import Envelope, new_envelope
from oms_contracts.inventory import CommitStockV1, ReleaseStockV1, ReserveStockV1, RestockV1
from oms_contracts.topics import commands
from oms_platform.ids import uuid7
from oms_platform.kafka import ensure_topics
from tests.support.kafka import TopicReader, produce
from tests.support.services import ADMIN_TOKEN, ServiceProcess

COMMANDS = commands("inventory")
EVENTS = "oms.inventory.events"


def unique(prefix: str) -> str:
    """A SKU or location id no other test uses (the tests of this package share one database)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}".upper()


def service_name() -> str:
    return f"inventory-it-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def start_group_at_end(bootstrap: str, group_id: str, topic: str = COMMANDS) -> None:
    """Commits the topic's end offsets for a group that has not consumed yet."""
    await ensure_topics(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        await consumer.commit({tp: await consumer.position(tp) for tp in tps})
    finally:
        await consumer.stop()


async def start_inventory(bootstrap: str, database_url: str, log_dir: Path, *, name: str, group_suffix: str,
                          count: int = 1) -> list[ServiceProcess]:
    """`count` inventory processes sharing one database and one consumer group."""
    await start_group_at_end(bootstrap, f"{name}.commands{group_suffix}")
    env = {"OMS_ADMIN_TOKEN": ADMIN_TOKEN, "SERVICE_NAME": name, "KAFKA_GROUP_SUFFIX": group_suffix}
    procs = [ServiceProcess("inventory", database_url=database_url, kafka_bootstrap=bootstrap, log_dir=log_dir,
                            env=env) for _ in range(count)]
    for p in procs:
        p.start(wait=False)
    await asyncio.gather(*(asyncio.to_thread(p.wait_ready) for p in procs))
    return procs


def reserve_command(order_id: UUID, lines: dict[str, int], country: str = "PT") -> ReserveStockV1:
    return ReserveStockV1(order_id=order_id, destination_country=country,
                          lines=[{"sku": sku, "quantity": q} for sku, q in lines.items()])


def release_command(order_id: UUID, reason: str = "customer_request") -> ReleaseStockV1:
    return ReleaseStockV1(order_id=order_id, reason=reason)


def commit_command(order_id: UUID, location_id: str, lines: dict[str, int], shipment_id: UUID | None = None):
    return CommitStockV1(order_id=order_id, shipment_id=shipment_id or uuid7(), location_id=location_id,
                         lines=[{"sku": sku, "quantity": q} for sku, q in lines.items()])


def restock_command(order_id: UUID, location_id: str, lines: dict[str, int], reason: str = "return",
                    restock_id: UUID | None = None) -> RestockV1:
    return RestockV1(order_id=order_id, restock_id=restock_id or uuid7(), location_id=location_id, reason=reason,
                     lines=[{"sku": sku, "quantity": q} for sku, q in lines.items()])


def envelope(command: BaseModel) -> Envelope:
    return new_envelope(command, producer="orchestrator", order_id=command.order_id)  # type: ignore[attr-defined]


async def send(bootstrap: str, *envelopes: Envelope) -> Sequence[Envelope]:
    """Produces the envelopes as they are (the same one twice is a redelivery), keyed by order id."""
    await produce(bootstrap, COMMANDS, [
        (str(e.order_id).encode(), orjson.dumps(e.model_dump(mode="json")), [("event_type", e.event_type.encode())])
        for e in envelopes
    ])
    return envelopes


class Replies:
    """The events of one service name, read from oms.inventory.events."""

    def __init__(self, reader: TopicReader, producer: str):
        self.reader, self.producer = reader, producer

    def all(self, order_id: UUID | str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.reader.envelopes(str(order_id) if order_id else None)
                if e["producer"] == self.producer]

    def to(self, command: Envelope) -> list[dict[str, Any]]:
        return [e for e in self.all(command.order_id) if e["causation_id"] == str(command.event_id)]

    async def reply(self, command: Envelope, timeout: float = 20) -> dict[str, Any]:
        await self.reader.wait_for(lambda _: bool(self.to(command)), timeout)
        return self.to(command)[0]

    async def command(self, bootstrap: str, cmd: BaseModel) -> tuple[Envelope, dict[str, Any]]:
        """Sends one command and waits for its reply."""
        env = envelope(cmd)
        await send(bootstrap, env)
        return env, await self.reply(env)
