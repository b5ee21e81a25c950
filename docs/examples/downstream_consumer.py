"""A downstream system (billing, CRM, a data warehouse) following orders on Kafka with faststream.

Run it next to `make up`:  uv run python docs/examples/downstream_consumer.py
It prints every order placed and every status change. Messages are keyed by order id, so one order's
messages arrive in order; each carries the envelope of CONTRACT.md and may arrive more than once
(at-least-once delivery), so a real consumer remembers the event_ids it applied.
"""

import asyncio
import os
from collections.abc import Awaitable, Callable

from faststream import FastStream
from faststream.kafka import KafkaBroker

from oms_contracts import Envelope, parse_payload
from oms_contracts.topics import ORDERS_EVENTS, ORDERS_STATUS


def build_app(
    bootstrap: str, on_event: Callable[[Envelope, object], Awaitable[None]], group_id: str = "crm-example"
) -> tuple[FastStream, KafkaBroker]:
    broker = KafkaBroker(bootstrap)
    seen: set = set()  # a real consumer keeps these in its database, in the same transaction as its effect

    @broker.subscriber(ORDERS_EVENTS, ORDERS_STATUS, group_id=group_id, auto_offset_reset="earliest")
    async def handle(envelope: Envelope) -> None:
        if envelope.event_id in seen:
            return  # redelivered: already applied
        seen.add(envelope.event_id)
        await on_event(envelope, parse_payload(envelope.event_type, envelope.event_version, envelope.payload))

    return FastStream(broker), broker


async def _print(envelope: Envelope, payload: object) -> None:
    if envelope.event_type == "OrderPlaced":
        print(f"order {payload.order_id} placed on {payload.channel}: {payload.total} {payload.currency}")
    elif envelope.event_type == "OrderStatusChanged":
        print(f"order {payload.order_id}: {payload.old_status} -> {payload.new_status} ({payload.reason or '-'})")


if __name__ == "__main__":
    app, _ = build_app(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), _print)
    asyncio.run(app.run())
