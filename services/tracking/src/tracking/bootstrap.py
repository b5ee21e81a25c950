"""Builds the tracking service: settings, runtime (with the timeline listener of the live streams),
consumers, the API and the customer page."""

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from oms_contracts import Publishes
from oms_contracts.fulfilment import ShipmentDeliveredV1
from oms_contracts.topics import events
from oms_contracts.tracking import CarrierScanRecordedV1, ShipmentDeliveryFailedV1
from oms_platform.channel_keys import ChannelKeys
from oms_platform.http import add_openapi_models
from oms_platform.runtime import ServiceRuntime, create_app
from tracking import api, page
from tracking.consumers import timeline_consumer
from tracking.handlers import CarrierEvent, Tracking
from tracking.settings import Settings
from tracking.stream import TimelineListener

# What it sends (its outbox refuses anything else; /asyncapi.json is generated from it).
PUBLISHES = Publishes({events("tracking"): (CarrierScanRecordedV1, ShipmentDeliveredV1, ShipmentDeliveryFailedV1)})


class TrackingRuntime(ServiceRuntime):
    """The platform runtime plus the LISTEN connection that wakes this process's live streams."""

    def __init__(self, settings: Settings, listener: TimelineListener, **kwargs: Any):
        super().__init__(settings, **kwargs)
        self.listener = listener

    async def start(self) -> None:
        await super().start()  # migrations first: the listener's channel is fed by their trigger
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()
        await super().stop()

    async def readiness(self) -> dict[str, str]:
        checks = await super().readiness()
        checks["stream_listener"] = "ok" if self.listener.connected else "connecting"
        return checks


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    listener = TimelineListener(settings.database_url)
    runtime = TrackingRuntime(
        settings, listener, migrations=Path(__file__).parent / "migrations", produces=PUBLISHES,
        lib_migrations=[ChannelKeys.migrations],
    )
    keys = ChannelKeys(runtime, settings.oms_admin_token)
    service = Tracking(outbox=runtime.outbox, link_secret=settings.tracking_link_secret,
                       public_url=settings.tracking_public_url)
    runtime.consumers = [timeline_consumer(service), keys.consumer]
    routers = [
        api.build_router(service, webhook_secret=settings.carrier_webhook_secret, caller=keys.caller,
                         listener=listener, heartbeat=settings.stream_heartbeat_seconds),
        page.build_router(service, settings.tracking_link_secret, listener, settings.stream_heartbeat_seconds),
    ]
    app = create_app(runtime, routers, title="OMS tracking", description=api.API_DESCRIPTION)
    add_openapi_models(app, CarrierEvent)  # the webhook reads its raw body (to check the signature first)
    return app
