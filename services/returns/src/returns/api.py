"""HTTP API of returns (CONTRACT.md, Returns): the order's channel (or an operator) requests and reads
returns; operators receive them. Refusals answer 422 naming each line's rule, nothing stored."""

import re
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from oms_platform.channel_keys import Caller, ChannelKeys
from oms_platform.http import ORJSONResponse, answer_example, field_error
from oms_platform.pagination import Page
from returns import domain
from returns.handlers import Returns
from returns.saga import SAGA_TYPE
from returns.views import saga_view

# The head of the interactive docs (/docs): what the API is for and how to authenticate.
API_DESCRIPTION = """\
Return authorisations (RMAs): requests checked against the rules, return labels, receipt, restock and the refund or
exchange.

**Authentication**

- `POST /v1/returns`, `GET /v1/returns`, `GET /v1/returns/{return_id}` (and its label, cancel): a **channel API
  key**: `Authorization: Bearer oms_...`, issued by an operator with order capture's `POST /v1/admin/api-keys`
  (shown once); it sees only its own channel's orders (another channel's answer 404) for its own orders, or the
  **operator token**: `Authorization: Bearer <OMS_ADMIN_TOKEN>` (the token the service was started with; `make up`
  keeps a dev one in `.local/dev/admin-token` when none is given).
- `/v1/returns/{return_id}/receive` and `/saga`: the **operator token**: `Authorization: Bearer <OMS_ADMIN_TOKEN>`
  (the token the service was started with; `make up` keeps a dev one in `.local/dev/admin-token` when none is
  given).
- `POST /v1/returns` also needs an `Idempotency-Key` header.

No or unknown credentials answer 401 (`unauthorized`); a channel key on an operator endpoint answers 403.
"""

# Real answers (the README's walkthrough), shown in /docs.
RETURN_EXAMPLE = {'return_id': '01a241fc-fd1b-7821-9d66-2c8ff063e675',
     'order_id': '01a241fc-ebbb-7147-9981-c7b0e549b261',
     'channel': 'web',
     'resolution': 'refund',
     'status': 'awaiting_receipt',
     'outcome': None,
     'lines': [{'sku': 'TSHIRT-RED-M', 'reason': 'too_small', 'quantity': 1, 'unit_price': '19.90'}],
     'received': [],
     'currency': 'EUR',
     'refund_amount': None,
     'replacement_order_id': None,
     'carrier': 'oms-post',
     'tracking_number': 'OMR0000000027PT',
     'history': [{'at': '2026-12-04T16:57:08.607242Z', 'status': 'requested'},
                 {'at': '2026-12-04T16:57:08.607242Z', 'status': 'approved'},
                 {'at': '2026-12-04T16:57:08.607242Z', 'status': 'awaiting_receipt'}],
     'created_at': '2026-12-04T16:57:08.607242+00:00',
     'updated_at': '2026-12-04T16:57:08.607242+00:00',
     'label_url': '/v1/returns/01a241fc-fd1b-7821-9d66-2c8ff063e675/label'}

_IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
ReturnStatus = Literal["awaiting_receipt", "received", "refunded", "exchanged", "closed", "cancelled"]


def build_router(service: Returns, keys: ChannelKeys) -> APIRouter:
    router = APIRouter(prefix="/v1/returns", tags=["returns"])
    CallerDep = Annotated[Caller, Depends(keys.caller)]
    OperatorDep = Annotated[Caller, Depends(keys.operator)]

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.post("", status_code=201, responses={**answer_example(RETURN_EXAMPLE, 201, "the return, approved"),
                                                 404: {"description": "the order is not known to returns (yet)"}})
    async def request_return(request: Request, body: domain.ReturnIn, who: CallerDep) -> ORJSONResponse:
        key = request.headers.get("idempotency-key")
        if key is None:
            raise field_error("Idempotency-Key", "required", "the Idempotency-Key header is required")
        if not _IDEMPOTENCY_KEY.match(key):
            raise field_error("Idempotency-Key", "printable_1_to_255", "must be 1 to 255 printable ASCII characters")
        view, _ = await service.request(pool(request), body, key, who)
        return ORJSONResponse(view, 201, headers={"Location": f"/v1/returns/{view['return_id']}"})

    @router.get("")
    async def list_returns(
        request: Request, who: CallerDep, order_id: UUID | None = None, status: ReturnStatus | None = None,
        cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Page:
        return await service.list(pool(request), who, order_id=order_id, status=status, cursor=cursor, limit=limit)

    @router.get("/{return_id}", responses=answer_example(RETURN_EXAMPLE))
    async def get_return(request: Request, return_id: UUID, who: CallerDep) -> dict[str, Any]:
        return await service.get(pool(request), return_id, who)

    @router.get("/{return_id}/label", response_class=Response,
                responses={200: {"content": {"application/pdf": {}}, "description": "the return label (PDF)"}})
    async def label(request: Request, return_id: UUID, who: CallerDep) -> Response:
        pdf, tracking = await service.label(pool(request), return_id, who)
        safe = "".join(c for c in tracking if c.isalnum()) or "return"
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="return-label-{safe}.pdf"'})

    @router.get("/{return_id}/saga")
    async def saga(request: Request, return_id: UUID, _: OperatorDep) -> dict[str, Any]:
        """The return's saga as the orchestrator shows an order's: state, current step, every step."""
        return await saga_view(pool(request), SAGA_TYPE, return_id)

    @router.post("/{return_id}/receive")
    async def receive(request: Request, return_id: UUID, body: domain.ReceiveIn, _: OperatorDep) -> dict[str, Any]:
        return await service.receive(pool(request), return_id, body)

    @router.post("/{return_id}/cancel")
    async def cancel(request: Request, return_id: UUID, body: domain.CancelIn, who: CallerDep) -> dict[str, Any]:
        return await service.cancel(pool(request), return_id, body.reason, who)

    return router
