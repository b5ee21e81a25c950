"""Pure rules of notification: which events become which emails, opt-out, retries, signatures."""

import hashlib
import hmac
import random
import uuid
from datetime import UTC, datetime

import pytest

from notification.domain import (
    NON_ESSENTIAL,
    SUBSCRIBABLE,
    TEMPLATES,
    customer_reason,
    email_for,
    mask_email,
    retry_delay,
    signature,
    webhook_url_problem,
)
from notification.settings import Settings
from oms_contracts.registry import EVENT_MODELS
from tests.support.notification import receiver_example


def test_every_status_email_and_no_other():
    order = str(uuid.uuid4())
    at = datetime.now(UTC).isoformat()
    made = {s: email_for("OrderStatusChanged", {"order_id": order, "new_status": s, "changed_at": at})
            for s in ("pending", "awaiting_payment", "confirmed", "backordered", "partially_shipped", "shipped",
                      "delivered", "cancelled", "rejected", "return_requested", "returned")}
    assert {s: i.template for s, i in made.items() if i} == {
        "confirmed": "order_confirmed", "delivered": "order_delivered", "cancelled": "order_cancelled",
        "rejected": "order_rejected"}
    assert email_for("OrderPlaced", {"order_id": order}) is None
    assert email_for("PaymentConfirmed", {"order_id": order}) is None


def test_the_same_meaning_twice_is_one_email():
    order = str(uuid.uuid4())
    first = email_for("OrderStatusChanged", {"order_id": order, "new_status": "confirmed", "changed_at": "x"})
    again = email_for("OrderStatusChanged", {"order_id": order, "new_status": "confirmed", "changed_at": "y",
                                             "reason": None})
    assert first and again and first.dedupe_key == again.dedupe_key


def test_reasons_in_words_never_codes():
    assert customer_reason("out_of_stock") == "some of the items you ordered are out of stock"
    assert customer_reason("some_new_code") == "we were unable to complete it"
    assert customer_reason(None) == "we were unable to complete it"


def test_transactional_emails_are_not_opt_out():
    assert {"order_confirmed", "shipment_dispatched"}.isdisjoint(NON_ESSENTIAL)
    assert NON_ESSENTIAL < set(TEMPLATES)


def test_subscribable_types_are_contract_events():
    known = {t for t, _ in EVENT_MODELS}
    assert SUBSCRIBABLE <= known


def test_first_retry_within_two_seconds_with_defaults_then_growing_and_capped():
    s = Settings()
    rng = random.Random(7)
    firsts = [retry_delay(1, base=s.retry_base_seconds, cap=s.retry_max_seconds, rng=rng) for _ in range(1000)]
    assert max(firsts) <= 2 and min(firsts) >= s.retry_base_seconds / 2
    assert retry_delay(5, base=1, cap=300, rng=rng) >= 8
    assert all(retry_delay(30, base=1, cap=300, rng=rng) <= 300 for _ in range(100))
    assert len({round(retry_delay(3, base=1, cap=300), 6) for _ in range(50)}) > 1  # jitter


def test_signature_matches_the_documented_receiver():
    body = b'{"event_id": "x"}'
    sig = signature("s3cret", body)
    assert sig == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert receiver_example.verify("s3cret", body, sig)
    assert not receiver_example.verify("s3cret", body + b" ", sig) and not receiver_example.verify("other", body, sig)
    assert not receiver_example.verify("s3cret", body, None)


def test_masked_addresses():
    assert mask_email("ana.lima@example.com") == "a***@example.com"
    assert "ana" not in mask_email("ana@example.com")
    assert mask_email(None) == "-"


@pytest.mark.parametrize(("url", "ok"), [
    ("https://billing.example/hooks", True), ("http://127.0.0.1:9000/x", True), ("ftp://x/y", False),
    ("file:///etc/passwd", False), ("javascript:alert(1)", False), ("https://", False),
    ("https://user:pw@host/x", False), ("billing.example/hooks", False),
])
def test_webhook_urls(url, ok):
    assert (webhook_url_problem(url) is None) is ok
