"""Notification beside the real saga: every service a real process on real Kafka and PostgreSQL, a
real SMTP server and a real webhook receiver. The customer gets each email of the journey once, with
the real carrier, tracking number and tracking link; a cancelled order one cancellation email; the
receiver the order's events, signed, in order."""


from collections.abc import AsyncIterator

import pytest

from oms_platform.links import tracking_url
from tests.support.notification import ADMIN, Receiver, SmtpSink, stocked, wait_for
from tests.support.system import SERVICES, System

pytestmark = pytest.mark.infra

SECRET = "whsec-e2e-0123456789abcdef"
LINK_SECRET, PUBLIC_URL = "e2e-link-secret", "https://track.shop.example"


@pytest.fixture(scope="module")
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
async def system(infra, log_dir, smtp: SmtpSink) -> AsyncIterator[System]:
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SENDER_POLL_SECONDS": "0.2", "LOG_LEVEL": "INFO",
           "TRACKING_LINK_SECRET": LINK_SECRET, "TRACKING_PUBLIC_URL": PUBLIC_URL}
    system = await System.start(infra, log_dir, services=(*SERVICES, "notification"), env={"notification": env})
    yield system
    await system.stop()


@pytest.fixture(scope="module")
async def receiver(system: System) -> AsyncIterator[Receiver]:
    r = Receiver(SECRET).start()
    await system.call("POST", "notification", "/v1/webhook-subscriptions", expect=201, headers=ADMIN, json={
        "url": r.url, "secret": SECRET,
        "event_types": ["OrderPlaced", "OrderStatusChanged", "ShipmentDispatched", "ShipmentDelivered"]})
    yield r
    r.stop()


async def test_journey_emails_once_each_and_webhooks_in_order(system: System, smtp: SmtpSink, receiver: Receiver):
    order_id = await system.place(await stocked(system, locations=2))
    shipments = await system.wait_shipments(order_id, 2)
    for s in shipments:
        await system.dispatch(s["shipment_id"])
        await system.deliver(s)
    await system.wait_status(order_id, "delivered")
    await wait_for(lambda: len(smtp.of_order(order_id)) >= 4, what="the journey's four emails")
    statuses = [c["new_status"] for c in await system.status_changes(order_id, "delivered")]
    expected_hooks = 1 + len(statuses) + 2 + 2  # placed, every status change, two dispatches, two deliveries
    await wait_for(lambda: len(receiver.of_order(order_id)) >= expected_hooks, what="the webhooks")

    mails = smtp.of_order(order_id)
    assert len(mails) == 4 and len({m["Message-ID"] for m in mails}) == 4
    assert all(m["To"].addresses[0].addr_spec == "ana@example.com" for m in mails)
    link = tracking_url(PUBLIC_URL, LINK_SECRET, order_id)
    dispatched = [m for m in mails if "on its way" in m["Subject"]]
    assert len(dispatched) == 2
    for s in shipments:
        [mail] = [m for m in dispatched if s["tracking_number"] in m.get_body(("plain",)).get_content()]
        text, html = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
        assert s["carrier"] in text and s["tracking_number"] in html and link in text
    assert sorted(m["Subject"].split()[-1] for m in mails) == ["confirmed", "delivered", "way", "way"]

    got = receiver.of_order(order_id)
    assert len({e["event_id"] for e in got}) == len(got) == expected_hooks
    assert got[0]["event_type"] == "OrderPlaced"
    assert [e["payload"]["new_status"] for e in got if e["event_type"] == "OrderStatusChanged"] == statuses
    assert [e["occurred_at"] for e in got] == sorted(e["occurred_at"] for e in got)


async def test_cancelled_order_gets_one_cancellation_email(system: System, smtp: SmtpSink):
    order_id = await system.place(await stocked(system), payment_status="pending")
    await system.wait_status(order_id, "awaiting_payment")
    await system.cancel(order_id, reason="customer_request")
    await system.cancel(order_id, reason="customer_request")  # asked twice
    await system.wait_status(order_id, "cancelled")
    [mail] = await wait_for(lambda: smtp.of_order(order_id), what="the cancellation email")
    assert "was cancelled" in mail["Subject"]
    assert "you asked us to cancel it" in mail.get_body(("plain",)).get_content()
    log = await system.call("GET", "notification", "/v1/notifications", params={"order_id": order_id})
    assert [(i["template"], i["status"]) for i in log["items"] if i["channel"] == "email"] == [
        ("order_cancelled", "sent")]
