"""Starts a real orchestrator process for the integration tests on its own database and its own
topics (a unique KAFKA_TOPIC_PREFIX): other developers' services and tests on the same Kafka
neither answer its commands nor feed it their orders."""

import uuid
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.orchestrator.driver import Driver
from tests.support.infra import Infra
from tests.support.services import ADMIN_TOKEN, ServiceProcess

FAST = {"OUTBOX_POLL_INTERVAL": "0.1", "TICK_INTERVAL_SECONDS": "0.2"}


async def launch(infra: Infra, log_dir: Path, env: dict[str, str], *, start: bool = True
                 ) -> tuple[ServiceProcess, Driver]:
    """The process (started unless `start` is false) and a driver already reading its output."""
    prefix = f"it{uuid.uuid4().hex[:10]}."
    database = await infra.create_database("orch")
    svc = ServiceProcess("orchestrator", database_url=database, kafka_bootstrap=infra.kafka_bootstrap,
                         log_dir=log_dir, env={
                             "KAFKA_TOPIC_PREFIX": prefix, "KAFKA_GROUP_SUFFIX": f".{prefix.rstrip('.')}",
                             # Its topics are its own: nothing in them is another test's history.
                             "KAFKA_AUTO_OFFSET_RESET": "earliest", "OMS_ADMIN_TOKEN": ADMIN_TOKEN, **FAST, **env,
                         })
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    driver = await Driver(infra.kafka_bootstrap, svc.url, prefix, headers).start()
    if start:
        svc.start()
    return svc, driver


async def shutdown(infra: Infra, svc: ServiceProcess, driver: Driver) -> None:
    svc.stop()
    await driver.stop()
    conn = await asyncpg.connect(infra.pg_admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{svc.env["DATABASE_URL"].rpartition("/")[2]}" WITH (FORCE)')
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(driver.prefix)])
    finally:
        await admin.close()
