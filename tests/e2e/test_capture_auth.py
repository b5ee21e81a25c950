"""Who may call order capture: channel keys (one channel each), the operator token, revocation."""

import base64
import hashlib
import uuid

import httpx
import pytest

from tests.support.capture import (
    ADMIN,
    Capture,
    ChannelKey,
    assert_refused_left_no_trace,
    error_fields,
    running_capture,
)
from tests.support.orders import new_order

BAD_AUTH = [
    pytest.param({}, id="no-header"),
    pytest.param({"Authorization": "Bearer"}, id="bearer-without-token"),
    pytest.param({"Authorization": "Bearer oms_not-a-key"}, id="unknown-key"),
    pytest.param({"Authorization": "Bearer capture-admin-token-not"}, id="near-admin-token"),
    pytest.param({"Authorization": "Basic " + base64.b64encode(b"web:secret").decode()}, id="basic"),
    pytest.param({"Authorization": "oms_not-a-key"}, id="no-scheme"),
]


@pytest.fixture(scope="module")
async def web_order(cap: Capture, web: ChannelKey) -> dict:
    return await cap.place_ok(web)


@pytest.fixture(scope="module")
async def pos_order(cap: Capture, pos: ChannelKey) -> dict:
    return await cap.place_ok(pos)


def assert_unauthorized(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "unauthorized"
    assert resp.headers["www-authenticate"].lower().startswith("bearer")


def assert_forbidden(resp: httpx.Response) -> None:
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("auth", BAD_AUTH)
async def test_order_endpoints_refuse_missing_or_invalid_key(cap, web, reader, web_order, auth):
    body = new_order()
    before = await cap.snapshot()
    oid = web_order["order_id"]

    assert_unauthorized(await cap.http.post(f"{cap.url}/v1/orders", json=body,
                                            headers={**auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}))
    assert_unauthorized(await cap.http.get(f"{cap.url}/v1/orders/{oid}", headers=auth))
    assert_unauthorized(await cap.http.get(f"{cap.url}/v1/orders", headers=auth))
    assert_unauthorized(await cap.http.post(f"{cap.url}/v1/orders/{oid}/cancel", json={"reason": "x"}, headers=auth))

    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])
    assert not [e for e in reader.envelopes(oid) if e["event_type"] == "OrderCancellationRequested"]


@pytest.mark.parametrize("auth", BAD_AUTH)
async def test_operator_endpoints_refuse_missing_or_wrong_token(cap, web, auth):
    keys_before = await cap.db.fetchval("SELECT count(*) FROM api_keys")

    assert_unauthorized(await cap.http.post(f"{cap.url}/v1/admin/api-keys", json={"channel": "web"}, headers=auth))
    assert_unauthorized(await cap.http.get(f"{cap.url}/v1/admin/api-keys", headers=auth))
    assert_unauthorized(await cap.http.delete(f"{cap.url}/v1/admin/api-keys/{web.key_id}", headers=auth))

    assert await cap.db.fetchval("SELECT count(*) FROM api_keys") == keys_before
    assert (await cap.http.get(f"{cap.url}/v1/orders", headers=web.auth)).status_code == 200


async def test_channel_key_on_operator_endpoints_is_403(cap, web):
    """A channel key is valid credentials with the wrong scope."""
    keys_before = await cap.db.fetchval("SELECT count(*) FROM api_keys")

    assert_forbidden(await cap.http.post(f"{cap.url}/v1/admin/api-keys", json={"channel": "web"}, headers=web.auth))
    assert_forbidden(await cap.http.get(f"{cap.url}/v1/admin/api-keys", headers=web.auth))
    assert_forbidden(await cap.http.delete(f"{cap.url}/v1/admin/api-keys/{web.key_id}", headers=web.auth))

    assert await cap.db.fetchval("SELECT count(*) FROM api_keys") == keys_before
    assert (await cap.http.get(f"{cap.url}/v1/orders", headers=web.auth)).status_code == 200


async def test_key_of_one_channel_cannot_place_another_channels_order(cap, web, reader):
    body = new_order(channel="pos")
    before = await cap.snapshot()

    resp = await cap.place(web, body)

    assert_forbidden(resp)
    assert ("channel", "matches_api_key") in error_fields(resp)
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


async def test_operator_token_cannot_place_orders(cap, web, reader):
    body = new_order()
    before = await cap.snapshot()

    resp = await cap.http.post(f"{cap.url}/v1/orders", json=body,
                               headers={**ADMIN, "Idempotency-Key": f"k-{uuid.uuid4().hex}"})

    assert_forbidden(resp)
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


async def test_channel_cannot_read_another_channels_order(cap, web, pos, web_order, pos_order):
    oid = web_order["order_id"]

    other = await cap.http.get(f"{cap.url}/v1/orders/{oid}", headers=pos.auth)
    unknown = await cap.http.get(f"{cap.url}/v1/orders/{uuid.uuid4()}", headers=pos.auth)

    assert other.status_code == 404, other.text
    assert unknown.status_code == 404
    assert other.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    own = await cap.http.get(f"{cap.url}/v1/orders/{oid}", headers=web.auth)
    assert own.status_code == 200 and own.json()["order_id"] == oid
    assert (await cap.http.get(f"{cap.url}/v1/orders/{pos_order['order_id']}", headers=pos.auth)).status_code == 200


async def test_channel_lists_only_its_own_orders(cap, web, pos, web_order, pos_order):
    resp = await cap.http.get(f"{cap.url}/v1/orders", params={"limit": 200}, headers=pos.auth)

    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert pos_order["order_id"] in [o["order_id"] for o in items]
    assert web_order["order_id"] not in [o["order_id"] for o in items]
    assert {o["channel"] for o in items} == {"pos"}

    assert_forbidden(await cap.http.get(f"{cap.url}/v1/orders", params={"channel": "web"}, headers=pos.auth))
    own = await cap.http.get(f"{cap.url}/v1/orders", params={"channel": "pos"}, headers=pos.auth)
    assert own.status_code == 200 and {o["channel"] for o in own.json()["items"]} == {"pos"}


async def test_channel_cannot_cancel_another_channels_order(cap, pos, web_order, reader):
    oid = web_order["order_id"]
    before = await cap.snapshot()

    resp = await cap.http.post(f"{cap.url}/v1/orders/{oid}/cancel", json={"reason": "not mine"}, headers=pos.auth)

    assert resp.status_code == 404, resp.text
    assert await cap.snapshot() == before  # nothing written to the outbox (nor anywhere)


async def test_operator_reads_every_channel(cap, web_order, pos_order):
    for order in (web_order, pos_order):
        got = await cap.http.get(f"{cap.url}/v1/orders/{order['order_id']}", headers=ADMIN)
        assert got.status_code == 200 and got.json()["channel"] == order["channel"]

    everything = await cap.http.get(f"{cap.url}/v1/orders", params={"limit": 200}, headers=ADMIN)
    ids = {o["order_id"] for o in everything.json()["items"]}
    assert {web_order["order_id"], pos_order["order_id"]} <= ids

    web_only = await cap.http.get(f"{cap.url}/v1/orders", params={"channel": "web", "limit": 200}, headers=ADMIN)
    assert web_only.status_code == 200
    assert {o["channel"] for o in web_only.json()["items"]} == {"web"}
    assert web_order["order_id"] in {o["order_id"] for o in web_only.json()["items"]}


async def test_revoked_key_is_refused_at_once(cap, web):
    key = await cap.new_key("web")
    order = await cap.place_ok(key)  # the key is now in the process's cache
    assert (await cap.http.get(f"{cap.url}/v1/orders/{order['order_id']}", headers=key.auth)).status_code == 200

    revoke = await cap.http.delete(f"{cap.url}/v1/admin/api-keys/{key.key_id}", headers=ADMIN)

    assert revoke.status_code == 204, revoke.text
    assert_unauthorized(await cap.place(key))
    assert_unauthorized(await cap.http.get(f"{cap.url}/v1/orders/{order['order_id']}", headers=key.auth))
    assert_unauthorized(await cap.http.get(f"{cap.url}/v1/orders", headers=key.auth))
    # Other keys of the channel are untouched; the order stays readable with them.
    assert (await cap.http.get(f"{cap.url}/v1/orders/{order['order_id']}", headers=web.auth)).status_code == 200
    listed = (await cap.http.get(f"{cap.url}/v1/admin/api-keys", headers=ADMIN)).json()["items"]
    revoked = next(k for k in listed if str(k["key_id"]) == key.key_id)
    assert revoked["revoked_at"] is not None
    assert all("key" not in k and "key_hash" not in k for k in listed)
    # Revoking again changes nothing; an unknown key id is 404; a malformed one is 422.
    assert (await cap.http.delete(f"{cap.url}/v1/admin/api-keys/{key.key_id}", headers=ADMIN)).status_code == 204
    assert_unauthorized(await cap.place(key))
    assert (await cap.http.delete(f"{cap.url}/v1/admin/api-keys/{uuid.uuid4()}", headers=ADMIN)).status_code == 404
    bad = await cap.http.delete(f"{cap.url}/v1/admin/api-keys/not-a-uuid", headers=ADMIN)
    assert bad.status_code == 422 and error_fields(bad)[0][0] == "key_id"


async def test_key_is_stored_hashed(cap):
    key = await cap.new_key("web")

    row = await cap.db.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", uuid.UUID(key.key_id))

    assert row["key_hash"] == hashlib.sha256(key.key.encode()).digest()
    assert key.key not in repr(dict(row))
    assert key.key.encode() not in bytes(row["key_hash"])


@pytest.mark.parametrize("body", [{"channel": "Web Shop!"}, {"channel": ""}, {}],
                         ids=["bad-chars", "empty", "missing"])
async def test_create_key_validates_the_channel(cap, body):
    keys_before = await cap.db.fetchval("SELECT count(*) FROM api_keys")

    resp = await cap.http.post(f"{cap.url}/v1/admin/api-keys", json=body, headers=ADMIN)

    assert resp.status_code == 422, resp.text
    assert error_fields(resp)[0][0] == "channel"
    assert await cap.db.fetchval("SELECT count(*) FROM api_keys") == keys_before


async def test_without_admin_token_operator_endpoints_refuse_every_call(infra, log_dir):
    async with running_capture(infra, log_dir, "noadmin", OMS_ADMIN_TOKEN="") as cap:
        for auth in ({}, {"Authorization": "Bearer"}, ADMIN, {"Authorization": "Bearer None"}):
            assert_unauthorized(await cap.http.post(f"{cap.url}/v1/admin/api-keys", json={"channel": "web"},
                                                    headers=auth))
            assert_unauthorized(await cap.http.get(f"{cap.url}/v1/admin/api-keys", headers=auth))
        assert await cap.db.fetchval("SELECT count(*) FROM api_keys") == 0
