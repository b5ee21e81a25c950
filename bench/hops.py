"""Where the time from POST to `confirmed` goes: each hop of the saga, from the Kafka record timestamps
of the messages that carry one order there (every message is produced by an outbox relay, so a hop is
the consumer's wait and batch, the commit, and the next relay's wake-up and publish).

    POST sent -> OrderPlaced          order capture: the HTTP request, its transaction, its relay
    OrderPlaced -> ReserveStock       orchestrator: the saga starts
    ReserveStock -> StockReserved     inventory: the reservation
    StockReserved -> confirmed        orchestrator: the status change (OrderStatusChanged)

Read after the latency phase from the benchmark's own topics (deleted at every start), for the orders
of the measured window only."""

import asyncio
from typing import Any

from bench.env import TOPIC_PREFIX

# (topic, event_type) of each message on the way to `confirmed`, in order.
CHAIN = (
    ("oms.orders.events", "OrderPlaced"),
    ("oms.inventory.commands", "ReserveStock"),
    ("oms.inventory.events", "StockReserved"),
    ("oms.orders.status", "OrderStatusChanged"),
)
HOPS = (  # (label, the service whose work the hop is)
    ("POST -> placed", "order-capture"),
    ("placed -> reserve", "orchestrator"),
    ("reserve -> reserved", "inventory"),
    ("reserved -> confirmed", "orchestrator"),
)


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p / 100 * len(values)))], 1)


def distribution(values: list[float]) -> dict[str, Any]:
    return {"p50": _pct(values, 50), "p90": _pct(values, 90), "p99": _pct(values, 99),
            "max": round(max(values), 1) if values else None, "n": len(values)}


async def read_timestamps(bootstrap: str, order_ids: set[str], timeout: float = 60) -> dict[str, dict[str, float]]:
    """order id -> event type -> Kafka timestamp (s), for the chain's first message of each type."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024, client_id="oms-bench-hops")
    await consumer.start()
    found: dict[str, dict[str, float]] = {}
    wanted = {TOPIC_PREFIX + topic: event_type for topic, event_type in CHAIN}
    try:
        tps = []
        for topic in wanted:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - first look at the topic
                partitions = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        left = {tp for tp in tps if end[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while left and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                event_type = wanted[tp.topic]
                for rec in records:
                    key = rec.key.decode() if rec.key else ""
                    if key in order_ids and dict(rec.headers or ()).get("event_type") == event_type.encode():
                        found.setdefault(key, {}).setdefault(event_type, rec.timestamp / 1000)
                if records and records[-1].offset + 1 >= end[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    return found


def hop_table(sent: dict[str, float], stamps: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per hop, the distribution in ms over the orders whose every message was found."""
    names = [event_type for _, event_type in CHAIN]
    per_hop: list[list[float]] = [[] for _ in HOPS]
    for order_id, t_sent in sent.items():
        got = stamps.get(order_id, {})
        if not all(n in got for n in names):
            continue
        times = [t_sent, *(got[n] for n in names)]
        for i in range(len(HOPS)):
            per_hop[i].append((times[i + 1] - times[i]) * 1000)
    return {label: {"service": service, **distribution(values)}
            for (label, service), values in zip(HOPS, per_hop, strict=True)}
