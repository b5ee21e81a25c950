"""Sending fulfilment commands the way the orchestrator does, and reading the replies.

Other test runs may have their own fulfilment process on the same Kafka: it reads the same commands
topic and answers too. So this package's process runs under its own SERVICE_NAME, and a reply counts
only when its envelope's producer is that name."""

import os
from typing import Any
from uuid import UUID

import orjson

from oms_contracts import Envelope, new_envelope
from oms_contracts.fulfilment import CancelShipmentsV1, CreateShipmentsV1
from oms_contracts.topics import commands
from oms_platform.ids import uuid7
from tests.support.kafka import TopicReader, produce

COMMANDS = commands("fulfilment")
SERVICE_NAME = f"fulfilment-it-{os.getpid()}"


def address(country: str = "PT") -> dict[str, Any]:
    return {"name": "Ana Lima", "line1": "Rua Augusta 1", "line2": None, "city": "Lisboa",
            "postal_code": "1100-048", "country": country}


def create_command(order_id: UUID, *, country: str = "PT", method: str = "standard",
                   locations: tuple[str, ...] = ("LIS-DC",)) -> CreateShipmentsV1:
    return CreateShipmentsV1.model_validate({
        "order_id": order_id, "shipping_method": method, "shipping_address": address(country),
        "shipments": [{"location_id": loc, "lines": [{"sku": f"SKU-{i}", "quantity": i + 1}]}
                      for i, loc in enumerate(locations)],
    })


def cancel_command(order_id: UUID, reason: str = "customer_request") -> CancelShipmentsV1:
    return CancelShipmentsV1(order_id=order_id, reason=reason)


async def send(bootstrap: str, command: Any, *, envelope: Envelope | None = None) -> Envelope:
    """Produces the command (or re-produces `envelope` as is: a redelivery) keyed by its order id."""
    env = envelope or new_envelope(command, producer="orchestrator", order_id=command.order_id)
    value = orjson.dumps(env.model_dump(mode="json"))
    await produce(bootstrap, COMMANDS, [(str(env.order_id).encode(), value, [("event_type", env.event_type.encode())])])
    return env


def replies_to(events: TopicReader, command: Envelope) -> list[dict[str, Any]]:
    return [e for e in events.envelopes(str(command.order_id))
            if e["causation_id"] == str(command.event_id) and e["producer"] == SERVICE_NAME]


async def reply(events: TopicReader, command: Envelope, timeout: float = 20) -> dict[str, Any]:
    await events.wait_for(lambda _: bool(replies_to(events, command)), timeout)
    return replies_to(events, command)[0]


async def create_shipments(bootstrap: str, events: TopicReader, **kwargs: Any) -> tuple[UUID, list[dict]]:
    """A new order's shipments, created through the command; returns (order_id, shipments)."""
    order_id = uuid7()
    env = await send(bootstrap, create_command(order_id, **kwargs))
    got = await reply(events, env)
    assert got["event_type"] == "ShipmentsCreated", got
    return order_id, got["payload"]["shipments"]
