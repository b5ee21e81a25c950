"""HTTP API of fulfilment (CONTRACT.md, Fulfilment): operators list shipments, move them through
pick -> pack -> dispatch, and print their labels."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from fulfilment import repository as repo
from fulfilment.handlers import Fulfilment, shipment_view
from oms_contracts.fulfilment import ShipmentStatus
from oms_platform.http import decode_cursor, encode_cursor, field_error, operator_dependency


def build_router(service: Fulfilment, admin_token: str | None) -> APIRouter:
    router = APIRouter(prefix="/v1/shipments", tags=["shipments"],
                       dependencies=[Depends(operator_dependency(admin_token))])

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.get("")
    async def list_shipments(
        request: Request,
        order_id: UUID | None = None,
        status: ShipmentStatus | None = None,
        location_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        after = decode_cursor(cursor)
        try:
            after_id = UUID(after["i"]) if after else None
        except (KeyError, TypeError, ValueError) as exc:
            raise field_error("cursor", "invalid_cursor", "cursor is not one this API returned") from exc
        async with pool(request).acquire() as conn:
            rows = await repo.list_shipments(conn, order_id=order_id, status=status, location_id=location_id,
                                             after=after_id, limit=limit + 1)
        items = [shipment_view(r) for r in rows[:limit]]
        next_cursor = encode_cursor({"i": items[-1]["shipment_id"]}) if len(rows) > limit else None
        return {"items": items, "next_cursor": next_cursor}

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
