"""The README's downstream consumer example works against real Kafka: it sees an order placed."""

import asyncio
import importlib.util
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from oms_contracts import new_envelope
from oms_contracts.orders import OrderPlacedV1
from oms_contracts.topics import ORDERS_EVENTS
from oms_platform.kafka import ensure_topics
from tests.support.infra import ROOT
from tests.support.kafka import produce
from tests.support.orders import new_order

# docs/ is documentation, not a package: the example is loaded from its file, as a reader runs it.
_EXAMPLE = ROOT / "docs" / "examples" / "downstream_consumer.py"
_spec = importlib.util.spec_from_file_location("downstream_consumer", _EXAMPLE)
assert _spec is not None and _spec.loader is not None
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


async def test_example_consumer_receives_order_placed_once(infra):
    body = new_order()
    order_id = uuid.uuid4()
    event = OrderPlacedV1(order_id=order_id, total=Decimal("39.80"), created_at=datetime.now(UTC),
                          **{k: v for k, v in body.items() if k != "total"})
    env = new_envelope(event, producer="order-capture", order_id=order_id)
    seen: list = []

    async def on_event(envelope, payload):
        if envelope.order_id == order_id:
            seen.append(payload)

    await ensure_topics(infra.kafka_bootstrap, [ORDERS_EVENTS, "oms.orders.status"])
    _, broker = example.build_app(infra.kafka_bootstrap, on_event, group_id=f"example-{uuid.uuid4().hex}")
    await broker.start()
    try:
        value = orjson.dumps(env.model_dump(mode="json"))
        # delivered twice, applied once
        await produce(infra.kafka_bootstrap, ORDERS_EVENTS, [(str(order_id).encode(), value, [])] * 2)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
    finally:
        await broker.stop()
    assert len(seen) == 1
    assert seen[0].total == Decimal("39.80") and seen[0].channel == "web"
