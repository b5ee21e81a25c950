"""HTTP API of order capture (CONTRACT.md, Order capture)."""

import hmac
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ConfigDict, Field

from oms_contracts.orders import OrderStatus
from oms_platform.fields import RequestModel, Timestamp
from oms_platform.hot_routes import hot_route
from oms_platform.http import (
    ApiError,
    Limit,
    ORJSONResponse,
    answer_example,
    bearer_token,
    field_error,
    json_body_openapi,
    operator_dependency,
    parse_json_body,
    unauthorized,
)
from oms_platform.openapi import CHANNEL, OPERATOR, requires
from oms_platform.outbox import Outbox
from oms_platform.pagination import DEFAULT_LIMIT, Page, single_page
from order_capture import handlers
from order_capture.domain import CancelIn, OrderIn

# The head of the interactive docs (/docs): what the API is for and how to authenticate.
API_DESCRIPTION = """\
Sales channels place, read and cancel orders; operators issue and revoke the channels' API keys.

**Authentication**

- `/v1/orders`: a **channel API key**: `Authorization: Bearer oms_...`, issued by an operator with order capture's
  `POST /v1/admin/api-keys` (shown once); it sees only its own channel's orders (another channel's answer 404), or
  the **operator token**: `Authorization: Bearer <OMS_ADMIN_TOKEN>` (the token the service was started with; `make
  up` keeps a dev one in `.local/dev/admin-token` when none is given) (every channel).
- `/v1/admin/*`: the **operator token**: `Authorization: Bearer <OMS_ADMIN_TOKEN>` (the token the service was
  started with; `make up` keeps a dev one in `.local/dev/admin-token` when none is given).
- `POST /v1/orders` also needs an `Idempotency-Key` header: the same key and body answer the first response again; a
  new order needs a new key and a new `external_id`.

No or unknown credentials answer 401 (`unauthorized`); a channel key on an operator endpoint answers 403.
"""

# Real answers (the README's walkthrough), shown in /docs.
ORDER_EXAMPLE = {'order_id': '01a241fc-ebbb-7147-9981-c7b0e549b261',
     'status': 'confirmed',
     'status_reason': None,
     'channel': 'web',
     'external_id': 'WEB-1001',
     'customer': {'id': 'c-42', 'name': 'Ana Lima', 'email': 'ana@example.com', 'phone': '+351912345678'},
     'shipping_address': {'name': 'Ana Lima',
                          'line1': 'Rua Augusta 1',
                          'line2': None,
                          'city': 'Lisboa',
                          'postal_code': '1100-048',
                          'country': 'PT'},
     'shipping_method': 'standard',
     'lines': [{'sku': 'TSHIRT-RED-M', 'quantity': 2, 'unit_price': '19.90', 'line_total': '39.80'}],
     'total': '39.80',
     'currency': 'EUR',
     'payment': {'method': 'card', 'status': 'authorized', 'reference': 'pay_123', 'amount': '39.80'},
     'created_at': '2026-12-04T16:57:04.187440+00:00',
     'updated_at': '2026-12-04T16:57:04.924224+00:00'}

_IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
# Query strings reach PostgreSQL as text, which cannot hold NUL; no filter value has control characters.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


@dataclass(frozen=True)
class Caller:
    kind: Literal["channel", "operator"]
    channel: str | None  # None for operators: they see every channel


class ApiKeyIn(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"channel": "web"}]})

    channel: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]


def build_router(api_keys: handlers.ApiKeys, admin_token: str | None) -> APIRouter:
    router = APIRouter()

    def is_operator(token: str) -> bool:
        # Without OMS_ADMIN_TOKEN set, operator endpoints refuse every call.
        return bool(admin_token) and hmac.compare_digest(token.encode(), str(admin_token).encode())

    @requires(CHANNEL, OPERATOR)
    async def caller(request: Request) -> Caller:
        token = bearer_token(request)
        if token is None:
            raise unauthorized()
        if is_operator(token):
            return Caller("operator", None)
        channel = await api_keys.channel_of(token)
        if channel is None:
            raise unauthorized("unknown or revoked API key")
        return Caller("channel", channel)

    CallerDep = Annotated[Caller, Depends(caller)]
    # A channel key is a 403 here (valid credentials, wrong scope): bootstrap points the app's
    # channel_key_lookup at api_keys.channel_of.
    OperatorDep = Annotated[str, Depends(operator_dependency(admin_token))]

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    def outbox(request: Request) -> Outbox:
        return request.app.state.runtime.outbox

    @router.post("/v1/admin/api-keys", status_code=201, tags=["admin"])
    async def create_api_key(body: ApiKeyIn, _: OperatorDep) -> dict[str, Any]:
        return await api_keys.create(body.channel)

    @router.get("/v1/admin/api-keys", tags=["admin"])
    async def list_api_keys(_: OperatorDep) -> Page:
        return single_page(await api_keys.list())

    @router.delete("/v1/admin/api-keys/{key_id}", status_code=204, tags=["admin"])
    async def revoke_api_key(key_id: UUID, _: OperatorDep) -> Response:
        await api_keys.revoke(key_id)
        return Response(status_code=204)

    # The hot path: called without FastAPI's routing (hot_route); body and headers are read directly (no
    # dependency solving per request); openapi_extra documents them as if they were parameters.
    @router.post("/v1/orders", status_code=201, tags=["orders"], responses=answer_example(
        {**ORDER_EXAMPLE, "status": "pending"}, 201, "the order, placed"), openapi_extra=json_body_openapi(
        OrderIn, {"Idempotency-Key": {"type": "string", "minLength": 1, "maxLength": 255}}, security=[CHANNEL]))
    @hot_route
    async def place_order(request: Request) -> ORJSONResponse:
        who = await caller(request)
        if who.kind != "channel":
            raise ApiError(403, "forbidden", "orders are placed with a channel API key")
        order = parse_json_body(OrderIn, await request.body())
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is None:
            raise field_error("Idempotency-Key", "required", "the Idempotency-Key header is required")
        if not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise field_error("Idempotency-Key", "printable_1_to_255",
                              "must be 1 to 255 printable ASCII characters")
        if order.channel != who.channel:
            raise ApiError(403, "forbidden", f"this API key belongs to channel {who.channel}, not {order.channel}",
                           [{"field": "channel", "rule": "matches_api_key", "message": f"must be {who.channel}"}])
        view = await handlers.place_order(pool(request), outbox(request), order, idempotency_key)
        return ORJSONResponse(view, 201, headers={"Location": f"/v1/orders/{view['order_id']}"})

    @router.get("/v1/orders/{order_id}", tags=["orders"], responses=answer_example(ORDER_EXAMPLE))
    async def get_order(request: Request, order_id: UUID, who: CallerDep) -> dict[str, Any]:
        return await handlers.get_order(pool(request), order_id, who.channel)

    @router.get("/v1/orders", tags=["orders"])
    async def list_orders(
        request: Request,
        who: CallerDep,
        status: OrderStatus | None = None,
        customer_id: Annotated[str | None, Query(max_length=128, pattern=_NO_CONTROL)] = None,
        created_from: Timestamp | None = None,
        created_to: Timestamp | None = None,
        channel: Annotated[str | None, Query(max_length=32, pattern=_NO_CONTROL)] = None,
        cursor: str | None = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Page:
        if who.channel is not None:
            if channel not in (None, who.channel):
                raise ApiError(403, "forbidden", f"this API key can only read channel {who.channel}")
            channel = who.channel
        return await handlers.list_orders(
            pool(request), channel=channel, status=status, customer_id=customer_id, created_from=created_from,
            created_to=created_to, cursor=cursor, limit=limit,
        )

    @router.post("/v1/orders/{order_id}/cancel", status_code=202, tags=["orders"])
    async def cancel_order(request: Request, order_id: UUID, body: CancelIn, who: CallerDep) -> dict[str, Any]:
        requested_by = f"channel:{who.channel}" if who.channel else "operator"
        return await handlers.request_cancellation(pool(request), outbox(request), order_id, body.reason, who.channel,
                                                   requested_by)

    return router
