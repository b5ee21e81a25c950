"""Tracking end to end, every service a real process on real Kafka and PostgreSQL: the order's
timeline from the OMS's events, signed carrier scans carrying the order to `delivered`, the refusals
of the webhook, scans out of order, the channel-key checks, the customer's signed page, the live
stream across two tracking processes, and SIGKILLs mid-journey. One system for the module."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from oms_contracts.topics import events
from oms_platform.links import tracking_token
from tests.support.kafka import TopicReader
from tests.support.polling import eventually
from tests.support.services import ADMIN_TOKEN, ServiceProcess
from tests.support.system import System, unique
from tests.support.tracking import (
    LINK_SECRET,
    SERVICES_WITH_TRACKING,
    TRACKING_ENV,
    post_scan,
    scan,
    scan_body,
    shipped_order,
    sse_events,
    tracking,
    types,
    wait_tracking,
)

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
async def system(infra, log_dir) -> AsyncIterator[System]:
    system = await System.start(infra, log_dir, services=SERVICES_WITH_TRACKING, env={"tracking": TRACKING_ENV})
    yield system
    await system.stop()


@pytest.fixture(scope="module")
async def tracking_events(system: System) -> AsyncIterator[TopicReader]:
    reader = await TopicReader(system.infra.kafka_bootstrap, events("tracking")).start()
    yield reader
    await reader.stop()


async def test_journey_from_placed_to_delivered_through_signed_scans(system: System, tracking_events: TopicReader):
    order_id, (first, second) = await shipped_order(system, locations=2)
    t0 = datetime.now(UTC)
    await scan(system, first, "in_transit", at=t0, location="Lisboa hub")
    await scan(system, second, "in_transit", at=t0 + timedelta(seconds=1), location="Porto hub")
    await scan(system, first, "out_for_delivery", at=t0 + timedelta(seconds=2))
    answer = await scan(system, first, "delivered", at=t0 + timedelta(seconds=3), location="Front door")
    assert answer["status"] == "recorded" and answer["shipment_status"] == "delivered"
    assert (await system.order(order_id))["status"] == "shipped"  # one parcel of two delivered
    await scan(system, second, "delivered", at=t0 + timedelta(seconds=4))

    await system.wait_status(order_id, "delivered")
    view = await wait_tracking(system, order_id, lambda v: v["status"] == "delivered", what="delivered")
    assert view["channel"] == "web"
    kinds = types(view)
    for expected in ("OrderPlaced", "StockReserved", "ShipmentsCreated", "ShipmentDispatched",
                     "CarrierScanRecorded", "OrderStatusChanged"):
        assert expected in kinds, kinds
    assert kinds.count("CarrierScanRecorded") == 5 and kinds.count("ShipmentDispatched") == 2
    assert kinds[0] == "OrderPlaced"
    assert [e["at"] for e in view["timeline"]] == sorted(e["at"] for e in view["timeline"])  # oldest first
    assert len({e["id"] for e in view["timeline"]}) == len(view["timeline"])
    statuses = [e["detail"] for e in view["timeline"] if e["type"] == "OrderStatusChanged"]
    assert [d.split("(status ")[1].rstrip(")") for d in statuses] == [
        "confirmed", "partially_shipped", "shipped", "delivered"]
    assert any(e["detail"].startswith("Delivered at Front door") for e in view["timeline"])
    by_tn = {s["tracking_number"]: s for s in view["shipments"]}
    assert by_tn[first["tracking_number"]]["carrier"] == first["carrier"]
    for s in view["shipments"]:
        assert s["status"] == "delivered" and s["latest_scan"]["status"] == "delivered"
    assert view["tracking_url"].endswith(f"/track/{order_id}?token={tracking_token(LINK_SECRET, order_id)}")
    # The web channel reads its own order with its key.
    assert (await tracking(system, order_id, system.channel))["status"] == "delivered"

    # What tracking published: each scan once, and a delivery per shipment (fulfilment closes them).
    scans = await system.wait_published(tracking_events, order_id, "CarrierScanRecorded", 5)
    assert len(scans) == 5
    delivered = await system.wait_published(tracking_events, order_id, "ShipmentDelivered", 2)
    assert {d["payload"]["shipment_id"] for d in delivered} == {first["shipment_id"], second["shipment_id"]}
    await system.wait_shipments(order_id, 2, status="delivered")


async def test_the_webhook_refuses_bad_and_unsigned_scans_and_applies_a_repeat_once(system: System):
    order_id, [shipment] = await shipped_order(system)
    body = scan_body(shipment, "in_transit", event_id="carrier-evt-1")
    assert (await post_scan(system, body, signature="sha256=" + "0" * 64)).status_code == 401
    assert (await post_scan(system, body, signature=False)).status_code == 401
    assert (await post_scan(system, body, signature="md5=abc")).status_code == 401
    refused = await post_scan(system, body, signature=False)
    assert refused.json()["error"]["code"] == "unauthorized"
    assert "CarrierScanRecorded" not in types(await tracking(system, order_id))  # nothing stored

    first = await post_scan(system, body)
    assert first.status_code == 201, first.text
    repeat = await post_scan(system, body)
    assert repeat.status_code == 200 and repeat.json()["status"] == "duplicate"
    view = await tracking(system, order_id)
    assert types(view).count("CarrierScanRecorded") == 1
    assert view["shipments"][0]["latest_scan"]["status"] == "in_transit"

    unknown = await post_scan(system, {**body, "event_id": "carrier-evt-2", "tracking_number": "NOPE123"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"

    for bad, field in (({**body, "status": "lost_in_space"}, "status"),
                       ({k: v for k, v in body.items() if k != "event_id"}, "event_id"),
                       ({**body, "occurred_at": "2026-12-04T10:00:00"}, "occurred_at"),  # no time zone
                       (b"{not json", "body")):
        resp = await post_scan(system, bad)
        assert resp.status_code == 422, resp.text
        assert field in [f["field"] for f in resp.json()["error"]["fields"]], resp.text
    assert types(await tracking(system, order_id)).count("CarrierScanRecorded") == 1


async def test_scans_out_of_order_do_not_move_a_shipment_backwards(system: System):
    order_id, [shipment] = await shipped_order(system)
    t0 = datetime.now(UTC)
    await scan(system, shipment, "delivered", at=t0, location="Front door")
    late = await scan(system, shipment, "in_transit", at=t0 - timedelta(hours=3), location="Lisboa hub")
    assert late["shipment_status"] == "delivered"
    await system.wait_status(order_id, "delivered")
    view = await tracking(system, order_id)
    [s] = view["shipments"]
    assert s["status"] == "delivered" and s["latest_scan"]["status"] == "delivered"
    # Both are on the timeline, where they happened: the late in_transit before the delivery.
    details = [e["detail"] for e in view["timeline"] if e["type"] == "CarrierScanRecorded"]
    assert details[0].startswith("In transit at Lisboa hub") and details[1].startswith("Delivered at Front door")


async def test_a_failed_delivery_shows_with_its_reason_and_return_to_sender_flags_the_saga(system: System):
    order_id, [shipment] = await shipped_order(system)
    await scan(system, shipment, "delivery_failed", reason="nobody home")
    view = await tracking(system, order_id)
    assert any("Delivery attempt failed at Lisboa hub: nobody home" in e["detail"] for e in view["timeline"])
    assert view["shipments"][0]["latest_scan"]["reason"] == "nobody home"
    await scan(system, shipment, "returned_to_sender", reason="address unknown")
    saga = await eventually(lambda: _stuck_saga(system, order_id), what="the saga flagged for an operator")
    assert saga["current_step"] == "await_delivery"
    assert (await system.order(order_id))["status"] == "shipped"


async def _stuck_saga(system: System, order_id: str) -> dict | None:
    saga = await system.saga(order_id)
    return saga if saga.get("stuck") else None


async def test_another_channel_gets_404_and_no_credentials_get_401(system: System):
    order_id, _ = await shipped_order(system)
    pos = await system.call("POST", "order-capture", "/v1/admin/api-keys", json={"channel": "pos"}, expect=201)
    pos_key = {"Authorization": f"Bearer {pos['key']}"}

    async def pos_known() -> bool:  # the key reaches tracking over oms.channels.events
        resp = await system.http.get(f"{system.url('tracking')}/v1/orders/{order_id}/tracking", headers=pos_key)
        return resp.status_code != 401

    await eventually(pos_known, what="tracking to know the pos key")
    for path in ("/tracking", "/tracking/stream"):
        url = f"{system.url('tracking')}/v1/orders/{order_id}{path}"
        other = await system.http.get(url, headers=pos_key)
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
        assert (await system.http.get(url)).status_code == 401
        assert (await system.http.get(url, headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await tracking(system, order_id, system.channel))["order_id"] == order_id


async def test_the_customer_page_needs_the_signed_token(system: System):
    order_id, [shipment] = await shipped_order(system)
    await scan(system, shipment, "out_for_delivery", location="Lisboa")
    base = f"{system.url('tracking')}/track/{order_id}"
    page = await system.http.get(base, params={"token": tracking_token(LINK_SECRET, order_id)})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<meta name="viewport"' in html
    assert shipment["tracking_number"] in html and "Out for delivery at Lisboa" in html and "Shipped" in html
    for private in ("ana@example.com", "Rua Augusta"):
        assert private not in html

    token = tracking_token(LINK_SECRET, order_id)
    tampered = token[:-1] + ("1" if token.endswith("0") else "0")  # (a hex token ends in "0" one time in 16)
    not_found = [
        await system.http.get(base, params={"token": tracking_token("forged-secret", order_id)}),
        await system.http.get(base),
        await system.http.get(base, params={"token": tampered}),
        # A valid token of an order that does not exist: the same answer as a forged one.
        await system.http.get(f"{system.url('tracking')}/track/00000000-0000-0000-0000-000000000001",
                              params={"token": tracking_token(LINK_SECRET, "00000000-0000-0000-0000-000000000001")}),
        await system.http.get(f"{system.url('tracking')}/track/not-a-uuid", params={"token": "x"}),
    ]
    assert {r.status_code for r in not_found} == {404}
    assert len({r.text for r in not_found}) == 1 and order_id not in not_found[0].text

    # The page's live updates take the same token.
    live = f"{base}/live"
    async with system.http.stream("GET", live, params={"token": tracking_token(LINK_SECRET, order_id)}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        kind, state = await asyncio.wait_for(anext(sse_events(resp)), 10)
        assert kind == "state" and state["shipments"][0]["latest_scan"]["status"] == "out_for_delivery"
    forged = await system.http.get(live, params={"token": tracking_token("forged-secret", order_id)})
    assert forged.status_code == 404 and forged.text == not_found[0].text


# --- live stream and crashes (last: they add and kill tracking processes) ------------------------------


async def test_the_stream_receives_a_scan_taken_by_another_process_and_ends_with_its_client(system: System):
    order_id, [shipment] = await shipped_order(system)
    other = ServiceProcess("tracking", database_url=system.databases["tracking"],
                           kafka_bootstrap=system.infra.kafka_bootstrap, log_dir=system.log_dir,
                           env={"OMS_ADMIN_TOKEN": ADMIN_TOKEN, "KAFKA_GROUP_SUFFIX": system.group_suffix,
                                **TRACKING_ENV})
    other.start(wait=False)
    try:
        await asyncio.to_thread(other.wait_ready, 90)
        url = f"{system.url('tracking')}/v1/orders/{order_id}/tracking/stream"
        async with system.http.stream("GET", url, headers=system.channel) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            received = sse_events(resp)
            kind, state = await asyncio.wait_for(anext(received), 10)
            assert kind == "state" and state["status"] == "shipped" and state["order_id"] == order_id
            assert await asyncio.wait_for(anext(received), 10) == ("comment", "heartbeat")
            # The scan goes to the other process; this process's stream hears of it through PostgreSQL.
            await scan(system, shipment, "in_transit", location="Coimbra hub")
            await post_scan_elsewhere(system, other.url, shipment)

            async def next_entry() -> dict:
                async for kind, data in received:
                    if kind == "timeline":
                        return data
                raise AssertionError("stream ended")

            entries = [await asyncio.wait_for(next_entry(), 15) for _ in range(2)]
            assert [e["detail"].split(" (")[0] for e in entries] == ["In transit at Coimbra hub",
                                                                      "Out for delivery at Lisboa"]
        metrics = "oms_tracking_streams_open 1.0"

        async def closed() -> bool:
            text = (await system.http.get(f"{system.url('tracking')}/metrics")).text
            return metrics not in text and "oms_tracking_streams_open 0.0" in text

        await eventually(closed, timeout=10, what="the stream to be released after the client left")
    finally:
        await asyncio.to_thread(other.stop)


async def post_scan_elsewhere(system: System, url: str, shipment: dict) -> None:
    resp = await post_scan(system, scan_body(shipment, "out_for_delivery", location="Lisboa"), url=url)
    assert resp.status_code == 201, resp.text


async def test_sigkill_mid_journey_loses_no_scan_and_duplicates_no_entry(system: System, tracking_events):
    # Offsets committed rarely: after the SIGKILL, the events tracking applied are delivered again.
    await system.restart("tracking", CONSUMER_COMMIT_INTERVAL_MS="10000")
    order_id, shipments = await _two_shipments_one_dispatched(system)
    first, second = shipments
    await scan(system, first, "in_transit")
    await system.kill("tracking")

    await system.dispatch(second["shipment_id"])  # the OMS goes on while tracking is down
    out = scan_body(first, "out_for_delivery")
    with pytest.raises(httpx.TransportError):  # the carrier's call fails: it will retry
        await post_scan(system, out)
    await system.restart("tracking", CONSUMER_COMMIT_INTERVAL_MS="10000")
    assert (await post_scan(system, out)).status_code == 201
    await wait_tracking(system, order_id, lambda v: v["status"] == "shipped", what="the dispatch seen while down")
    await system.wait_published(tracking_events, order_id, "CarrierScanRecorded", 2)

    # A crash after a scan's commit and before its events reach Kafka: the relay publishes them after
    # the restart, and the carrier's retry of the scan is answered as a repeat.
    await system.restart("tracking", OMS_FAULT="relay.before_publish")
    done = scan_body(first, "delivered")
    try:
        await post_scan(system, done)
    except httpx.TransportError:
        pass  # killed before it could answer
    await asyncio.to_thread(system.services["tracking"].wait_exit, 30)
    await system.restart("tracking")
    assert (await post_scan(system, done)).status_code == 200
    await scan(system, second, "delivered")
    await system.wait_status(order_id, "delivered")

    view = await tracking(system, order_id)
    entries = [(e["type"], e["detail"], e["at"]) for e in view["timeline"]]
    assert len(entries) == len(set(entries)), entries
    assert types(view).count("CarrierScanRecorded") == 4 and types(view).count("ShipmentDispatched") == 2
    assert types(view).count("OrderPlaced") == 1
    published = await system.wait_published(tracking_events, order_id, "CarrierScanRecorded", 4)
    assert sorted(e["payload"]["status"] for e in published) == ["delivered", "delivered", "in_transit",
                                                                 "out_for_delivery"]


async def _two_shipments_one_dispatched(system: System) -> tuple[str, list[dict]]:
    lines = {}
    for _ in range(2):
        sku, loc = unique("TEE"), unique("LOC")
        await system.location(loc, "PT")
        await system.set_stock(loc, sku, 5)
        lines[sku] = 1
    order_id = await system.place(lines)
    shipments = await system.wait_shipments(order_id, 2)
    await system.dispatch(shipments[0]["shipment_id"])
    await system.wait_status(order_id, "partially_shipped")
    await wait_tracking(system, order_id, lambda v: len(v["shipments"]) == 2, what="the shipments")
    return order_id, shipments
