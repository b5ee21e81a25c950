"""Builds the inventory service: settings, runtime (database, consumer, outbox relay), API."""

from pathlib import Path

from fastapi import FastAPI

from inventory import consumers
from inventory.api import API_DESCRIPTION, build_router
from inventory.handlers.effects import EVENTS
from inventory.settings import Settings
from oms_contracts import Publishes
from oms_contracts import inventory as contract
from oms_platform.runtime import ServiceRuntime, create_app

# What it sends (its outbox refuses anything else; /asyncapi.json is generated from it).
PUBLISHES = Publishes({EVENTS: (
    contract.StockReservedV1, contract.StockReservationFailedV1, contract.StockBackorderedV1,
    contract.StockReleasedV1, contract.StockCommittedV1, contract.StockRestockedV1, contract.LowStockV1,
    contract.SkuSettingsChangedV1,
)})


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(
        settings,
        migrations=Path(__file__).parent / "migrations",
        consumers=[consumers.commands_consumer(backorder_scan_limit=settings.backorder_scan_limit)],
        produces=PUBLISHES,
    )
    router = build_router(settings.oms_admin_token, backorder_scan_limit=settings.backorder_scan_limit,
                          outbox=runtime.outbox)
    return create_app(runtime, [router], title="OMS inventory", description=API_DESCRIPTION)
