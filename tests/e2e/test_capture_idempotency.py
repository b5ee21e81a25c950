"""Idempotency-Key and external_id: a retried order is stored and announced once, a reused key with a
different body or a reused external_id is a 409, and a bad Idempotency-Key is a 422."""

import asyncio
import copy
import uuid
from datetime import datetime
from decimal import Decimal

import orjson
import pytest

from oms_contracts import Envelope, parse_payload
from oms_contracts.orders import OrderPlacedV1
from tests.support.capture import (
    Capture,
    assert_refused_left_no_trace,
    envelopes_for,
    error_fields,
    has_event,
    records_for,
)
from tests.support.orders import new_order


async def orders_with_external_id(cap: Capture, channel: str, external_id: str) -> list[str]:
    rows = await cap.db.fetch("SELECT order_id FROM orders WHERE channel = $1 AND external_id = $2",
                              channel, external_id)
    return [str(r["order_id"]) for r in rows]


async def test_concurrent_retries_with_one_key_store_and_announce_one_order(cap, web, reader):
    body = new_order()
    key = f"retry-{uuid.uuid4().hex}"
    before = await cap.snapshot()

    responses = await asyncio.gather(*(cap.place(web, body, key) for _ in range(20)))

    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
    first = responses[0].json()
    assert all(r.json() == first for r in responses), "every retry must get the first response"
    assert {r.headers["location"] for r in responses} == {f"/v1/orders/{first['order_id']}"}
    order_id = first["order_id"]
    assert await orders_with_external_id(cap, "web", body["external_id"]) == [order_id]
    assert await cap.db.fetchval("SELECT count(*) FROM idempotency_keys WHERE channel = 'web' AND key = $1", key) == 1
    # One outbox row was written (rows leave the outbox once published): announced once, below.
    assert (await cap.snapshot())["outbox_ids"] == before["outbox_ids"] + 1

    await reader.wait_for(has_event(order_id, "OrderPlaced"), timeout=30)
    await reader.drain(2.0)
    envelopes = envelopes_for(reader, order_id)
    assert [e["event_type"] for e in envelopes] == ["OrderPlaced"]
    assert envelopes[0]["payload"]["external_id"] == body["external_id"]


async def test_retry_with_same_body_in_another_json_layout_gets_the_first_response(cap, web):
    body = new_order()
    key = f"layout-{uuid.uuid4().hex}"
    first = await cap.place(web, body, key)
    assert first.status_code == 201, first.text

    reordered = {k: body[k] for k in reversed(list(body))}
    raw = orjson.dumps(reordered, option=orjson.OPT_INDENT_2)
    again = await cap.http.post(f"{cap.url}/v1/orders", content=raw,
                                headers={**web.headers(key), "Content-Type": "application/json"})

    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert await orders_with_external_id(cap, "web", body["external_id"]) == [first.json()["order_id"]]


async def test_replay_after_status_change_still_answers_the_first_response(cap, web):
    body = new_order()
    key = f"replay-{uuid.uuid4().hex}"
    first = (await cap.place(web, body, key)).json()
    await cap.db.execute("UPDATE orders SET status = 'confirmed' WHERE order_id = $1", uuid.UUID(first["order_id"]))

    again = await cap.place(web, body, key)

    assert again.status_code == 201
    assert again.json() == first


async def test_a_key_keeps_no_response_and_a_replay_rebuilds_the_first_one_from_the_order(cap, web):
    body = new_order()
    key = f"rebuilt-{uuid.uuid4().hex}"
    first = (await cap.place(web, body, key)).json()
    assert await cap.db.fetchval("SELECT response FROM idempotency_keys WHERE channel = 'web' AND key = $1",
                                 key) is None  # nothing stored but the hash: the order's row has the rest
    await cap.db.execute("UPDATE orders SET status = 'cancelled', status_reason = 'x', updated_at = now() "
                         "WHERE order_id = $1", uuid.UUID(first["order_id"]))

    again = await cap.place(web, body, key)

    assert again.status_code == 201 and again.json() == first
    assert first["status"] == "pending" and first["updated_at"] == first["created_at"]


async def test_a_key_stored_with_its_response_before_migration_0005_answers_that_response(cap, web):
    body = new_order()
    key = f"stored-{uuid.uuid4().hex}"
    first = (await cap.place(web, body, key)).json()
    stored = {**first, "note": "the response as stored then"}
    await cap.db.execute("UPDATE idempotency_keys SET response = $2::text::jsonb WHERE channel = 'web' AND key = $1",
                         key, orjson.dumps(stored).decode())

    again = await cap.place(web, body, key)

    assert again.status_code == 201 and again.json() == stored


async def test_same_key_with_a_different_body_is_409_naming_the_key(cap, web, reader):
    body = new_order()
    key = f"reuse-{uuid.uuid4().hex}"
    first = await cap.place(web, body, key)
    assert first.status_code == 201, first.text
    order_id = first.json()["order_id"]
    different = copy.deepcopy(body)
    different["lines"][0]["quantity"] = 3
    different["payment"]["amount"] = "59.70"
    await reader.wait_for(has_event(order_id, "OrderPlaced"), timeout=30)
    before = await cap.snapshot()

    resp = await cap.place(web, different, key)

    assert resp.status_code == 409, resp.text
    err = resp.json()["error"]
    assert err["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in err["message"]
    assert ("Idempotency-Key", "same_body_for_same_key") in error_fields(resp)
    assert order_id in err["fields"][0]["message"]
    await assert_refused_left_no_trace(cap, web, reader, before, None)
    assert len(records_for(reader, order_id)) == 1
    # The key still answers its own body with the first order.
    again = await cap.place(web, body, key)
    assert again.status_code == 201 and again.json() == first.json()


async def test_same_key_in_another_channel_is_another_request(cap, web, pos):
    key = f"shared-{uuid.uuid4().hex}"
    web_order = await cap.place(web, new_order(channel="web"), key)
    pos_order = await cap.place(pos, new_order(channel="pos"), key)

    assert web_order.status_code == 201 and pos_order.status_code == 201, (web_order.text, pos_order.text)
    assert web_order.json()["order_id"] != pos_order.json()["order_id"]
    assert pos_order.json()["channel"] == "pos"


@pytest.mark.parametrize(
    ("idempotency_key", "rule"),
    [
        pytest.param(None, "required", id="missing"),
        pytest.param("", "printable_1_to_255", id="empty"),
        pytest.param("k" * 256, "printable_1_to_255", id="256-chars"),
        pytest.param("tab\there", "printable_1_to_255", id="tab"),
        pytest.param("caf\u00e9".encode(), "printable_1_to_255", id="non-ascii"),
    ],
)
async def test_bad_idempotency_key_is_422_naming_the_header(cap, web, reader, idempotency_key, rule):
    body = new_order()
    headers: dict = dict(web.auth)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    before = await cap.snapshot()

    resp = await cap.http.post(f"{cap.url}/v1/orders", json=body, headers=headers)

    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_failed"
    assert ("Idempotency-Key", rule) in error_fields(resp), resp.text
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


async def test_idempotency_key_of_255_printable_characters_is_accepted(cap, web):
    key = ("~ !" + uuid.uuid4().hex) * 20
    key = key[:255]
    body = new_order()

    first = await cap.place(web, body, key)
    again = await cap.place(web, body, key)

    assert first.status_code == 201, first.text
    assert again.status_code == 201 and again.json() == first.json()
    assert await cap.db.fetchval("SELECT key FROM idempotency_keys WHERE channel = 'web' AND order_id = $1",
                                 uuid.UUID(first.json()["order_id"])) == key


async def test_external_id_reused_in_a_channel_is_409_naming_the_existing_order(cap, web, reader):
    body = new_order()
    existing = (await cap.place(web, body)).json()["order_id"]
    await reader.wait_for(has_event(existing, "OrderPlaced"), timeout=30)
    second = copy.deepcopy(body)
    second["customer"]["id"] = "someone-else"
    key = f"dup-ext-{uuid.uuid4().hex}"
    before = await cap.snapshot()

    resp = await cap.place(web, second, key)

    assert resp.status_code == 409, resp.text
    err = resp.json()["error"]
    assert err["code"] == "duplicate_external_id"
    assert existing in err["message"]
    assert ("external_id", "unique_per_channel") in error_fields(resp)
    await assert_refused_left_no_trace(cap, web, reader, before, None)
    assert len(records_for(reader, existing)) == 1
    assert await orders_with_external_id(cap, "web", body["external_id"]) == [existing]
    # The refused request did not claim its key: the same request is refused again, not replayed.
    again = await cap.place(web, second, key)
    assert again.status_code == 409 and existing in again.json()["error"]["message"]


async def test_another_channel_may_reuse_an_external_id(cap, web, pos):
    web_body = new_order(channel="web")
    web_order = await cap.place_ok(web, web_body)
    pos_body = new_order(channel="pos")
    pos_body["external_id"] = web_body["external_id"]

    pos_order = await cap.place_ok(pos, pos_body)

    assert pos_order["external_id"] == web_order["external_id"]
    assert pos_order["order_id"] != web_order["order_id"]
    assert await orders_with_external_id(cap, "web", web_body["external_id"]) == [web_order["order_id"]]
    assert await orders_with_external_id(cap, "pos", web_body["external_id"]) == [pos_order["order_id"]]


async def test_concurrent_orders_with_one_external_id_make_one_order(cap, web, reader):
    body = new_order()

    responses = await asyncio.gather(*(cap.place(web, body) for _ in range(6)))  # each with its own key

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 5, [r.text for r in responses]
    winner = next(r.json()["order_id"] for r in responses if r.status_code == 201)
    for r in responses:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "duplicate_external_id"
            assert winner in r.json()["error"]["message"]
    assert await orders_with_external_id(cap, "web", body["external_id"]) == [winner]
    assert await cap.db.fetchval("SELECT count(*) FROM idempotency_keys WHERE order_id = $1",
                                 uuid.UUID(winner)) == 1
    await reader.wait_for(has_event(winner, "OrderPlaced"), timeout=30)
    await reader.drain(1.5)
    placed = [e for e in reader.envelopes() if e["payload"].get("external_id") == body["external_id"]]
    assert [e["order_id"] for e in placed] == [winner]


async def test_order_placed_event_carries_the_order_as_the_contract_says(cap, web, reader):
    body = new_order(lines=[{"sku": "A-1", "quantity": 3, "unit_price": "0.10"},
                            {"sku": "B-2", "quantity": 1, "unit_price": "7.00"}])
    body["payment"]["amount"] = "7.30"
    order = await cap.place_ok(web, body)
    oid = order["order_id"]

    await reader.wait_for(has_event(oid, "OrderPlaced"), timeout=30)

    (rec,) = records_for(reader, oid)
    raw = orjson.loads(rec.value)
    env = Envelope.model_validate(raw)
    assert (env.event_type, env.event_version, env.producer) == ("OrderPlaced", 1, "order-capture")
    assert str(env.order_id) == oid and str(env.correlation_id) == oid and env.causation_id is None
    placed = parse_payload(env.event_type, env.event_version, env.payload)
    assert isinstance(placed, OrderPlacedV1)
    assert str(placed.order_id) == oid
    assert (placed.channel, placed.external_id, placed.currency) == ("web", body["external_id"], "EUR")
    assert placed.total == Decimal("7.30") and placed.payment.amount == Decimal("7.30")
    assert placed.created_at == datetime.fromisoformat(order["created_at"])
    assert placed.customer.model_dump() == body["customer"]
    assert placed.shipping_address.model_dump() == body["shipping_address"]
    assert placed.shipping_method == "standard" and placed.payment.status == "authorized"
    # Money is a decimal string on the wire, never a JSON number.
    payload = raw["payload"]
    assert payload["total"] == "7.30" and payload["payment"]["amount"] == "7.30"
    assert [(li["sku"], li["quantity"], li["unit_price"]) for li in payload["lines"]] == [
        ("A-1", 3, "0.10"), ("B-2", 1, "7.00")]
    headers = dict(rec.headers)
    assert headers["event_type"] == b"OrderPlaced" and headers["event_version"] == b"1"
    assert headers["traceparent"].startswith(b"00-")
