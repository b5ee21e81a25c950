"""The short chaos runs of `make chaos` in `make test`, every service started through
deploy/local/services.sh on topics and databases of their own, with its mail sink: steady orders
from three channels with retries on the same Idempotency-Key, a share of them shipped, delivered (the
carrier's webhook), returned (the returns API, retried with its key) and refunded (billing played by
the run), a webhook receiver subscribed; SIGKILLs of random replicas (each started again) and a
rolling restart. Then nothing lost, stuck, oversold, wrongly reserved or doubled (reservation,
shipment, stock movement, email, webhook, return, refund), and no status going backwards.

Two runs of 15 processes rather than one of 21 (`make chaos REPLICAS=3` runs those), so each run's
few kills land on the replicas it is about: three replicas of the saga services (order-capture, orchestrator,
inventory, fulfilment; one of the others) with, on the local test servers, a Kafka and a PostgreSQL
restart (infra.sh; these tests run last, so no other test sees them); then three replicas of
tracking, notification and returns (one of the others), their replicas the ones killed."""

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.infra import Infra
from tests.support.services import ADMIN_TOKEN, free_port, service_table, spaced_free_ports
from tools.chaos.__main__ import chaos
from tools.chaos.stack import SERVICES_SH, Stack

pytestmark = [pytest.mark.infra, pytest.mark.last]

REPLICAS, STEP = 3, 10
SAGA = ("order-capture", "orchestrator", "inventory", "fulfilment")
EDGES = ("tracking", "notification", "returns")


def base_ports(n: int) -> list[int]:
    return spaced_free_ports(n, REPLICAS, STEP)


@pytest.mark.parametrize(("tripled", "restarts", "rolling"),
                         [pytest.param(SAGA, True, "orchestrator", id="saga-replicas"),
                          pytest.param(EDGES, False, "notification", id="edge-replicas")])
async def test_short_chaos_run_loses_and_doubles_nothing(infra: Infra, tmp_path: Path, tripled: tuple[str, ...],
                                                         restarts: bool, rolling: str) -> None:
    nonce = uuid.uuid4().hex[:8]
    services = service_table()
    conf = tmp_path / "services.conf"
    conf.write_text("".join(f"{name} {module} {port} chaos_{nonce}_{module}\n"
                            for (name, (module, _, _)), port in zip(services.items(), base_ports(len(services)),
                                                                     strict=True)))
    env = {**os.environ, "SERVICES_CONF": str(conf), "OMS_STATE_DIR": str(tmp_path / "state"),
           "OMS_SERVICES_INFRA": "external", "KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
           "PG_ADMIN_DSN": infra.pg_admin_dsn, "KAFKA_TOPIC_PREFIX": f"chaos{nonce}.",
           "KAFKA_GROUP_SUFFIX": f".chaos{nonce}", "OMS_ADMIN_TOKEN": ADMIN_TOKEN, "LOG_LEVEL": "WARNING",
           "REPLICAS": ",".join(f"{s}={REPLICAS}" for s in tripled), "REPLICA_PORT_STEP": str(STEP),
           "MAIL_SINK_PORT": str(free_port()),
           "CARRIER_WEBHOOK_SECRET": f"chaos-carrier-{nonce}", "TRACKING_LINK_SECRET": f"chaos-link-{nonce}",
           # A sender SIGKILLed mid-send leaves its rows leased: 15 s (over the SMTP and webhook timeouts)
           # rather than 60 before another replica takes them.
           "SENDER_LEASE_SECONDS": "15"}
    stack = Stack.from_env(env, infra.kafka_bootstrap, infra.pg_admin_dsn,
                           "test" if infra.mode == "local" and restarts else None)
    try:
        up = await asyncio.to_thread(subprocess.run, [str(SERVICES_SH), "up"], env=env, capture_output=True,
                                     text=True, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        report = await chaos(stack, rate=4, seconds=30, kills=8, settle_seconds=180, seed=21, rolling=rolling,
                             targets=None if restarts else tripled)
        print(report.text())
        assert report.kills >= 8 and report.orders >= 100, report.text()
        assert report.checks["journeys (shipped, delivered, returned, refunded)"][0] >= 10, report.text()
        assert report.failed == [], report.text()
        if stack.infra_profile:
            assert {"kafka", "postgres"} <= set(report.recovery), report.text()
    finally:
        await asyncio.to_thread(subprocess.run, [str(SERVICES_SH), "down"], env=env, capture_output=True, timeout=300)
