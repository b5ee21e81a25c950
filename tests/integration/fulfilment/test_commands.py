"""The saga's commands against the real fulfilment process on real Kafka and PostgreSQL: replies on
oms.fulfilment.events carry the command's event_id as causation_id."""

import pytest

from oms_carriers.numbers import is_valid_tracking_number
from oms_platform.ids import uuid7
from tests.integration.fulfilment.support import (
    SERVICE_NAME,
    cancel_command,
    create_command,
    create_shipments,
    replies_to,
    reply,
    send,
)

pytestmark = pytest.mark.infra


async def _listed(http, svc, admin_headers, order_id) -> list[dict]:
    resp = await http.get(f"{svc.url}/v1/shipments", params={"order_id": str(order_id)}, headers=admin_headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


async def test_create_shipments_one_per_location_with_the_carrier_the_rules_choose(
    infra, svc, events, http, admin_headers
):
    order_id = uuid7()
    command = await send(infra.kafka_bootstrap, create_command(order_id, locations=("LIS-DC", "MAD-DC")))
    got = await reply(events, command)
    assert got["event_type"] == "ShipmentsCreated" and got["event_version"] == 1
    assert got["causation_id"] == str(command.event_id)
    assert got["correlation_id"] == str(order_id) and got["order_id"] == str(order_id)
    assert got["producer"] == SERVICE_NAME
    shipments = got["payload"]["shipments"]
    assert sorted(s["location_id"] for s in shipments) == ["LIS-DC", "MAD-DC"]
    assert {(s["carrier"], s["service"]) for s in shipments} == {("oms-post", "standard")}
    numbers = [s["tracking_number"] for s in shipments]
    assert len(set(numbers)) == 2 and all(is_valid_tracking_number(n, "OMS", "PT") for n in numbers)
    assert {s["location_id"]: s["lines"] for s in shipments}["MAD-DC"] == [{"sku": "SKU-1", "quantity": 2}]

    listed = await _listed(http, svc, admin_headers, order_id)
    assert {s["shipment_id"] for s in listed} == {s["shipment_id"] for s in shipments}
    for item in listed:
        assert item["status"] == "created" and item["order_id"] == str(order_id)
        assert {"shipment_id", "order_id", "location_id", "lines", "status", "carrier", "service",
                "tracking_number", "created_at", "updated_at"} <= set(item)
    one = await http.get(f"{svc.url}/v1/shipments/{listed[0]['shipment_id']}", headers=admin_headers)
    assert one.status_code == 200 and one.json() == listed[0]


@pytest.mark.parametrize(("method", "country", "expected"), [
    ("express", "JP", ("oms-express", "next_day")),
    ("standard", "CH", ("oms-post", "international")),  # only the CARRIER_RULES_FILE has CH
])
async def test_carrier_rules_come_from_the_configured_file(infra, svc, events, method, country, expected):
    _, shipments = await create_shipments(infra.kafka_bootstrap, events, method=method, country=country)
    assert [(s["carrier"], s["service"]) for s in shipments] == [expected]


async def test_the_same_command_twice_makes_one_set_of_shipments(infra, svc, events, http, admin_headers):
    order_id = uuid7()
    command = create_command(order_id, locations=("LIS-DC", "POR-DC"))
    first = await send(infra.kafka_bootstrap, command)
    second = await send(infra.kafka_bootstrap, command)  # a resend by the saga: a new event id
    await send(infra.kafka_bootstrap, command, envelope=first)  # a redelivery: the same event id
    a, b = await reply(events, first), await reply(events, second)
    assert a["event_type"] == b["event_type"] == "ShipmentsCreated"
    assert a["payload"]["shipments"] == b["payload"]["shipments"]
    await events.drain(1.0)
    assert len(replies_to(events, first)) == 1  # the redelivery was dropped by the inbox
    assert len(await _listed(http, svc, admin_headers, order_id)) == 2


async def test_no_carrier_for_the_destination_fails_and_stores_nothing(infra, svc, events, http, admin_headers, db):
    order_id = uuid7()
    command = await send(infra.kafka_bootstrap, create_command(order_id, country="US"))
    got = await reply(events, command)
    assert got["event_type"] == "ShipmentCreationFailed"
    assert got["payload"] == {"order_id": str(order_id), "reason": "no_carrier_for_destination"}
    assert await _listed(http, svc, admin_headers, order_id) == []
    assert await db.fetchval("SELECT count(*) FROM shipments WHERE order_id = $1", order_id) == 0


async def test_cancel_before_dispatch_cancels_every_shipment_and_refuses_transitions_after(
    infra, svc, events, http, admin_headers
):
    order_id, shipments = await create_shipments(infra.kafka_bootstrap, events, locations=("LIS-DC", "MAD-DC"))
    ids = sorted(s["shipment_id"] for s in shipments)
    picked = await http.post(f"{svc.url}/v1/shipments/{ids[0]}/pick", headers=admin_headers)
    assert picked.status_code == 200

    command = await send(infra.kafka_bootstrap, cancel_command(order_id, "payment_timeout"))
    got = await reply(events, command)
    assert got["event_type"] == "ShipmentsCancelled" and got["causation_id"] == str(command.event_id)
    assert sorted(got["payload"]["shipment_ids"]) == ids and got["payload"]["reason"] == "payment_timeout"
    assert {s["status"] for s in await _listed(http, svc, admin_headers, order_id)} == {"cancelled"}

    for action in ("pick", "pack", "dispatch"):
        resp = await http.post(f"{svc.url}/v1/shipments/{ids[0]}/{action}", headers=admin_headers)
        assert resp.status_code == 409 and "cancelled" in resp.json()["error"]["message"]
    label = await http.get(f"{svc.url}/v1/shipments/{ids[1]}/label", headers=admin_headers)
    assert label.status_code == 409

    again = await reply(events, await send(infra.kafka_bootstrap, cancel_command(order_id, "other")))
    assert again["event_type"] == "ShipmentsCancelled"
    assert sorted(again["payload"]["shipment_ids"]) == ids and again["payload"]["reason"] == "payment_timeout"
    late = await reply(events, await send(infra.kafka_bootstrap, create_command(order_id)))
    assert late["event_type"] == "ShipmentCreationFailed" and late["payload"]["reason"] == "order_cancelled"


async def test_cancel_after_a_dispatch_is_refused_and_changes_nothing(infra, svc, events, http, admin_headers):
    order_id, shipments = await create_shipments(infra.kafka_bootstrap, events, locations=("LIS-DC", "MAD-DC"))
    gone, stays = shipments[0]["shipment_id"], shipments[1]["shipment_id"]
    for action in ("pick", "pack", "dispatch"):
        resp = await http.post(f"{svc.url}/v1/shipments/{gone}/{action}", headers=admin_headers)
        assert resp.status_code == 200, resp.text

    command = await send(infra.kafka_bootstrap, cancel_command(order_id))
    got = await reply(events, command)
    assert got["event_type"] == "ShipmentCancellationRefused" and got["causation_id"] == str(command.event_id)
    assert got["payload"] == {"order_id": str(order_id), "reason": "already_dispatched",
                              "dispatched_shipment_ids": [gone], "shipments": shipments}  # as ShipmentsCreated
    status = {s["shipment_id"]: s["status"] for s in await _listed(http, svc, admin_headers, order_id)}
    assert status == {gone: "dispatched", stays: "created"}
    again = await reply(events, await send(infra.kafka_bootstrap, cancel_command(order_id)))
    assert again["event_type"] == "ShipmentCancellationRefused"
