"""What notification decides, without I/O: which events become which customer email, which emails a
customer may opt out of, the event types a webhook may subscribe to, retry delays, signatures."""

import hashlib
import hmac
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from oms_contracts.topics import BILLING_EVENTS, ORDERS_EVENTS, ORDERS_STATUS, events

# The topics consumed, and the event types on them a webhook subscription may select (docs/notification.md).
WEBHOOK_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    ORDERS_EVENTS: ("OrderPlaced", "OrderCancellationRequested"),
    ORDERS_STATUS: ("OrderStatusChanged", "OrderCancellationRefused"),
    events("fulfilment"): ("ShipmentsCreated", "ShipmentCreationFailed", "ShipmentStatusChanged",
                           "ShipmentDispatched", "ShipmentsCancelled", "ShipmentCancellationRefused"),
    events("tracking"): ("CarrierScanRecorded", "ShipmentDelivered", "ShipmentDeliveryFailed"),
    events("returns"): ("ReturnApproved", "ReturnReceived", "ReturnRefunded", "ReturnExchanged", "ReturnClosed"),
    BILLING_EVENTS: ("PaymentConfirmed", "RefundCompleted"),
}
SUBSCRIBABLE: frozenset[str] = frozenset(t for types in WEBHOOK_EVENT_TYPES.values() for t in types)
TOPICS: tuple[str, ...] = tuple(WEBHOOK_EVENT_TYPES)

# The customer emails (one template each). Transactional ones always go: they confirm what the
# customer bought, paid or was refunded, what happens to their parcel, or that an order will not
# come. A customer who opted out of non-essential email does not get the others.
TEMPLATES = ("order_confirmed", "shipment_dispatched", "order_delivered", "order_cancelled", "order_rejected",
             "return_approved", "refund_issued")
NON_ESSENTIAL: frozenset[str] = frozenset({"order_delivered", "return_approved"})
_STATUS_TEMPLATES = {"confirmed": "order_confirmed", "delivered": "order_delivered",
                     "cancelled": "order_cancelled", "rejected": "order_rejected"}

# The saga's reasons (orchestrator, inventory) as a customer reads them.
_REASONS = {
    "out_of_stock": "some of the items you ordered are out of stock",
    "unknown_sku": "an item you ordered is no longer sold",
    "invalid_request": "the order could not be processed as placed",
    "backorder_timeout": "the items you ordered did not come back into stock in time",
    "payment_timeout": "we did not receive your payment in time",
    "shipment_failed": "we could not arrange the shipment of your order",
    "inventory_timeout": "we could not reserve your items in time",
    "fulfilment_timeout": "we could not prepare your shipment in time",
    "customer_request": "you asked us to cancel it",
}


def customer_reason(reason: str | None) -> str:
    """A reason the customer understands; an unknown code gets a general sentence, never the code."""
    return _REASONS.get(reason or "", "we were unable to complete it")


@dataclass(frozen=True, slots=True)
class EmailIntent:
    template: str
    # What makes the email once-only: two events meaning the same thing to the customer (the order
    # confirmed again after a backorder, a cancellation reported twice) still send one email.
    dedupe_key: str
    context: dict[str, Any]


def email_for(event_type: str, payload: dict[str, Any]) -> EmailIntent | None:
    """The customer email an event asks for, if any (payload: the envelope's JSON payload)."""
    order = payload.get("order_id")
    if event_type == "OrderStatusChanged":
        template = _STATUS_TEMPLATES.get(payload["new_status"])
        if template is None:
            return None
        context = {"reason": customer_reason(payload.get("reason")), "reason_code": payload.get("reason"),
                   "at": payload["changed_at"]}
        return EmailIntent(template, f"{template}:{order}", context)
    if event_type == "ShipmentDispatched":
        keep: tuple[str, ...] = ("shipment_id", "carrier", "service", "tracking_number", "lines", "dispatched_at")
        return EmailIntent("shipment_dispatched", f"shipment:{payload['shipment_id']}",
                           {k: payload[k] for k in keep})
    if event_type == "ReturnApproved":
        keep = ("return_id", "resolution", "lines", "approved_at")
        return EmailIntent("return_approved", f"return:{payload['return_id']}", {k: payload[k] for k in keep})
    if event_type == "RefundCompleted":
        keep = ("return_id", "amount", "currency", "reference")
        return EmailIntent("refund_issued", f"refund:{payload['return_id']}", {k: payload[k] for k in keep})
    return None


EMAIL_EVENT_TYPES = ("OrderStatusChanged", "ShipmentDispatched", "ReturnApproved", "RefundCompleted")


def retry_delay(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failed ones: exponential, capped, with jitter
    (half fixed, half random, so retries of many rows spread out but the first comes within 2*base)."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay / 2 + (rng or random).random() * delay / 2


def signature(secret: str, body: bytes) -> str:
    """X-OMS-Signature: sha256=<hex HMAC-SHA256 of the body with the subscription's secret>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def mask_email(address: str | None) -> str:
    """For logs: enough to tell two addresses apart, not enough to read one ("a***@example.com")."""
    if not address:
        return "-"
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def webhook_url_problem(url: str) -> str | None:
    """Why a subscription URL is refused, or None: http(s) with a host, no credentials in it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials (use the secret)"
    return None
