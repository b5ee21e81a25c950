"""HTTP API of the orchestrator (CONTRACT.md, Orchestrator): operators read sagas."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from oms_platform.http import decode_cursor, encode_cursor, field_error, operator_dependency
from orchestrator import handlers
from orchestrator.domain import SAGA_TYPE

SagaState = Literal["pending", "running", "compensating", "completed", "failed", "cancelled"]


def build_router(admin_token: str | None) -> APIRouter:
    router = APIRouter(tags=["sagas"])
    OperatorDep = Annotated[str, Depends(operator_dependency(admin_token))]

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.get("/v1/sagas/{order_id}")
    async def get_saga(request: Request, order_id: UUID, _: OperatorDep, saga_type: str = SAGA_TYPE) -> dict[str, Any]:
        """The order's saga: state, current step, stuck flag, and every step with its times and outcome."""
        return await handlers.get_saga(pool(request), saga_type, order_id)

    @router.get("/v1/sagas")
    async def list_sagas(
        request: Request,
        _: OperatorDep,
        state: SagaState | None = None,
        stuck: bool | None = None,
        saga_type: str | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        after = decode_cursor(cursor)
        try:
            before = UUID(after["i"]) if after else None
        except (KeyError, TypeError, ValueError) as exc:
            raise field_error("cursor", "invalid_cursor", "cursor is not one this API returned") from exc
        items, last = await handlers.list_sagas(pool(request), saga_type=saga_type, state=state, stuck=stuck,
                                                before=before, limit=limit)
        return {"items": items, "next_cursor": encode_cursor({"i": str(last)}) if last else None}

    return router
