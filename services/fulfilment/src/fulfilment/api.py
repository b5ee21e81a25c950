"""HTTP API of fulfilment (CONTRACT.md, Fulfilment): operators list shipments, move them through
pick -> pack -> dispatch, and print their labels."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from fulfilment.handlers import Fulfilment
from oms_contracts.fulfilment import ShipmentStatus
from oms_platform.http import Limit, answer_example, operator_dependency
from oms_platform.pagination import DEFAULT_LIMIT, Page

# The head of the interactive docs (/docs): what the API is for and how to authenticate.
API_DESCRIPTION = """\
Shipments: one per location of an order's reservation, with carrier, tracking number and label; the warehouse picks,
packs and dispatches them.

**Authentication**

- Every `/v1` endpoint: the **operator token**: `Authorization: Bearer <OMS_ADMIN_TOKEN>` (the token the service was
  started with; `make up` keeps a dev one in `.local/dev/admin-token` when none is given).

No or unknown credentials answer 401 (`unauthorized`); a channel key on an operator endpoint answers 403.
"""

# A real answer (the README's walkthrough), shown in /docs.
SHIPMENTS_EXAMPLE = {'items': [{'shipment_id': '01a241fc-efa5-700a-a507-1e6c294b1ec0',
                'order_id': '01a241fc-ebbb-7147-9981-c7b0e549b261',
                'location_id': 'lisbon-dc',
                'lines': [{'sku': 'TSHIRT-RED-M', 'quantity': 2}],
                'status': 'dispatched',
                'shipping_method': 'standard',
                'carrier': 'oms-post',
                'service': 'standard',
                'tracking_number': 'OMS0000000027PT',
                'created_at': '2026-12-04T16:57:05.189863+00:00',
                'updated_at': '2026-12-04T16:57:05.708293+00:00',
                'dispatched_at': '2026-12-04T16:57:05.708293+00:00'}],
     'next_cursor': None}


def build_router(service: Fulfilment, admin_token: str | None) -> APIRouter:
    router = APIRouter(prefix="/v1/shipments", tags=["shipments"],
                       dependencies=[Depends(operator_dependency(admin_token))])

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.get("", responses=answer_example(SHIPMENTS_EXAMPLE))
    async def list_shipments(
        request: Request,
        order_id: UUID | None = None,
        status: ShipmentStatus | None = None,
        location_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        cursor: str | None = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Page:
        return await service.list_shipments(pool(request), order_id=order_id, status=status, location_id=location_id,
                                            cursor=cursor, limit=limit)

    @router.get("/{shipment_id}")
    async def get_shipment(request: Request, shipment_id: UUID) -> dict[str, Any]:
        return await service.get(pool(request), shipment_id)

    @router.post("/{shipment_id}/pick")
    async def pick(request: Request, shipment_id: UUID) -> dict[str, Any]:
        return await service.transition(pool(request), shipment_id, "pick")

    @router.post("/{shipment_id}/pack")
    async def pack(request: Request, shipment_id: UUID) -> dict[str, Any]:
        return await service.transition(pool(request), shipment_id, "pack")

    @router.post("/{shipment_id}/dispatch")
    async def dispatch(request: Request, shipment_id: UUID) -> dict[str, Any]:
        return await service.transition(pool(request), shipment_id, "dispatch")

    @router.get("/{shipment_id}/label", response_class=Response,
                responses={200: {"content": {"application/pdf": {}}, "description": "the label (PDF)"}})
    async def label(request: Request, shipment_id: UUID) -> Response:
        pdf, tracking = await service.label(pool(request), shipment_id)
        safe = "".join(c for c in tracking if c.isalnum() or c in "-_") or "shipment"
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="label-{safe}.pdf"'})

    return router
