"""HTTP API of notification (CONTRACT.md, Notification): webhook subscriptions and the delivery log
for operators, email preferences for the customer's channel (or an operator)."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from notification.domain import SUBSCRIBABLE, WEBHOOK_EVENT_TYPES, webhook_url_problem
from notification.handlers import Notifications
from oms_platform.channel_keys import Caller, ChannelKeys
from oms_platform.errors import RuleError
from oms_platform.http import Limit, answer_example
from oms_platform.pagination import DEFAULT_LIMIT, Page

# The head of the interactive docs (/docs): what the API is for and how to authenticate.
API_DESCRIPTION = """\
Customer emails (the delivery log) and signed webhooks for downstream systems.

**Authentication**

- `/v1/webhook-subscriptions`, `/v1/notifications`: the **operator token**: `Authorization: Bearer
  <OMS_ADMIN_TOKEN>` (the token the service was started with; `make up` keeps a dev one in `.local/dev/admin-token`
  when none is given).
- `/v1/customers/{customer_id}/preferences`: a **channel API key**: `Authorization: Bearer oms_...`, issued by an
  operator with order capture's `POST /v1/admin/api-keys` (shown once); it sees only its own channel's orders
  (another channel's answer 404) (its channel's customers), or the **operator token**: `Authorization: Bearer
  <OMS_ADMIN_TOKEN>` (the token the service was started with; `make up` keeps a dev one in `.local/dev/admin-token`
  when none is given).

No or unknown credentials answer 401 (`unauthorized`); a channel key on an operator endpoint answers 403.
"""

# Real answers (the README's walkthrough), shown in /docs.
DELIVERY_LOG_EXAMPLE = {'items': [{'notification_id': '01a241fc-ef94-7577-84b2-bb7acc5b6c2a',
                'channel': 'email',
                'order_id': '01a241fc-ebbb-7147-9981-c7b0e549b261',
                'event_id': 'ab35d2b1-66b8-4b4b-a051-21ed1c4b5006',
                'event_type': 'OrderStatusChanged',
                'template': 'order_confirmed',
                'recipient': 'ana@example.com',
                'subscription_id': None,
                'url': None,
                'status': 'sent',
                'attempts': 1,
                'max_attempts': 100,
                'last_error': None,
                'next_attempt_at': None,
                'created_at': '2026-12-04T16:57:05.037534Z',
                'updated_at': '2026-12-04T16:57:05.644542Z',
                'sent_at': '2026-12-04T16:57:05.644542Z'}],
     'next_cursor': None}


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"url": "https://billing.example/oms", "event_types": ["OrderStatusChanged"],
         "secret": "a-long-random-secret", "description": "billing"},
    ]})

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
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"non_essential_email": False, "locale": "pt-PT"},
    ]})

    # false: only transactional emails (docs/notification.md lists which those are).
    non_essential_email: StrictBool
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")


NotificationStatus = Literal["pending", "sending", "sent", "failed", "skipped", "cancelled"]
CustomerId = Annotated[str, Path(min_length=1, max_length=200)]


def build_router(keys: ChannelKeys, service: Notifications) -> APIRouter:
    router = APIRouter()
    Operator = Annotated[Caller, Depends(keys.operator)]
    AnyCaller = Annotated[Caller, Depends(keys.caller)]

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.get("/v1/webhook-event-types", tags=["webhooks"])
    async def event_types(_: Operator) -> dict[str, Any]:
        return {"topics": {topic: list(types) for topic, types in WEBHOOK_EVENT_TYPES.items()}}

    @router.post("/v1/webhook-subscriptions", status_code=201, tags=["webhooks"])
    async def create_subscription(request: Request, body: SubscriptionIn, _: Operator,
                                  response: Response) -> dict[str, Any]:
        sub = await service.create_subscription(pool(request), url=body.url, event_types=body.event_types,
                                                secret=body.secret, description=body.description)
        response.headers["Location"] = f"/v1/webhook-subscriptions/{sub['subscription_id']}"
        return sub

    @router.get("/v1/webhook-subscriptions", tags=["webhooks"])
    async def list_subscriptions(request: Request, _: Operator, cursor: str | None = None,
                                 limit: Limit = DEFAULT_LIMIT) -> Page:
        return await service.list_subscriptions(pool(request), cursor=cursor, limit=limit)

    @router.get("/v1/webhook-subscriptions/{subscription_id}", tags=["webhooks"])
    async def get_subscription(request: Request, subscription_id: UUID, _: Operator) -> dict[str, Any]:
        return await service.get_subscription(pool(request), subscription_id)

    @router.post("/v1/webhook-subscriptions/{subscription_id}/disable", tags=["webhooks"])
    async def disable(request: Request, subscription_id: UUID, _: Operator) -> dict[str, Any]:
        """No new deliveries are recorded; those already recorded wait until it is enabled again."""
        return await service.set_subscription_status(pool(request), subscription_id, "disabled")

    @router.post("/v1/webhook-subscriptions/{subscription_id}/enable", tags=["webhooks"])
    async def enable(request: Request, subscription_id: UUID, _: Operator) -> dict[str, Any]:
        return await service.set_subscription_status(pool(request), subscription_id, "active")

    @router.delete("/v1/webhook-subscriptions/{subscription_id}", status_code=204, tags=["webhooks"])
    async def delete(request: Request, subscription_id: UUID, _: Operator) -> Response:
        await service.delete_subscription(pool(request), subscription_id)
        return Response(status_code=204)

    @router.get("/v1/notifications", tags=["delivery log"], responses=answer_example(DELIVERY_LOG_EXAMPLE))
    async def delivery_log(
        request: Request, _: Operator, order_id: UUID | None = None, status: NotificationStatus | None = None,
        channel: Literal["email", "webhook"] | None = None, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT,
    ) -> Page:
        return await service.list_notifications(pool(request), order_id=order_id, status=status, channel=channel,
                                                 cursor=cursor, limit=limit)

    @router.get("/v1/notifications/{notification_id}", tags=["delivery log"])
    async def get_notification(request: Request, notification_id: UUID, _: Operator) -> dict[str, Any]:
        return await service.get_notification(pool(request), notification_id)

    @router.post("/v1/notifications/{notification_id}/redeliver", tags=["delivery log"])
    async def redeliver(request: Request, notification_id: UUID, _: Operator) -> dict[str, Any]:
        return await service.redeliver(pool(request), notification_id)

    @router.put("/v1/customers/{customer_id}/preferences", tags=["preferences"])
    async def put_preferences(request: Request, customer_id: CustomerId, body: PreferencesIn,
                              caller: AnyCaller) -> dict[str, Any]:
        return await service.put_preferences(pool(request), caller.channel, customer_id, body.non_essential_email,
                                             body.locale)

    @router.get("/v1/customers/{customer_id}/preferences", tags=["preferences"])
    async def get_preferences(request: Request, customer_id: CustomerId, caller: AnyCaller) -> dict[str, Any]:
        return await service.get_preferences(pool(request), caller.channel, customer_id)

    return router
