"""An email whose order's OrderPlaced (the recipient) never arrives is failed after
EMAIL_RECIPIENT_WAIT_SECONDS instead of staying pending for ever; one whose OrderPlaced comes late but
within the wait is sent."""

import asyncio
import uuid

from tests.support.notification import customer, delivery_log, wait_for

SERVICE_ENV = {"EMAIL_RECIPIENT_WAIT_SECONDS": "3"}


async def test_email_without_recipient_fails_after_the_wait_and_a_late_recipient_still_gets_it(notif):
    orphan, late = uuid.uuid4(), uuid.uuid4()
    await notif.publish.status(orphan, "cancelled", "pending", reason="customer_request")
    await notif.publish.status(late, "cancelled", "pending", reason="customer_request")

    async def pending(order_id: uuid.UUID) -> bool:
        items = await delivery_log(notif.http, notif.url, order_id=str(order_id), channel="email")
        return [i["status"] for i in items] == ["pending"]

    await wait_for(lambda: pending(orphan), what="the orphan email recorded")
    await wait_for(lambda: pending(late), what="the late order's email recorded")
    await asyncio.sleep(1)
    await notif.publish.placed(late, customer())

    async def failed() -> dict | None:
        [item] = await delivery_log(notif.http, notif.url, order_id=str(orphan), channel="email")
        return item if item["status"] == "failed" else None

    item = await wait_for(failed, timeout=30, what="the orphan email failed")
    assert "OrderPlaced did not arrive" in item["last_error"], item
    await wait_for(lambda: notif.smtp.of_order(str(late)), what="the late order's email sent")
    assert notif.smtp.of_order(str(orphan)) == []
    [sent] = await delivery_log(notif.http, notif.url, order_id=str(late), channel="email")
    assert sent["status"] == "sent", sent
