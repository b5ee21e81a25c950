"""Webhooks over real HTTP: the subscription API, signed deliveries of envelopes in each order's order,
retries with backoff while a receiver fails, a dead receiver not slowing the others, redelivery."""

import asyncio
import time
import uuid

import pytest

from tests.support.notification import ADMIN, Receiver, customer, delivery_log, receiver_example, wait_for

SECRET = "whsec-0123456789abcdef"
ALL = ["OrderPlaced", "OrderStatusChanged", "ShipmentDispatched", "ReturnApproved", "RefundCompleted"]


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def start(secret: str = SECRET) -> Receiver:
        r = Receiver(secret).start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


async def log_of(notif, order_id, *urls: str, **filters) -> list[dict]:
    """The order's webhook deliveries to these receivers (earlier tests' subscriptions get them too)."""
    items = await delivery_log(notif.http, notif.url, order_id=str(order_id), channel="webhook", **filters)
    return [i for i in items if i["url"] in urls]


async def subscribe(notif, url: str, event_types=None, secret: str = SECRET) -> dict:
    resp = await notif.http.post(f"{notif.url}/v1/webhook-subscriptions", headers=ADMIN,
                                 json={"url": url, "event_types": event_types or ALL, "secret": secret})
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_subscription_api(notif):
    base = f"{notif.url}/v1/webhook-subscriptions"
    body = {"url": "https://billing.example/hooks", "event_types": ["OrderStatusChanged"], "secret": SECRET}
    assert (await notif.http.post(base, json=body)).status_code == 401
    created = await notif.http.post(base, headers=ADMIN, json=body)
    assert created.status_code == 201 and "secret" not in created.json()
    sid = created.json()["subscription_id"]
    assert created.headers["location"] == f"/v1/webhook-subscriptions/{sid}"
    for bad, field in ((dict(body, url="ftp://x/y"), "url"), (dict(body, url="file:///etc/passwd"), "url"),
                       (dict(body, event_types=["Nope"]), "event_types"), (dict(body, secret="short"), "secret"),
                       (dict(body, event_types=[]), "event_types")):
        resp = await notif.http.post(base, headers=ADMIN, json=bad)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["fields"][0]["field"] == field
    listed = (await notif.http.get(base, headers=ADMIN, params={"limit": 200})).json()
    assert sid in [s["subscription_id"] for s in listed["items"]]
    assert all("secret" not in s for s in listed["items"])
    disabled = await notif.http.post(f"{base}/{sid}/disable", headers=ADMIN)
    assert disabled.json()["status"] == "disabled"
    assert (await notif.http.delete(f"{base}/{sid}", headers=ADMIN)).status_code == 204
    assert (await notif.http.get(f"{base}/{sid}", headers=ADMIN)).status_code == 404
    assert (await notif.http.delete(f"{base}/{sid}", headers=ADMIN)).status_code == 404
    types = (await notif.http.get(f"{notif.url}/v1/webhook-event-types", headers=ADMIN)).json()["topics"]
    assert "OrderStatusChanged" in types["oms.orders.status"]


async def test_deliveries_are_signed_envelopes_in_order(notif, receivers):
    receiver = receivers()
    sub = await subscribe(notif, receiver.url)
    order_id = uuid.uuid4()
    published = await notif.publish.journey(order_id, customer())
    await wait_for(lambda: len(receiver.of_order(order_id)) >= len(published), what="every event delivered")
    got = receiver.of_order(order_id)
    assert [e["event_id"] for e in got] == [e["event_id"] for e in published]
    assert got[1]["payload"]["new_status"] == "confirmed" and got[0]["payload"]["customer"]["id"]
    log = await log_of(notif, order_id, receiver.url)
    assert {i["status"] for i in log} == {"sent"} and {i["subscription_id"] for i in log} == {sub["subscription_id"]}
    assert log[0]["url"] == receiver.url and log[0]["event_type"] == "OrderPlaced"


async def test_wrong_secret_is_refused_by_the_receiver_and_retried(notif, receivers):
    receiver = receivers(secret="another-secret-0123456789")
    await subscribe(notif, receiver.url, ["OrderPlaced"])
    order_id = uuid.uuid4()
    await notif.publish.placed(order_id, customer())

    async def retried():
        items = await log_of(notif, order_id, receiver.url)
        return items if items and items[0]["attempts"] >= 2 else None

    [item] = await wait_for(retried, what="a retried delivery")
    assert item["last_error"].startswith("HTTP 401") and receiver.applied == []
    assert not receiver_example.verify(SECRET, b"{}", "sha256=00")


async def test_failing_receiver_gets_everything_in_order_and_others_are_not_slowed(notif, receivers):
    failing, healthy = receivers(), receivers()
    await subscribe(notif, failing.url)
    await subscribe(notif, healthy.url)
    failing.fail_until = time.monotonic() + 3
    orders = [uuid.uuid4() for _ in range(3)]
    published = {o: await notif.publish.journey(o, customer()) for o in orders}
    started = time.monotonic()
    await wait_for(lambda: all(len(healthy.of_order(o)) == 9 for o in orders), what="the healthy receiver")
    assert time.monotonic() - started < 3, "the healthy receiver waited for the failing one"
    assert failing.failures >= 1
    await wait_for(lambda: all(len(failing.of_order(o)) == 9 for o in orders), timeout=40,
                   what="the failing receiver to catch up")
    for o in orders:
        assert [e["event_id"] for e in failing.of_order(o)] == [e["event_id"] for e in published[o]]
    log = await log_of(notif, orders[0], failing.url, healthy.url)
    retried = [i for i in log if i["url"] == failing.url and i["attempts"] > 1]
    assert retried and all(i["status"] == "sent" for i in log)
    assert retried[0]["last_error"] is None  # cleared once sent


async def test_first_retry_comes_within_two_seconds(notif, receivers):
    receiver = receivers()
    await subscribe(notif, receiver.url, ["OrderPlaced"])
    receiver.fail_next = 1
    order_id = uuid.uuid4()
    await notif.publish.placed(order_id, customer())
    await wait_for(lambda: receiver.of_order(order_id), timeout=10, what="the delivery")
    [item] = await log_of(notif, order_id, receiver.url)
    assert item["attempts"] == 2
    assert (_ts(item["sent_at"]) - _ts(item["created_at"])) < 2.5


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


async def test_failed_after_the_limit_then_redelivered_by_an_operator(notif, receivers):
    receiver = receivers()
    await subscribe(notif, receiver.url, ["OrderPlaced"])
    receiver.fail_until = time.monotonic() + 3600
    order_id = uuid.uuid4()
    await notif.publish.placed(order_id, customer())

    async def failed():
        return await log_of(notif, order_id, receiver.url, status="failed") or None

    [item] = await wait_for(failed, timeout=40, what="the delivery to fail for good")
    assert item["attempts"] == item["max_attempts"] == 8
    receiver.fail_until = 0
    url = f"{notif.url}/v1/notifications/{item['notification_id']}/redeliver"
    assert (await notif.http.post(url)).status_code == 401
    resp = await notif.http.post(url, headers=ADMIN)
    assert resp.status_code == 200 and resp.json()["status"] == "pending"
    await wait_for(lambda: receiver.of_order(order_id), what="the redelivery")
    assert (await notif.http.post(f"{notif.url}/v1/notifications/{uuid.uuid4()}/redeliver",
                                  headers=ADMIN)).status_code == 404


async def test_sent_email_is_not_redelivered(notif):
    order_id = uuid.uuid4()
    await notif.publish.placed(order_id, customer())
    await notif.publish.status(order_id, "confirmed", "pending")

    async def sent():
        items = await delivery_log(notif.http, notif.url, order_id=str(order_id), status="sent")
        return items or None

    [item] = await wait_for(sent, what="the email")
    resp = await notif.http.post(f"{notif.url}/v1/notifications/{item['notification_id']}/redeliver", headers=ADMIN)
    assert resp.status_code == 409
    await asyncio.sleep(0)


SERVICE_ENV = {"WEBHOOK_MAX_ATTEMPTS": "8"}
