"""Return requests end to end (returns beside the order saga, every service a real process on real
Kafka and PostgreSQL): eligibility rules, each refusal a 422 naming its rule with nothing stored;
approval with a label; idempotency; two concurrent requests for the last returnable unit."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.support.pdf import code128_values
from tests.support.polling import eventually
from tests.support.returns import (
    WITH_RETURNS,
    delivered_order,
    get_return,
    place,
    request,
    request_when_copied,
    return_body,
)
from tests.support.system import ADMIN, System, unique

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
async def system(infra, log_dir) -> AsyncIterator[System]:
    # Channel "pos" takes returns for 0 days after delivery: every pos order is outside its window.
    env = {"returns": {"RETURN_WINDOW_DAYS_BY_CHANNEL": '{"pos": 0}'}}
    system = await System.start(infra, log_dir, env=env, services=WITH_RETURNS)
    yield system
    await system.stop()


def rules(resp) -> list[tuple[str, str]]:
    return [(f["field"], f["rule"]) for f in resp.json()["error"]["fields"]]


async def test_an_eligible_return_is_approved_with_a_label_and_each_rule_refuses(system: System):
    shirt, mug, other = unique("TEE"), unique("MUG"), unique("CAP")
    await system.sku_settings(mug, returnable=False)
    order_id = await delivered_order(system, {shirt: 2, mug: 1})

    # Not returnable (inventory's setting, copied from its SkuSettingsChanged), more than delivered,
    # not in the order: one 422 naming each line's rule.
    resp = await request_when_copied(system, return_body(order_id, {mug: 1, shirt: 3, other: 1}))
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "not_eligible"
    assert rules(resp) == [("lines[0].sku", "returnable"), ("lines[1].quantity", "returnable_quantity"),
                           ("lines[2].sku", "in_order")]
    listed = await system.call("GET", "returns", "/v1/returns", params={"order_id": order_id})
    assert listed == {"items": [], "next_cursor": None}  # nothing stored for a refused request

    # Eligible: approved at once, awaiting the goods, with a label carrying its tracking number.
    body, key = return_body(order_id, {shirt: 1}), f"ret-{uuid.uuid4().hex}"
    created = (await request(system, body, key=key)).json()
    assert created["status"] == "awaiting_receipt" and created["resolution"] == "refund"
    assert [h["status"] for h in created["history"]] == ["requested", "approved", "awaiting_receipt"]
    assert created["lines"] == [{"sku": shirt, "quantity": 1, "reason": "too_small", "unit_price": "19.90"}]
    assert await get_return(system, created["return_id"]) == created
    label = await system.http.get(f"{system.url('returns')}{created['label_url']}", headers=ADMIN)
    assert label.status_code == 200 and label.headers["content-type"] == "application/pdf"
    assert code128_values(label.content) == [created["tracking_number"]]

    # The same request again: the same return, no second one; the key with another body: 409.
    again = (await request(system, body, key=key)).json()
    assert again == created
    conflict = await request(system, return_body(order_id, {shirt: 2}), key=key, expect=409)
    assert conflict.json()["error"]["code"] == "idempotency_key_reused"

    # One unit is left: two are refused (delivered minus already requested), one is accepted.
    resp = await request(system, return_body(order_id, {shirt: 2}), expect=422)
    assert rules(resp) == [("lines[0].quantity", "returnable_quantity")]
    await request(system, return_body(order_id, {shirt: 1}))
    listed = await system.call("GET", "returns", "/v1/returns", params={"order_id": order_id})
    assert len(listed["items"]) == 2


async def test_not_delivered_and_outside_the_window_are_refused(system: System):
    sku = unique("TEE")
    loc = unique("LIS")
    await system.location(loc, "PT")
    await system.set_stock(loc, sku, 5)
    order_id = await place(system, {sku: 1})
    await system.wait_status(order_id, "confirmed")

    async def refused() -> object:  # once returns has its copy of the order (404 before)
        resp = await request(system, return_body(order_id, {sku: 1}), expect=(404, 422))
        return resp if resp.status_code == 422 else None

    resp = await eventually(refused, what="returns to know the order")
    assert rules(resp) == [("lines[0].sku", "delivered")]

    key = await system.call("POST", "order-capture", "/v1/admin/api-keys", expect=201, json={"channel": "pos"})
    pos = {"Authorization": f"Bearer {key['key']}"}
    pos_sku = unique("TEE")
    pos_order = await delivered_order(system, {pos_sku: 1}, headers=pos, channel="pos")
    resp = await request_when_copied(system, return_body(pos_order, {pos_sku: 1}), headers=pos)
    assert resp.status_code == 422 and rules(resp) == [("lines[0].sku", "return_window")]
    # Another channel's order is not found for a channel key (ids do not leak across channels).
    other = await request(system, return_body(pos_order, {pos_sku: 1}), expect=404)
    assert other.json()["error"]["code"] == "not_found"


async def test_two_concurrent_requests_for_the_last_unit_accept_one(system: System):
    sku = unique("TEE")
    order_id = await delivered_order(system, {sku: 1})
    first = await request_when_copied(system, return_body(order_id, {sku: 1}))
    assert first.status_code == 201  # warms up: the order is copied; now race two requests for one more unit
    await system.call("POST", "returns", f"/v1/returns/{first.json()['return_id']}/cancel", json={"reason": "x"})
    results = await asyncio.gather(*(request(system, return_body(order_id, {sku: 1}), expect=(201, 422))
                                     for _ in range(2)))
    assert sorted(r.status_code for r in results) == [201, 422]
    [refused] = [r for r in results if r.status_code == 422]
    assert rules(refused) == [("lines[0].quantity", "returnable_quantity")]
