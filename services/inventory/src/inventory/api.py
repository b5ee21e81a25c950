"""HTTP API of inventory (CONTRACT.md, Inventory): every endpoint is for operators."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request

from inventory import repository as repo
from inventory.handlers import operator
from inventory.schemas import LOCATION_PATTERN, SKU_PATTERN, LocationIn, SkuSettingsIn, StockIn
from oms_platform.http import ORJSONResponse, decode_cursor, encode_cursor, field_error, operator_dependency

# SKUs may contain "/", so their path parameters take the rest of the path (`{sku:path}`).
Sku = Annotated[str, Path(pattern=SKU_PATTERN)]
LocationId = Annotated[str, Path(pattern=LOCATION_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=200)]


def _created_or_ok(view: dict[str, Any], created: bool) -> ORJSONResponse:
    return ORJSONResponse(view, 201 if created else 200)


def _cursor_value(cursor: str | None, key: str, kind: type) -> Any:
    value = (decode_cursor(cursor) or {}).get(key) if cursor else None
    if cursor and not isinstance(value, kind):
        raise field_error("cursor", "invalid_cursor", "cursor is not one this API returned")
    return value


def build_router(admin_token: str | None, *, backorder_scan_limit: int, producer: str) -> APIRouter:
    router = APIRouter(dependencies=[Depends(operator_dependency(admin_token))], tags=["inventory"])

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.put("/v1/locations/{location_id}")
    async def put_location(request: Request, location_id: LocationId, body: LocationIn) -> ORJSONResponse:
        return _created_or_ok(*await operator.put_location(pool(request), location_id, body.name, body.country))

    @router.get("/v1/locations")
    async def list_locations(request: Request, cursor: str | None = None, limit: Limit = 50) -> dict[str, Any]:
        after = _cursor_value(cursor, "l", str)
        async with pool(request).acquire() as conn:
            rows = await repo.list_locations(conn, after, limit + 1)
        items = [operator.location_view(r) for r in rows[:limit]]
        next_cursor = encode_cursor({"l": rows[limit - 1]["location_id"]}) if len(rows) > limit else None
        return {"items": items, "next_cursor": next_cursor}

    @router.put("/v1/locations/{location_id}/stock/{sku:path}")
    async def set_stock(request: Request, location_id: LocationId, sku: Sku, body: StockIn) -> ORJSONResponse:
        return _created_or_ok(*await operator.set_stock(
            pool(request), location_id, sku, body.on_hand, body.reason, scan_limit=backorder_scan_limit,
            producer=producer))

    @router.put("/v1/skus/{sku:path}")
    async def put_sku(request: Request, sku: Sku, body: SkuSettingsIn) -> ORJSONResponse:
        return _created_or_ok(*await operator.put_sku(
            pool(request), sku, body.allow_backorder, body.low_stock_threshold, body.returnable,
            producer=producer))

    @router.get("/v1/skus/{sku:path}")
    async def get_sku(request: Request, sku: Sku) -> dict[str, Any]:
        return await operator.get_sku(pool(request), sku)

    # Declared before /v1/stock/{sku:path}, which would otherwise take ".../movements" as part of the SKU.
    @router.get("/v1/stock/{sku:path}/movements")
    async def movements(request: Request, sku: Sku, location_id: Annotated[str | None, Query(max_length=64)] = None,
                        cursor: str | None = None, limit: Limit = 50) -> dict[str, Any]:
        before = _cursor_value(cursor, "m", int)
        async with pool(request).acquire() as conn:
            rows = await repo.movements(conn, sku, location_id, before, limit + 1)
        items = [operator.movement_view(r) for r in rows[:limit]]
        next_cursor = encode_cursor({"m": rows[limit - 1]["movement_id"]}) if len(rows) > limit else None
        return {"items": items, "next_cursor": next_cursor}

    @router.get("/v1/stock/{sku:path}")
    async def stock(request: Request, sku: Sku) -> dict[str, Any]:
        return await operator.stock_view(pool(request), sku)

    @router.get("/v1/reservations/{order_id}")
    async def reservation(request: Request, order_id: UUID) -> dict[str, Any]:
        return await operator.reservation_view(pool(request), order_id)

    return router
