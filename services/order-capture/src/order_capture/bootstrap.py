"""Builds the order-capture service: settings, runtime, API."""

from pathlib import Path

from fastapi import FastAPI

from oms_contracts import Publishes
from oms_contracts.channels import ChannelKeyIssuedV1, ChannelKeyRevokedV1
from oms_contracts.orders import OrderCancellationRequestedV1, OrderPlacedV1
from oms_contracts.topics import CHANNELS_EVENTS, ORDERS_EVENTS
from oms_platform.runtime import ServiceRuntime, create_app
from order_capture import consumers, replacements
from order_capture.api import API_DESCRIPTION, build_router
from order_capture.handlers import ApiKeys
from order_capture.settings import Settings

# What it sends (its outbox refuses anything else; /asyncapi.json is generated from it).
PUBLISHES = Publishes({
    ORDERS_EVENTS: (OrderPlacedV1, OrderCancellationRequestedV1),
    CHANNELS_EVENTS: (ChannelKeyIssuedV1, ChannelKeyRevokedV1),
})


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(
        settings,
        migrations=Path(__file__).parent / "migrations",
        consumers=[consumers.STATUS, replacements.REPLACEMENTS],
        produces=PUBLISHES,
        channel_keys=False,  # it issues the keys: its own api_keys table is the source, not a copy
        # Taking an order needs the database only (stored and announced through the outbox): /readyz
        # says whether Kafka is reachable and the consumers have joined, without failing on them.
        ready_needs={"database"},
    )
    keys = ApiKeys(lambda: runtime.pool, runtime.outbox, settings.api_key_cache_seconds)
    app = create_app(runtime, [build_router(keys, settings.oms_admin_token)], title="OMS order capture",
                      description=API_DESCRIPTION)
    app.state.channel_key_lookup = keys.channel_of  # operator endpoints answer 403 to a channel key
    return app
