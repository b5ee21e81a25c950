"""Builds __NAME__: settings, the platform runtime (pool, migrations, outbox relay, consumers,
/healthz, /readyz, /metrics), its consumers and its API. Tests build the same app."""

from pathlib import Path

from fastapi import FastAPI

from __PKG__ import consumers
from __PKG__.api import build_router
from __PKG__.handlers import Service
from __PKG__.settings import Settings
from oms_platform.runtime import ServiceRuntime, create_app


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # produces=Publishes({events("__NAME__"): (SomethingHappenedV1, ...)}) (oms_contracts.publishing): each
    # topic it sends to (created at start) and the contract classes it sends there; its outbox refuses
    # anything else and its /asyncapi.json is generated from it.
    runtime = ServiceRuntime(settings, migrations=Path(__file__).parent / "migrations")
    service = Service()
    runtime.consumers = [consumers.orders_consumer(service)]
    return create_app(runtime, [build_router(service, settings.oms_admin_token)], title="OMS __NAME__")
