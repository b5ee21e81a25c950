"""Builds the orchestrator: settings, the order saga and its runner, runtime (with the deadline
ticker), API."""

from pathlib import Path

from fastapi import FastAPI

from oms_contracts import Publishes, billing, fulfilment, inventory, orders
from oms_contracts.topics import BILLING_REQUESTS, ORDERS_STATUS, commands
from oms_platform.runtime import create_app
from oms_saga import MIGRATIONS as ENGINE_MIGRATIONS
from oms_saga.runner import SagaRunner
from oms_saga.runtime import SagaRuntime
from orchestrator import consumers, returns
from orchestrator.api import API_DESCRIPTION, build_router
from orchestrator.domain import order_saga
from orchestrator.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"

# What it sends (its outbox refuses anything else; /asyncapi.json is generated from it).
PUBLISHES = Publishes({
    ORDERS_STATUS: (orders.OrderStatusChangedV1, orders.OrderCancellationRefusedV1),
    BILLING_REQUESTS: (billing.PaymentCaptureRequestedV1, billing.InvoiceRequestedV1),
    commands("inventory"): (inventory.ReserveStockV1, inventory.ReleaseStockV1, inventory.CommitStockV1),
    commands("fulfilment"): (fulfilment.CreateShipmentsV1, fulfilment.CancelShipmentsV1),
})


class OrchestratorRuntime(SagaRuntime):
    """The saga runtime (with the deadline ticker) wired with the orchestrator's consumers."""

    def __init__(self, settings: Settings, runner: SagaRunner):
        super().__init__(
            settings, runner,
            # The engine's tables (saga instances and their history) come with the engine, applied as
            # saga/<file>; the orchestrator's own folder holds only what is the orchestrator's.
            migrations=MIGRATIONS,
            lib_migrations=[("saga", ENGINE_MIGRATIONS)],
            consumers=[consumers.saga_consumer(runner), returns.RETURNS],
            produces=PUBLISHES,
        )


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runner = SagaRunner(order_saga(settings.deadlines(), producer=settings.service_name))
    runtime = OrchestratorRuntime(settings, runner)
    return create_app(runtime, [build_router(settings.oms_admin_token)], title="OMS orchestrator",
                      description=API_DESCRIPTION)
