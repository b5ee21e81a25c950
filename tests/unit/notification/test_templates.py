"""Every template renders both parts with a real context; HTML is escaped; locales fall back."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from notification.domain import TEMPLATES, email_for
from notification.emails import PermanentFailure, Templates, build_message, template_context

ORDER = uuid.uuid4()
NOW = datetime.now(UTC).isoformat()
EVENTS = {
    "order_confirmed": ("OrderStatusChanged", {"new_status": "confirmed", "changed_at": NOW}),
    "order_delivered": ("OrderStatusChanged", {"new_status": "delivered", "changed_at": NOW}),
    "order_cancelled": ("OrderStatusChanged", {"new_status": "cancelled", "changed_at": NOW,
                                               "reason": "customer_request"}),
    "order_rejected": ("OrderStatusChanged", {"new_status": "rejected", "changed_at": NOW, "reason": "out_of_stock"}),
    "shipment_dispatched": ("ShipmentDispatched", {"shipment_id": str(uuid.uuid4()), "carrier": "oms-post",
                                                   "service": "standard", "tracking_number": "OMS1234567890PT",
                                                   "lines": [{"sku": "A", "quantity": 1}], "dispatched_at": NOW}),
    "return_approved": ("ReturnApproved", {"return_id": str(uuid.uuid4()), "resolution": "refund",
                                           "lines": [{"sku": "A", "quantity": 1, "reason": "x"}], "approved_at": NOW}),
    "refund_issued": ("RefundCompleted", {"return_id": str(uuid.uuid4()), "amount": "19.90", "currency": "EUR",
                                          "reference": "rf_1"}),
}


def row(template: str, name: str = "Ana <Lima>") -> dict:
    event_type, payload = EVENTS[template]
    intent = email_for(event_type, {"order_id": str(ORDER), **payload})
    assert intent is not None and intent.template == template
    return {"name": name, "order_id": ORDER, "external_id": "WEB-1", "currency": "EUR", "total": Decimal("39.8"),
            "lines": [{"sku": "A", "quantity": 2, "unit_price": "19.90"}], "context": intent.context}


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_renders_both_parts(template):
    assert set(EVENTS) == set(TEMPLATES)
    t = Templates("en")
    r = row(template)
    rendered = t.render(template, None, template_context(r, public_url="http://t", link_secret="s"))
    assert rendered.subject and "\n" not in rendered.subject
    assert "Ana <Lima>" in rendered.text and "Ana &lt;Lima&gt;" in rendered.html  # escaped in HTML only
    msg = build_message(rendered, notification_id=uuid.uuid4(), order_id=ORDER, created_at=datetime.now(UTC),
                        sender="OMS <no-reply@oms.local>", recipient="ana@example.com", recipient_name="Ana",
                        domain="oms.local")
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Message-ID"].endswith("@oms.local>") and msg["Date"]


def test_locale_falls_back_to_language_then_default():
    t = Templates("en")
    ctx = template_context(row("order_confirmed"), public_url="http://t", link_secret="s")
    assert t.render("order_confirmed", "pt-BR", ctx).locale == "pt"
    assert t.render("order_cancelled", "pt-BR", template_context(row("order_cancelled"), public_url="http://t",
                                                                  link_secret="s")).locale == "en"
    with pytest.raises(PermanentFailure):
        Templates("xx").render("order_confirmed", None, ctx)


def test_templates_folder_overrides_the_built_in(tmp_path):
    (tmp_path / "en").mkdir()
    for ext, body in (("subject.txt", "Hi {{ customer_name }}"), ("txt", "text"), ("html", "<p>html</p>")):
        (tmp_path / "en" / f"order_confirmed.{ext}").write_text(body)
    ctx = template_context(row("order_confirmed"), public_url="http://t", link_secret="s")
    assert Templates("en", tmp_path).render("order_confirmed", None, ctx).subject == "Hi Ana <Lima>"
