"""HTTP API of the orchestrator (CONTRACT.md, Orchestrator): operators read sagas."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from oms_platform.http import Limit, answer_example, operator_dependency
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

# Real answers (the README's walkthrough), shown in /docs.
SAGA_EXAMPLE = {'saga_id': '01a241fc-ecfb-7e03-8579-624db8568cc6',
     'saga_type': 'order',
     'order_id': '01a241fc-ebbb-7147-9981-c7b0e549b261',
     'state': 'running',
     'current_step': 'await_dispatch',
     'stuck': False,
     'status': 'confirmed',
     'status_reason': None,
     'deadline_at': '2026-12-06T16:57:05.477818Z',
     'attempts': 0,
     'created_at': '2026-12-04T16:57:04.506987Z',
     'updated_at': '2026-12-04T16:57:05.477818Z',
     'steps': [{'seq': 1,
                'step': 'reserve_stock',
                'kind': 'forward',
                'started_at': '2026-12-04T16:57:04.506987Z',
                'finished_at': '2026-12-04T16:57:04.924224Z',
                'attempts': 1,
                'outcome': 'succeeded',
                'detail': 'StockReserved (single_location_in_country)'},
               {'seq': 2,
                'step': 'payment_gate',
                'kind': 'forward',
                'started_at': '2026-12-04T16:57:04.924224Z',
                'finished_at': '2026-12-04T16:57:04.924224Z',
                'attempts': 0,
                'outcome': 'passed',
                'detail': None},
               {'seq': 3,
                'step': 'create_shipments',
                'kind': 'forward',
                'started_at': '2026-12-04T16:57:04.924224Z',
                'finished_at': '2026-12-04T16:57:05.477818Z',
                'attempts': 1,
                'outcome': 'succeeded',
                'detail': 'ShipmentsCreated (1)'},
               {'seq': 4,
                'step': 'await_dispatch',
                'kind': 'forward',
                'started_at': '2026-12-04T16:57:05.477818Z',
                'finished_at': None,
                'attempts': 0,
                'outcome': None,
                'detail': None}],
     'ignored_messages': []}

SagaState = Literal["pending", "running", "compensating", "completed", "failed", "cancelled"]


def build_router(admin_token: str | None) -> APIRouter:
    router = APIRouter(tags=["sagas"])
    OperatorDep = Annotated[str, Depends(operator_dependency(admin_token))]

    def pool(request: Request) -> Any:
        return request.app.state.runtime.pool

    @router.get("/v1/sagas/{order_id}", responses=answer_example(SAGA_EXAMPLE))
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
