"""Webhook deliveries: a POST of the event's envelope, signed with the subscription's secret."""

from typing import Any
from uuid import UUID

import httpx
import orjson

from notification.domain import signature


class WebhookClient:
    def __init__(self, timeout: float, user_agent: str = "OMS-Webhooks/1"):
        # No redirects: a receiver that moved must be subscribed again under its new URL (a redirect
        # could send the signed body somewhere the operator never chose).
        self.http = httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                      limits=httpx.Limits(max_connections=500, max_keepalive_connections=100))
        self.user_agent = user_agent
        self.timeout = timeout

    async def deliver(self, url: str, secret: str, envelope: dict[str, Any], delivery_id: UUID) -> str | None:
        """None when the receiver answered 2xx, else what went wrong (worth a retry)."""
        body = orjson.dumps(envelope)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            "X-OMS-Signature": signature(secret, body),
            "X-OMS-Event-Id": str(envelope["event_id"]),
            "X-OMS-Event-Type": str(envelope["event_type"]),
            "X-OMS-Delivery-Id": str(delivery_id),
        }
        try:
            resp = await self.http.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return f"timeout after {self.timeout:g}s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= resp.status_code < 300:
            return None
        return f"HTTP {resp.status_code}: {resp.text[:200]}"

    async def close(self) -> None:
        await self.http.aclose()
