"""HTTP API of notification (CONTRACT.md, Notification): webhook subscriptions and the delivery log
for operators, email preferences for the customer's channel (or an operator)."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from notification import handlers
from notification import repository as repo
from notification.domain import SUBSCRIBABLE, WEBHOOK_EVENT_TYPES, webhook_url_problem
from notification.handlers import not_found, notification_view, subscription_view
from oms_platform.channel_keys import Caller, ChannelKeys
from oms_platform.http import RuleError, decode_cursor, encode_cursor, field_error
from oms_platform.ids import uuid7


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=50)
    # Write-only: used to sign each delivery, never shown again.
    secret: str = Field(min_length=16, max_length=256)
    description: str | None = Field(default=None, max_length=200)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        problem = webhook_url_problem(v)
        if problem:
            raise RuleError("http_url", f"url {problem}")
        return v

    @field_validator("event_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in SUBSCRIBABLE]
        if unknown:
            raise RuleError("known_event_type", f"unknown event types {unknown}; see GET /v1/webhook-event-types")
        return list(dict.fromkeys(v))


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # false: only transactional emails (docs/notification.md lists which those are).
    non_essential_email: StrictBool
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")


NotificationStatus = Literal["pending", "sending", "sent", "failed", "skipped", "cancelled"]


def _after(cursor: str | None, key: str, kind: type) -> Any:
    after = decode_cursor(cursor)
    if after is None:
        return None
    try:
        return kind(after[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise field_error("cursor", "invalid_cursor", "cursor is not one this API returned") from exc


def build_router(keys: ChannelKeys, attempts: dict[str, int]) -> APIRouter:
    router = APIRouter()
    Operator = Annotated[Caller, Depends(keys.operator)]
    AnyCaller = Annotated[Caller, Depends(keys.caller)]

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    async def one(request: Request, read: Any, key: UUID, what: str) -> Any:
        """The row `read` finds for `key`, or 404 naming `what`."""
        async with pool(request).acquire() as conn:
            row = await read(conn, key)
        if row is None:
            raise not_found(what)
        return row

    @router.get("/v1/webhook-event-types", tags=["webhooks"])
    async def event_types(_: Operator) -> dict[str, Any]:
        return {"topics": {topic: list(types) for topic, types in WEBHOOK_EVENT_TYPES.items()}}

    @router.post("/v1/webhook-subscriptions", status_code=201, tags=["webhooks"])
    async def create_subscription(request: Request, body: SubscriptionIn, _: Operator,
                                  response: Response) -> dict[str, Any]:
        sid = uuid7()
        async with pool(request).acquire() as conn:
            row = await repo.create_subscription(conn, sid, body.url, body.event_types, body.secret, body.description)
        response.headers["Location"] = f"/v1/webhook-subscriptions/{sid}"
        return subscription_view(row)

    @router.get("/v1/webhook-subscriptions", tags=["webhooks"])
    async def list_subscriptions(request: Request, _: Operator, cursor: str | None = None,
                                 limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
        async with pool(request).acquire() as conn:
            rows = await repo.list_subscriptions(conn, _after(cursor, "i", UUID), limit + 1)
        items = [subscription_view(r) for r in rows[:limit]]
        more = len(rows) > limit
        next_cursor = encode_cursor({"i": str(items[-1]["subscription_id"])}) if more else None
        return {"items": items, "next_cursor": next_cursor}

    @router.get("/v1/webhook-subscriptions/{subscription_id}", tags=["webhooks"])
    async def get_subscription(request: Request, subscription_id: UUID, _: Operator) -> dict[str, Any]:
        return subscription_view(await one(request, repo.get_subscription, subscription_id, "webhook subscription"))

    async def _set_status(request: Request, subscription_id: UUID, status: str) -> dict[str, Any]:
        async with pool(request).acquire() as conn:
            row = await repo.set_subscription_status(conn, subscription_id, status)
            if status == "active":
                await repo.wake_senders(conn)  # its held deliveries can go
        if row is None:
            raise not_found("webhook subscription")
        return subscription_view(row)

    @router.post("/v1/webhook-subscriptions/{subscription_id}/disable", tags=["webhooks"])
    async def disable(request: Request, subscription_id: UUID, _: Operator) -> dict[str, Any]:
        """No new deliveries are recorded; those already recorded wait until it is enabled again."""
        return await _set_status(request, subscription_id, "disabled")

    @router.post("/v1/webhook-subscriptions/{subscription_id}/enable", tags=["webhooks"])
    async def enable(request: Request, subscription_id: UUID, _: Operator) -> dict[str, Any]:
        return await _set_status(request, subscription_id, "active")

    @router.delete("/v1/webhook-subscriptions/{subscription_id}", status_code=204, tags=["webhooks"])
    async def delete(request: Request, subscription_id: UUID, _: Operator) -> Response:
        async with pool(request).acquire() as conn:
            await handlers.delete_subscription(conn, subscription_id)
        return Response(status_code=204)

    @router.get("/v1/notifications", tags=["delivery log"])
    async def delivery_log(
        request: Request, _: Operator, order_id: UUID | None = None, status: NotificationStatus | None = None,
        channel: Literal["email", "webhook"] | None = None, cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        async with pool(request).acquire() as conn:
            rows = await repo.list_notifications(conn, order_id=order_id, status=status, channel=channel,
                                                 after=_after(cursor, "s", int), limit=limit + 1)
        items = [notification_view(r) for r in rows[:limit]]
        more = len(rows) > limit
        return {"items": items, "next_cursor": encode_cursor({"s": rows[limit - 1]["seq"]}) if more else None}

    @router.get("/v1/notifications/{notification_id}", tags=["delivery log"])
    async def get_notification(request: Request, notification_id: UUID, _: Operator) -> dict[str, Any]:
        return notification_view(await one(request, repo.get_notification, notification_id, "notification"))

    @router.post("/v1/notifications/{notification_id}/redeliver", tags=["delivery log"])
    async def redeliver(request: Request, notification_id: UUID, _: Operator) -> dict[str, Any]:
        async with pool(request).acquire() as conn:
            return await handlers.redeliver(conn, notification_id, attempts)

    async def _check_customer(conn: Any, caller: Caller, customer_id: str) -> None:
        """A channel key reaches the customers of its own channel's orders (or one not seen yet);
        another channel's customer answers 404, so customer ids do not leak."""
        if caller.operator:
            return
        channels = await repo.customer_channels(conn, customer_id)
        if channels and caller.channel not in channels:
            raise not_found("customer")

    @router.put("/v1/customers/{customer_id}/preferences", tags=["preferences"])
    async def put_preferences(request: Request, customer_id: str, body: PreferencesIn,
                              caller: AnyCaller) -> dict[str, Any]:
        if not 1 <= len(customer_id) <= 200:
            raise field_error("customer_id", "length", "customer_id must be 1 to 200 characters")
        async with pool(request).acquire() as conn:
            await _check_customer(conn, caller, customer_id)
            return dict(await repo.put_preferences(conn, customer_id, body.non_essential_email, body.locale))

    @router.get("/v1/customers/{customer_id}/preferences", tags=["preferences"])
    async def get_preferences(request: Request, customer_id: str, caller: AnyCaller) -> dict[str, Any]:
        async with pool(request).acquire() as conn:
            await _check_customer(conn, caller, customer_id)
            row = await repo.get_preferences(conn, customer_id)
        # A customer who never chose gets every email, in the default language.
        return dict(row) if row else {"customer_id": customer_id, "non_essential_email": True, "locale": None,
                                      "updated_at": None}

    return router
