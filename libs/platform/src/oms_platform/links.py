"""The customer's tracking link: `GET /track/{order_id}?token=...` on the tracking service. The token
is an HMAC-SHA256 of the order id with TRACKING_LINK_SECRET, so the service that writes the link (the
emails of notification) and the one that checks it (tracking) share only the secret."""

import hashlib
import hmac
from uuid import UUID


def tracking_token(secret: str, order_id: UUID | str) -> str:
    return hmac.new(secret.encode(), str(order_id).encode(), hashlib.sha256).hexdigest()


def valid_tracking_token(secret: str, order_id: UUID | str, token: str | None) -> bool:
    """Constant-time check; a missing token is invalid."""
    return bool(token) and hmac.compare_digest(tracking_token(secret, order_id), token or "")


def tracking_url(base_url: str, secret: str, order_id: UUID | str) -> str:
    """base_url: where customers reach the tracking service (TRACKING_PUBLIC_URL)."""
    return f"{base_url.rstrip('/')}/track/{order_id}?token={tracking_token(secret, order_id)}"
