"""HTTP API of __NAME__: thin routes that call the handlers (errors are mapped by the platform)."""

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from __PKG__.handlers import Service
from oms_platform.http import Limit, operator_dependency
from oms_platform.pagination import DEFAULT_LIMIT, Page


def build_router(service: Service, admin_token: str | None) -> APIRouter:
    router = APIRouter(prefix="/v1/__NAME__", tags=["__NAME__"],
                       dependencies=[Depends(operator_dependency(admin_token))])

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.get("/orders")
    async def list_orders(request: Request, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT) -> Page:
        return await service.list_orders(pool(request), cursor=cursor, limit=limit)

    @router.get("/orders/{order_id}")
    async def get_order(request: Request, order_id: UUID) -> dict[str, Any]:
        return await service.get_order(pool(request), order_id)

    return router
