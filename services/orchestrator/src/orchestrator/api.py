"""HTTP API of the orchestrator (CONTRACT.md, Orchestrator): operators read sagas."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from oms_platform.http import Limit, operator_dependency
from oms_platform.pagination import DEFAULT_LIMIT, Page
from orchestrator import handlers
from orchestrator.domain import SAGA_TYPE

# The head of the interactive docs (/docs): what the API is for and how to authenticate.
API_DESCRIPTION = """\
The order saga: each order's state, current step and every step with its times and outcome; stuck sagas.

**Authentication**

- Every `/v1` endpoint: the **operator token**: `Authorization: Bearer <OMS_ADMIN_TOKEN>` (the token the service was
  started with; `make up` keeps a dev one in `.local/dev/admin-token` when none is given).

No or unknown credentials answer 401 (`unauthorized`); a channel key on an operator endpoint answers 403.
"""

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
        limit: Limit = DEFAULT_LIMIT,
    ) -> Page:
        return await handlers.list_sagas(pool(request), saga_type=saga_type, state=state, stuck=stuck,
                                         cursor=cursor, limit=limit)

    return router
