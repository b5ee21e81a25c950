"""Cancellation requests (announced on oms.orders.events after the OrderPlaced of the order) and the
status consumer of oms.orders.status (applies each status change once, ignores stale ones)."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from oms_contracts import Envelope, new_envelope
from oms_contracts.orders import OrderStatusChangedV1
from oms_contracts.topics import ORDERS_STATUS, dlq
from tests.support.capture import (
    ADMIN,
    Capture,
    ChannelKey,
    assert_refused_left_no_trace,
    envelopes_for,
    error_fields,
    events_reader,
    has_event,
    records_for,
)
from tests.support.kafka import TopicReader, produce
from tests.support.polling import eventually


async def placed_and_announced(cap: Capture, key: ChannelKey, reader: TopicReader) -> dict[str, Any]:
    order = await cap.place_ok(key)
    await reader.wait_for(has_event(order["order_id"], "OrderPlaced"), timeout=30)
    return order


async def test_cancel_is_accepted_and_announced_after_the_order(cap, web, reader):
    order = await placed_and_announced(cap, web, reader)
    oid = order["order_id"]

    resp = await cap.http.post(f"{cap.url}/v1/orders/{oid}/cancel", json={"reason": "customer changed mind"},
                               headers=web.auth)

    assert resp.status_code == 202, resp.text
    assert resp.json()["order_id"] == oid
    # The saga decides: the request itself leaves the order's status as it was.
    got = await cap.http.get(f"{cap.url}/v1/orders/{oid}", headers=web.auth)
    assert got.json()["status"] == "pending"
    await reader.wait_for(has_event(oid, "OrderCancellationRequested"), timeout=30)
    await reader.drain(1.0)
    records = records_for(reader, oid)
    envelopes = [orjson.loads(r.value) for r in records]
    assert [e["event_type"] for e in envelopes] == ["OrderPlaced", "OrderCancellationRequested"]
    placed_rec, cancel_rec = records
    assert cancel_rec.key == oid.encode()
    assert cancel_rec.partition == placed_rec.partition and cancel_rec.offset > placed_rec.offset
    cancel = envelopes[1]
    assert cancel["order_id"] == oid and cancel["producer"] == "order-capture" and cancel["event_version"] == 1
    assert cancel["payload"] == {"order_id": oid, "reason": "customer changed mind", "requested_by": "channel:web"}
    assert dict(cancel_rec.headers)["event_type"] == b"OrderCancellationRequested"


async def test_operator_may_request_cancellation(cap, web, reader):
    order = await placed_and_announced(cap, web, reader)
    oid = order["order_id"]

    resp = await cap.http.post(f"{cap.url}/v1/orders/{oid}/cancel", json={"reason": "fraud check"}, headers=ADMIN)

    assert resp.status_code == 202, resp.text
    await reader.wait_for(has_event(oid, "OrderCancellationRequested"), timeout=30)
    cancel = [e for e in envelopes_for(reader, oid) if e["event_type"] == "OrderCancellationRequested"]
    assert [e["payload"]["requested_by"] for e in cancel] == ["operator"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({}, ("reason", "missing"), id="missing-reason"),
        pytest.param({"reason": ""}, ("reason", "string_too_short"), id="empty-reason"),
        pytest.param({"reason": "   "}, ("reason", "string_too_short"), id="blank-reason"),
        pytest.param({"reason": "r" * 501}, ("reason", "string_too_long"), id="long-reason"),
        pytest.param({"reason": 42}, ("reason", "string_type"), id="number-reason"),
        pytest.param({"reason": "ok", "when": "now"}, ("when", "extra_forbidden"), id="unknown-field"),
        pytest.param(None, ("body", "missing"), id="no-body"),
    ],
)
async def test_bad_cancel_request_is_422_and_publishes_nothing(cap, web, reader, body, expected):
    order = await placed_and_announced(cap, web, reader)
    oid = order["order_id"]
    before = await cap.snapshot()

    resp = await cap.http.post(f"{cap.url}/v1/orders/{oid}/cancel", json=body, headers=web.auth)

    assert resp.status_code == 422, resp.text
    assert expected in error_fields(resp), resp.text
    await assert_refused_left_no_trace(cap, web, reader, before, None)
    assert [e["event_type"] for e in envelopes_for(reader, oid)] == ["OrderPlaced"]


async def test_cancel_of_unknown_order_is_404(cap, web):
    before = await cap.snapshot()

    unknown = await cap.http.post(f"{cap.url}/v1/orders/{uuid.uuid4()}/cancel", json={"reason": "x"},
                                  headers=web.auth)
    malformed = await cap.http.post(f"{cap.url}/v1/orders/not-an-id/cancel", json={"reason": "x"}, headers=web.auth)

    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert malformed.status_code == 422 and error_fields(malformed)[0][0] == "order_id"
    assert await cap.snapshot() == before


def status_event(order_id: str, new_status: str, changed_at: datetime, *, reason: str | None = None,
                 old_status: str | None = None, sequence: int | None = None) -> Envelope:
    event = OrderStatusChangedV1(order_id=uuid.UUID(order_id), old_status=old_status, new_status=new_status,
                                 reason=reason, changed_at=changed_at, sequence=sequence)
    return new_envelope(event, producer="orchestrator", order_id=uuid.UUID(order_id))


async def publish(cap: Capture, *envelopes: Envelope) -> None:
    await produce(cap.kafka, ORDERS_STATUS, [
        (str(env.order_id).encode(), env.model_dump_json().encode(), [("event_type", env.event_type.encode())])
        for env in envelopes
    ])


async def inbox_count(cap: Capture, event_id: uuid.UUID) -> int:
    return await cap.db.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", event_id)


async def order_row(cap: Capture, order_id: str) -> dict[str, Any]:
    return dict(await cap.db.fetchrow(
        "SELECT status, status_reason, status_changed_at, updated_at FROM orders WHERE order_id = $1",
        uuid.UUID(order_id)))


async def wait_for_status(cap: Capture, key: ChannelKey, order_id: str, status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        got = (await cap.http.get(f"{cap.url}/v1/orders/{order_id}", headers=key.auth)).json()
        return got if got["status"] == status else None

    return await eventually(check, timeout=60, what=f"order {order_id} to be {status}")


async def consumed_past(cap: Capture, order_id: str, t0: datetime) -> None:
    """Waits until the consumer has handled everything published so far for the order: a stale
    status change (older than any applied) is sent on the same key, so after the ones before it, and
    its event id reaching the inbox means they were handled. Being stale, it changes nothing."""
    marker = status_event(order_id, "rejected", t0 - timedelta(days=2), reason="stale marker")
    await publish(cap, marker)
    await eventually(lambda: inbox_count(cap, marker.event_id), timeout=60, what="the consumer to reach the marker")


def later() -> datetime:
    """The time of the status changes these tests send: a day ahead, so that a change a saga of a
    concurrent run on the same Kafka may send for these orders (stamped now) is stale beside them."""
    return datetime.now(UTC) + timedelta(days=1)


async def test_status_change_is_applied_once_and_stale_or_repeated_changes_are_ignored(cap, web, reader):
    order = await cap.place_ok(web)
    oid = order["order_id"]
    t0 = later()
    a = status_event(oid, "confirmed", t0 + timedelta(seconds=1), old_status="pending", reason="stock reserved")
    b = status_event(oid, "cancelled", t0 + timedelta(seconds=2), old_status="confirmed", reason="customer_request")

    await publish(cap, a)
    confirmed = await wait_for_status(cap, web, oid, "confirmed")
    assert confirmed["status_reason"] == "stock reserved"

    await publish(cap, b)
    cancelled = await wait_for_status(cap, web, oid, "cancelled")
    assert cancelled["status_reason"] == "customer_request"
    row_after_b = await order_row(cap, oid)

    await publish(cap, a)  # the same envelope again: same event_id
    await consumed_past(cap, oid, t0)

    got = (await cap.http.get(f"{cap.url}/v1/orders/{oid}", headers=web.auth)).json()
    assert (got["status"], got["status_reason"]) == ("cancelled", "customer_request")
    assert await order_row(cap, oid) == row_after_b
    assert await inbox_count(cap, a.event_id) == 1
    assert await inbox_count(cap, b.event_id) == 1
    # Cancelled is final for cancellation requests.
    again = await cap.http.post(f"{cap.url}/v1/orders/{oid}/cancel", json={"reason": "twice"}, headers=web.auth)
    assert again.status_code == 409, again.text
    assert "cancelled" in again.json()["error"]["message"]


async def test_redelivered_status_change_has_no_second_effect(cap, web):
    """A redelivery of the latest change would pass the changed_at guard; only the inbox stops it
    (it would otherwise bump updated_at)."""
    order = await cap.place_ok(web)
    oid = order["order_id"]
    t0 = later()
    a = status_event(oid, "confirmed", t0, old_status="pending", reason="stock reserved")

    await publish(cap, a)
    await wait_for_status(cap, web, oid, "confirmed")
    first = await order_row(cap, oid)

    await publish(cap, a, a)
    await consumed_past(cap, oid, t0)

    assert await order_row(cap, oid) == first
    assert await inbox_count(cap, a.event_id) == 1


async def test_the_higher_sequence_wins_whatever_the_clocks_and_the_delivery_order(cap, web):
    """Two orchestrator processes (or a clock step): the final status is announced with an earlier
    changed_at than the one before it, and arrives first. The orchestrator's per-order sequence
    decides, not the time."""
    order = await cap.place_ok(web)
    oid = order["order_id"]
    t0 = later()
    final = status_event(oid, "cancelled", t0, old_status="confirmed", reason="customer_request", sequence=2)
    earlier = status_event(oid, "confirmed", t0 + timedelta(minutes=5), old_status="pending", sequence=1)

    await publish(cap, final)
    await wait_for_status(cap, web, oid, "cancelled")
    await publish(cap, earlier)  # later by its clock, earlier by its sequence
    await consumed_past(cap, oid, t0)
    assert await inbox_count(cap, earlier.event_id) == 1  # consumed, and left the status alone
    got = (await cap.http.get(f"{cap.url}/v1/orders/{oid}", headers=web.auth)).json()
    assert (got["status"], got["status_reason"]) == ("cancelled", "customer_request")

    # Both in one batch, the lower sequence last: the higher one still wins.
    other = (await cap.place_ok(web))["order_id"]
    await publish(cap, status_event(other, "rejected", t0, old_status="pending", sequence=2),
                  status_event(other, "confirmed", t0 + timedelta(minutes=5), old_status="pending", sequence=1))
    await consumed_past(cap, other, t0)
    assert (await cap.http.get(f"{cap.url}/v1/orders/{other}", headers=web.auth)).json()["status"] == "rejected"


async def test_unreadable_status_messages_go_to_the_dead_letter_topic(cap, web):
    dead = await events_reader(cap.kafka, dlq(ORDERS_STATUS))
    try:
        order = await cap.place_ok(web)
        oid = order["order_id"]
        garbage_key = str(uuid.uuid4())
        bad_payload = status_event(oid, "confirmed", datetime.now(UTC)).model_dump(mode="json")
        bad_payload["payload"]["new_status"] = "teleported"

        await produce(cap.kafka, ORDERS_STATUS, [
            (garbage_key.encode(), b"{not json", []),
            (oid.encode(), orjson.dumps(bad_payload), [("event_type", b"OrderStatusChanged")]),
        ])
        await dead.wait_for(lambda rs: {garbage_key.encode(), oid.encode()} <= {r.key for r in rs}, timeout=60)

        for key in (garbage_key, oid):
            rec = next(r for r in dead.records if r.key == key.encode())
            headers = dict(rec.headers)
            assert headers["dlq.original_topic"] == ORDERS_STATUS.encode()
            assert headers["dlq.error"]
        # The consumer carried on: a good change after them is applied; the bad one was not.
        await publish(cap, status_event(oid, "backordered", later(), reason="waiting for stock"))
        got = await wait_for_status(cap, web, oid, "backordered")
        assert got["status_reason"] == "waiting for stock"
    finally:
        await dead.stop()


async def test_a_repeated_cancel_is_announced_once(cap, web, reader):
    order = await placed_and_announced(cap, web, reader)
    oid = order["order_id"]
    answers = []
    for reason in ("first", "second", "third"):
        resp = await cap.http.post(f"{cap.url}/v1/orders/{oid}/cancel", json={"reason": reason}, headers=web.auth)
        assert resp.status_code == 202, resp.text
        answers.append(resp.json())
    assert [a["cancellation"] for a in answers] == ["requested", "already_requested", "already_requested"]
    assert answers[2]["reason"] == "first"
    await reader.wait_for(has_event(oid, "OrderCancellationRequested"), timeout=30)
    await reader.drain(1.5)
    assert [e["event_type"] for e in envelopes_for(reader, oid)] == ["OrderPlaced", "OrderCancellationRequested"]
