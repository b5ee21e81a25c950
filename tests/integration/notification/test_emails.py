"""Customer emails over real Kafka, PostgreSQL and SMTP: the journey's emails arrive once each with
the right content and both parts, whatever the redeliveries; cancelled and rejected orders get one
email each; an opted-out customer gets only the transactional ones; templates per locale."""

import asyncio
import uuid

from oms_platform.links import tracking_url
from tests.support.notification import ADMIN, JOURNEY_TEMPLATES, customer, delivery_log, wait_for

LINK_SECRET = "dev-tracking-link-secret"  # the default of ServiceSettings
PUBLIC_URL = "http://127.0.0.1:8004"


def parts(msg) -> tuple[str, str]:
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    return text, html


async def sent_log(notif, order_id, count: int) -> list[dict]:
    async def check():
        items = await delivery_log(notif.http, notif.url, order_id=str(order_id), channel="email")
        return items if len([i for i in items if i["status"] == "sent"]) >= count else None

    return await wait_for(check, what=f"{count} emails of {order_id} sent")


async def test_journey_sends_each_email_once_with_both_parts(notif):
    order_id, who = uuid.uuid4(), customer()
    envelopes = await notif.publish.journey(order_id, who)
    await wait_for(lambda: len(notif.smtp.of_order(order_id)) >= len(JOURNEY_TEMPLATES), what="the journey's emails")
    # Every event delivered again (same event ids), and the status events again with new ids: nothing more.
    for env in envelopes:
        await notif.publish.send(_topic(env), None, "", again=env)
    await notif.publish.status(order_id, "confirmed", "backordered")
    await asyncio.sleep(2.0)
    mails = notif.smtp.of_order(order_id)
    assert len(mails) == len(JOURNEY_TEMPLATES)
    assert len({m["Message-ID"] for m in mails}) == len(mails)
    for m in mails:
        assert m["To"].addresses[0].addr_spec == who["email"]
        assert m["Date"] and m["Message-ID"].endswith("@oms.local>")
    subjects = [m["Subject"] for m in mails]
    assert any("is confirmed" in s for s in subjects), subjects
    link = tracking_url(PUBLIC_URL, LINK_SECRET, order_id)
    dispatched = [m for m in mails if m["Subject"].startswith("Your order") and "on its way" in m["Subject"]]
    assert len(dispatched) == 2
    tracking_numbers = {e["payload"]["tracking_number"] for e in envelopes if e["event_type"] == "ShipmentDispatched"}
    for m in dispatched:
        text, html = parts(m)
        assert link in text and link.replace("&", "&amp;") in html or link in html
        number = next(t for t in tracking_numbers if t in text)
        assert number in html
        assert ("oms-post" in text) or ("oms-express" in text)
    refund = next(m for m in mails if "refund" in m["Subject"].lower())
    text, html = parts(refund)
    assert "19.90 EUR" in text and "19.90 EUR" in html and "rf_123" in text
    log = await sent_log(notif, order_id, len(JOURNEY_TEMPLATES))
    assert sorted(i["template"] for i in log) == sorted(JOURNEY_TEMPLATES)
    assert all(i["recipient"] == who["email"] and i["attempts"] == 1 for i in log)


def _topic(env: dict) -> str:
    from oms_contracts.topics import BILLING_EVENTS, ORDERS_EVENTS, ORDERS_STATUS, events

    return {"OrderPlaced": ORDERS_EVENTS, "OrderStatusChanged": ORDERS_STATUS,
            "ShipmentDispatched": events("fulfilment"), "ReturnApproved": events("returns"),
            "RefundCompleted": BILLING_EVENTS}[env["event_type"]]


async def test_cancelled_order_gets_one_cancellation_email(notif):
    order_id, who = uuid.uuid4(), customer()
    placed = await notif.publish.placed(order_id, who)
    await notif.publish.status(order_id, "cancelled", "awaiting_payment", reason="payment_timeout")
    await notif.publish.status(order_id, "cancelled", "awaiting_payment", reason="payment_timeout")  # reported twice
    await wait_for(lambda: notif.smtp.of_order(order_id), what="the cancellation email")
    await asyncio.sleep(1.5)
    mails = notif.smtp.of_order(order_id)
    assert [m["Subject"] for m in mails] == [f"Your order {placed['payload']['external_id']} was cancelled"]
    text, html = parts(mails[0])
    assert "we did not receive your payment in time" in text and "we did not receive your payment in time" in html
    assert "payment_timeout" not in text


async def test_rejected_order_says_why_in_words(notif):
    order_id, who = uuid.uuid4(), customer()
    await notif.publish.placed(order_id, who)
    await notif.publish.status(order_id, "rejected", "pending", reason="out_of_stock")
    [mail] = await wait_for(lambda: notif.smtp.of_order(order_id), what="the rejection email")
    text, _ = parts(mail)
    assert "some of the items you ordered are out of stock" in text


async def test_status_before_order_is_known_waits_for_the_customer(notif):
    """The status topic may be read before the order's OrderPlaced: the email goes once the customer is known."""
    order_id, who = uuid.uuid4(), customer()
    await notif.publish.status(order_id, "confirmed", "pending")
    await asyncio.sleep(1.0)
    assert notif.smtp.of_order(order_id) == []
    [pending] = await delivery_log(notif.http, notif.url, order_id=str(order_id))
    assert pending["status"] == "pending" and pending["recipient"] is None
    await notif.publish.placed(order_id, who)
    [mail] = await wait_for(lambda: notif.smtp.of_order(order_id), what="the confirmation email")
    assert mail["To"].addresses[0].addr_spec == who["email"]


async def test_opted_out_customer_gets_only_transactional_emails(notif):
    order_id, who = uuid.uuid4(), customer()
    resp = await notif.http.put(f"{notif.url}/v1/customers/{who['id']}/preferences", headers=ADMIN,
                                json={"non_essential_email": False})
    assert resp.status_code == 200, resp.text
    await notif.publish.journey(order_id, who)
    await wait_for(lambda: len(notif.smtp.of_order(order_id)) >= 4, what="the transactional emails")

    async def settled():
        items = await delivery_log(notif.http, notif.url, order_id=str(order_id))
        return items if all(i["status"] in ("sent", "skipped") for i in items) and len(items) == 6 else None

    log = await wait_for(settled, what="every email sent or skipped")
    await asyncio.sleep(0.5)
    mails = notif.smtp.of_order(order_id)
    assert len(mails) == 4
    skipped = sorted(i["template"] for i in log if i["status"] == "skipped")
    assert skipped == ["order_delivered", "return_approved"]
    assert {i["last_error"] for i in log if i["status"] == "skipped"} == {"customer opted out of non-essential email"}


async def test_locale_preference_picks_the_template_and_falls_back(notif):
    order_id, who = uuid.uuid4(), customer()
    resp = await notif.http.put(f"{notif.url}/v1/customers/{who['id']}/preferences", headers=ADMIN,
                                json={"non_essential_email": True, "locale": "pt-PT"})
    assert resp.status_code == 200, resp.text
    await notif.publish.placed(order_id, who)
    await notif.publish.status(order_id, "confirmed", "pending")
    await notif.publish.status(order_id, "cancelled", "confirmed", reason="customer_request")
    await wait_for(lambda: len(notif.smtp.of_order(order_id)) >= 2, what="two emails")
    by_lang = {str(m["Content-Language"]): m for m in notif.smtp.of_order(order_id)}
    assert set(by_lang) == {"pt", "en"}, [(m["Content-Language"], m["Subject"]) for m in notif.smtp.of_order(order_id)]
    assert "confirmada" in by_lang["pt"]["Subject"]
    assert "was cancelled" in by_lang["en"]["Subject"]  # no Portuguese template: the default


async def test_preferences_validation_and_access(notif):
    url = f"{notif.url}/v1/customers/c-1/preferences"
    assert (await notif.http.put(url, json={"non_essential_email": False})).status_code == 401
    bad = await notif.http.put(url, headers=ADMIN, json={"non_essential_email": "no", "locale": "english"})
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["error"]["fields"]} == {"non_essential_email", "locale"}
    got = await notif.http.get(url, headers=ADMIN)
    assert got.json()["non_essential_email"] is True  # never chose: everything
