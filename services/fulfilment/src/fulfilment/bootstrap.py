"""Builds the fulfilment service: settings, carrier rules and adapters, runtime, API."""

from pathlib import Path

import orjson
from fastapi import FastAPI

from fulfilment import consumers
from fulfilment import repository as repo
from fulfilment.api import API_DESCRIPTION, build_router
from fulfilment.domain import DEFAULT_RULES, CarrierRule, parse_rules
from fulfilment.handlers import Fulfilment
from fulfilment.settings import Settings
from oms_carriers.carriers import BuiltinCarrier, Carriers, SerialBlocks
from oms_contracts import Publishes
from oms_contracts import fulfilment as contract
from oms_contracts.topics import events
from oms_platform.runtime import ServiceRuntime, create_app

# What it sends (its outbox refuses anything else; /asyncapi.json is generated from it).
PUBLISHES = Publishes({events("fulfilment"): (
    contract.ShipmentsCreatedV1, contract.ShipmentCreationFailedV1, contract.ShipmentStatusChangedV1,
    contract.ShipmentDispatchedV1, contract.ShipmentsCancelledV1, contract.ShipmentCancellationRefusedV1,
)})


def load_rules(path: Path | None) -> tuple[CarrierRule, ...]:
    """The rules of CARRIER_RULES_FILE, or the built-in defaults when it is not set. A file that is
    missing or invalid stops the service at start rather than shipping with the wrong carriers."""
    if path is None:
        return DEFAULT_RULES
    try:
        return parse_rules(orjson.loads(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"CARRIER_RULES_FILE {path}: {exc}") from exc


def build_carriers(settings: Settings, runtime: ServiceRuntime) -> Carriers:
    async def draw(n: int) -> list[int]:
        assert runtime.pool is not None
        return await repo.next_tracking_serials(runtime.pool, n)

    serial = SerialBlocks(draw, settings.tracking_serial_block)
    return Carriers([
        BuiltinCarrier(name, serial, prefix=settings.tracking_prefix, country=settings.tracking_country)
        for name in ("oms-post", "oms-express")
    ])


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    rules = load_rules(settings.carrier_rules_file)
    runtime = ServiceRuntime(settings, migrations=Path(__file__).parent / "migrations", produces=PUBLISHES)
    carriers = build_carriers(settings, runtime)
    unknown = {r.carrier for r in rules} - carriers.names()
    if unknown:
        raise SystemExit(f"carrier rules name carriers without an adapter: {sorted(unknown)}")
    service = Fulfilment(rules, carriers, outbox=runtime.outbox, sender_name=settings.label_sender_name)
    runtime.consumers = [consumers.command_consumer(service), consumers.DELIVERIES]
    return create_app(runtime, [build_router(service, settings.oms_admin_token)], title="OMS fulfilment",
                      description=API_DESCRIPTION)
