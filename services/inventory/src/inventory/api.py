"""HTTP API of inventory (CONTRACT.md, Inventory): every endpoint is for operators."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request

from inventory.handlers import operator
from inventory.schemas import LOCATION_PATTERN, SKU_PATTERN, LocationIn, SkuSettingsIn, StockIn
from oms_platform.http import Limit, ORJSONResponse, answer_example, operator_dependency
from oms_platform.outbox import Outbox
from oms_platform.pagination import DEFAULT_LIMIT, Page

# The head of the interactive docs (/docs): what the API is for and how to authenticate.
API_DESCRIPTION = """\
Locations, on-hand stock, SKU settings and reservations. The saga reserves and releases stock over Kafka; these
endpoints are the operator's.

**Authentication**

- Every `/v1` endpoint: the **operator token**: `Authorization: Bearer <OMS_ADMIN_TOKEN>` (the token the service was
  started with; `make up` keeps a dev one in `.local/dev/admin-token` when none is given).

No or unknown credentials answer 401 (`unauthorized`); a channel key on an operator endpoint answers 403.
"""

# Real answers (the README's walkthrough), shown in /docs.
STOCK_EXAMPLE = {'sku': 'TSHIRT-RED-M',
     'on_hand': 10,
     'reserved': 2,
     'available': 8,
     'locations': [{'location_id': 'lisbon-dc', 'on_hand': 10, 'reserved': 2, 'available': 8}]}
RESERVATION_EXAMPLE = {'order_id': '01a241fc-ebbb-7147-9981-c7b0e549b261',
     'reservation_id': '01a241fc-edcf-7a1a-842e-3227f257cbe4',
     'status': 'reserved',
     'destination_country': 'PT',
     'lines': [{'sku': 'TSHIRT-RED-M', 'quantity': 2}],
     'allocations': [{'sku': 'TSHIRT-RED-M', 'quantity': 2, 'committed': 0, 'location_id': 'lisbon-dc'}],
     'strategy': 'single_location_in_country',
     'reason': 'lisbon-dc (PT) holds every line in the destination country',
     'short': [],
     'failure_reason': None,
     'released': None,
     'release_reason': None,
     'created_at': '2026-12-04T16:57:04.653402+00:00',
     'updated_at': '2026-12-04T16:57:04.653402+00:00'}

# SKUs may contain "/", so their path parameters take the rest of the path (`{sku:path}`).
Sku = Annotated[str, Path(pattern=SKU_PATTERN)]
LocationId = Annotated[str, Path(pattern=LOCATION_PATTERN)]


def _created_or_ok(view: dict[str, Any], created: bool) -> ORJSONResponse:
    return ORJSONResponse(view, 201 if created else 200)


# A PUT creates what is not there yet (201) or replaces it (200): _created_or_ok.
CREATED_OR_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "replaced"}, 201: {"description": "created"}}


def build_router(admin_token: str | None, *, backorder_scan_limit: int, outbox: Outbox) -> APIRouter:
    router = APIRouter(dependencies=[Depends(operator_dependency(admin_token))], tags=["inventory"])

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.put("/v1/locations/{location_id}", responses=CREATED_OR_OK)
    async def put_location(request: Request, location_id: LocationId, body: LocationIn) -> ORJSONResponse:
        return _created_or_ok(*await operator.put_location(pool(request), location_id, body.name, body.country))

    @router.get("/v1/locations")
    async def list_locations(request: Request, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT) -> Page:
        return await operator.list_locations(pool(request), cursor=cursor, limit=limit)

    @router.put("/v1/locations/{location_id}/stock/{sku:path}", responses=CREATED_OR_OK)
    async def set_stock(request: Request, location_id: LocationId, sku: Sku, body: StockIn) -> ORJSONResponse:
        return _created_or_ok(*await operator.set_stock(
            pool(request), location_id, sku, body.on_hand, body.reason, scan_limit=backorder_scan_limit,
            outbox=outbox))

    @router.put("/v1/skus/{sku:path}", responses=CREATED_OR_OK)
    async def put_sku(request: Request, sku: Sku, body: SkuSettingsIn) -> ORJSONResponse:
        return _created_or_ok(*await operator.put_sku(
            pool(request), sku, body.allow_backorder, body.low_stock_threshold, body.returnable,
            outbox=outbox))

    @router.get("/v1/skus/{sku:path}")
    async def get_sku(request: Request, sku: Sku) -> dict[str, Any]:
        return await operator.get_sku(pool(request), sku)

    # Declared before /v1/stock/{sku:path}, which would otherwise take ".../movements" as part of the SKU.
    @router.get("/v1/stock/{sku:path}/movements")
    async def movements(request: Request, sku: Sku, location_id: Annotated[str | None, Query(max_length=64)] = None,
                        cursor: str | None = None, limit: Limit = DEFAULT_LIMIT) -> Page:
        return await operator.list_movements(pool(request), sku, location_id, cursor=cursor, limit=limit)

    @router.get("/v1/stock/{sku:path}", responses=answer_example(STOCK_EXAMPLE))
    async def stock(request: Request, sku: Sku) -> dict[str, Any]:
        return await operator.stock_view(pool(request), sku)

    @router.get("/v1/reservations/{order_id}", responses=answer_example(RESERVATION_EXAMPLE))
    async def reservation(request: Request, order_id: UUID) -> dict[str, Any]:
        return await operator.reservation_view(pool(request), order_id)

    return router
