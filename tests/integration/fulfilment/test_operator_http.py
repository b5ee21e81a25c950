"""The operator HTTP API of the real fulfilment process: guarded pick -> pack -> dispatch with their
events through the outbox, labels as PDFs with a scannable barcode, listing, and authentication."""

import asyncio
from uuid import UUID

import orjson
import pytest

from oms_contracts import new_envelope
from oms_contracts.fulfilment import ShipmentDeliveredV1
from oms_platform.ids import uuid7
from tests.integration.fulfilment.support import SERVICE_NAME, create_shipments
from tests.support.kafka import produce
from tests.support.pdf import code128_values, shown_text
from tests.support.polling import eventually

pytestmark = pytest.mark.infra


def _events_of(events, order_id: UUID, event_type: str) -> list[dict]:
    return [e for e in events.envelopes(str(order_id)) if e["event_type"] == event_type]


async def test_operator_endpoints_refuse_calls_without_the_operator_token(svc, http):
    some = uuid7()
    calls = [("GET", "/v1/shipments"), ("GET", f"/v1/shipments/{some}"), ("POST", f"/v1/shipments/{some}/pick"),
             ("POST", f"/v1/shipments/{some}/pack"), ("POST", f"/v1/shipments/{some}/dispatch"),
             ("GET", f"/v1/shipments/{some}/label")]
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Basic abc"}):
            resp = await http.request(method, f"{svc.url}{path}", headers=headers)
            assert resp.status_code == 401, (method, path, headers)
            assert resp.json()["error"]["code"] == "unauthorized"


async def test_pick_pack_dispatch_in_order_only_and_dispatched_exactly_once(infra, svc, events, http, admin_headers):
    order_id, [shipment] = await create_shipments(infra.kafka_bootstrap, events)
    url = f"{svc.url}/v1/shipments/{shipment['shipment_id']}"

    async def act(action: str):
        return await http.post(f"{url}/{action}", headers=admin_headers)

    for action in ("dispatch", "pack"):
        refused = await act(action)
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "invalid_transition" and "created" in error["message"]
        assert error["fields"][0]["field"] == "status"
    assert (await act("pick")).json()["status"] == "picked"
    again = await act("pick")
    assert again.status_code == 409 and "picked" in again.json()["error"]["message"]
    assert (await act("pack")).json()["status"] == "packed"

    # Ten operators press dispatch at once: one wins, the others are told it is dispatched already.
    results = await asyncio.gather(*(act("dispatch") for _ in range(10)))
    assert sorted(r.status_code for r in results) == [200] + [409] * 9
    assert all("dispatched" in r.json()["error"]["message"] for r in results if r.status_code == 409)
    current = (await http.get(url, headers=admin_headers)).json()
    assert current["status"] == "dispatched" and current["dispatched_at"] is not None

    await events.wait_for(lambda _: bool(_events_of(events, order_id, "ShipmentDispatched")))
    await events.drain(1.5)
    [dispatched] = _events_of(events, order_id, "ShipmentDispatched")
    changes = _events_of(events, order_id, "ShipmentStatusChanged")
    assert [(e["payload"]["old_status"], e["payload"]["new_status"]) for e in changes] == [
        ("created", "picked"), ("picked", "packed"),
    ]
    for env in [*changes, dispatched]:
        assert env["correlation_id"] == str(order_id) and env["producer"] == SERVICE_NAME
    p = dispatched["payload"]
    assert p["shipment_id"] == shipment["shipment_id"] and p["tracking_number"] == shipment["tracking_number"]
    assert (p["location_id"], p["lines"], p["carrier"]) == (shipment["location_id"], shipment["lines"], "oms-post")


async def test_unknown_shipment_is_404(svc, http, admin_headers):
    some = uuid7()
    for method, path in [("GET", ""), ("POST", "/pick"), ("POST", "/dispatch"), ("GET", "/label")]:
        resp = await http.request(method, f"{svc.url}/v1/shipments/{some}{path}", headers=admin_headers)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


async def test_label_is_a_pdf_with_the_tracking_number_as_a_code128_barcode(infra, svc, events, http, admin_headers):
    order_id, [shipment] = await create_shipments(infra.kafka_bootstrap, events, method="express", country="ES")
    resp = await http.get(f"{svc.url}/v1/shipments/{shipment['shipment_id']}/label", headers=admin_headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/pdf"
    assert shipment["tracking_number"] in resp.headers["content-disposition"]
    pdf = resp.content
    assert pdf.startswith(b"%PDF-")
    assert code128_values(pdf) == [shipment["tracking_number"]]
    text = shown_text(pdf)
    for expected in (shipment["tracking_number"], "OMS-EXPRESS", "NEXT DAY", "Ana Lima", "1100-048 Lisboa",
                     f"Location {shipment['location_id']}", f"Order {order_id}", f"Shipment {shipment['shipment_id']}"):
        assert expected in text, expected


async def test_listing_pages_with_a_cursor_and_filters(infra, svc, events, http, admin_headers):
    order_id, shipments = await create_shipments(infra.kafka_bootstrap, events, locations=("A-DC", "B-DC", "C-DC"))
    seen, cursor = [], None
    while True:
        params = {"order_id": str(order_id), "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"{svc.url}/v1/shipments", params=params, headers=admin_headers)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [s["shipment_id"] for s in seen] == [s["shipment_id"] for s in shipments]
    by_location = await http.get(f"{svc.url}/v1/shipments", headers=admin_headers,
                                 params={"location_id": "B-DC", "status": "created", "order_id": str(order_id)})
    assert [s["location_id"] for s in by_location.json()["items"]] == ["B-DC"]
    bad = await http.get(f"{svc.url}/v1/shipments", params={"cursor": "nonsense"}, headers=admin_headers)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "cursor"


async def test_a_delivery_reported_by_tracking_closes_a_dispatched_shipment(infra, svc, events, http, admin_headers):
    order_id, [shipment] = await create_shipments(infra.kafka_bootstrap, events)
    url = f"{svc.url}/v1/shipments/{shipment['shipment_id']}"
    for action in ("pick", "pack", "dispatch"):
        assert (await http.post(f"{url}/{action}", headers=admin_headers)).status_code == 200
    event = ShipmentDeliveredV1(order_id=order_id, shipment_id=shipment["shipment_id"],
                                tracking_number=shipment["tracking_number"], delivered_at="2026-01-02T03:04:05Z")
    env = new_envelope(event, producer="tracking", order_id=order_id)
    await produce(infra.kafka_bootstrap, "oms.tracking.events",
                  [(str(order_id).encode(), orjson.dumps(env.model_dump(mode="json")), [])])

    async def delivered() -> bool:
        return (await http.get(url, headers=admin_headers)).json()["status"] == "delivered"

    await eventually(delivered, timeout=20, what="shipment delivered")
    refused = await http.post(f"{url}/dispatch", headers=admin_headers)
    assert refused.status_code == 409 and "delivered" in refused.json()["error"]["message"]
