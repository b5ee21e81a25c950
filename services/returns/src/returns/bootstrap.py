"""Builds the returns service: settings, the return saga and its runner, carrier adapters for the
labels, runtime (with the saga's deadline ticker), API."""

from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from fastapi import FastAPI

from oms_carriers.carriers import BuiltinCarrier, Carriers, SerialBlocks
from oms_contracts import Publishes
from oms_contracts import returns as contract
from oms_contracts.billing import RefundRequestedV1
from oms_contracts.inventory import RestockV1
from oms_contracts.topics import BILLING_REQUESTS, commands, events
from oms_platform.channel_keys import ChannelKeys
from oms_platform.http import add_openapi_models
from oms_platform.outbox import Outbox
from oms_platform.runtime import ServiceRuntime, create_app
from oms_saga import MIGRATIONS as ENGINE_MIGRATIONS
from oms_saga.runner import SagaRunner
from oms_saga.runtime import SagaRuntime
from returns import consumers
from returns import repository as repo
from returns.api import API_DESCRIPTION, build_router
from returns.domain import ReturnIn
from returns.handlers import Returns
from returns.saga import return_saga
from returns.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
# What it sends (its outbox refuses anything else; /asyncapi.json is generated from it).
PUBLISHES = Publishes({
    events("returns"): (contract.ReturnApprovedV1, contract.ReturnReceivedV1, contract.ReturnRefundedV1,
                        contract.ReturnExchangedV1, contract.ReturnClosedV1, contract.ReplacementOrderRequestedV1),
    BILLING_REQUESTS: (RefundRequestedV1,),
    commands("inventory"): (RestockV1,),
})


class ReturnsRunner(SagaRunner):
    """The saga runner whose deadline tick also closes the returns it expired (their closing needs the
    order's other returns, so the service does it right after, in its own transaction: a crash in
    between leaves the saga ended and the row awaiting receipt, closed on the first tick after the
    restart). Looked for only after a tick that applied deadlines, not on every idle tick."""

    settle: Callable[[asyncpg.Pool], Awaitable[int]] | None = None
    _settled_once = False

    async def tick(self, outbox: Outbox, pool: asyncpg.Pool, *, limit: int = 200) -> int:
        n = await super().tick(outbox, pool, limit=limit)
        if self.settle is not None and (n or not self._settled_once):
            await self.settle(pool)
            self._settled_once = True
        return n


class ReturnsRuntime(SagaRuntime):
    """The saga runtime (with the return sagas' deadline ticker) wired with the returns consumers."""

    def __init__(self, settings: Settings, runner: SagaRunner):
        super().__init__(settings, runner, migrations=MIGRATIONS, produces=PUBLISHES,
                         lib_migrations=[("saga", ENGINE_MIGRATIONS), ChannelKeys.migrations])
        self.keys = ChannelKeys(self, settings.oms_admin_token)
        self.consumers = [consumers.COPIES, consumers.saga_consumer(runner), self.keys.consumer]


def build_carriers(settings: Settings, runtime: ServiceRuntime) -> Carriers:
    async def draw(n: int) -> list[int]:
        assert runtime.pool is not None
        return await repo.next_label_serials(runtime.pool, n)

    serials = SerialBlocks(draw, 20)
    return Carriers([BuiltinCarrier(settings.label_carrier, serials, prefix=settings.tracking_prefix,
                                    country=settings.tracking_country)])


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    saga = return_saga(settings.deadlines(), producer=settings.service_name)
    runner = ReturnsRunner(saga)
    runtime = ReturnsRuntime(settings, runner)
    service = Returns(saga, build_carriers(settings, runtime), settings, runtime.outbox)
    runner.settle = service.settle_expired
    router = build_router(service, runtime.keys)
    app = create_app(runtime, [router], title="OMS returns", description=API_DESCRIPTION)
    add_openapi_models(app, ReturnIn)
    return app
