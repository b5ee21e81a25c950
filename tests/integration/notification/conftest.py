"""One notification process per module on topics of its own (KAFKA_TOPIC_PREFIX), a real SMTP
server, a Kafka publisher playing the other services, and an HTTP client."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.support.notification import Publisher, SmtpSink, notification_process
from tests.support.services import ServiceProcess


@dataclass
class Notif:
    process: ServiceProcess
    smtp: SmtpSink
    publish: Publisher
    http: httpx.AsyncClient
    database_url: str

    @property
    def url(self) -> str:
        return self.process.url


@pytest.fixture(scope="module")
async def notif(infra, log_dir, request: pytest.FixtureRequest) -> AsyncIterator[Notif]:
    prefix = f"n{uuid.uuid4().hex[:8]}."
    env = getattr(request.module, "SERVICE_ENV", {})
    smtp = SmtpSink().start()
    dsn = await infra.create_database("notif")
    process = notification_process(infra, log_dir, dsn, prefix, smtp.port, **env)
    publisher = await Publisher(infra.kafka_bootstrap, prefix).start()
    http = httpx.AsyncClient(timeout=30)
    try:
        process.start()
        yield Notif(process, smtp, publisher, http, dsn)
    finally:
        process.stop()
        await http.aclose()
        await publisher.stop()
        smtp.stop()
        conn = await asyncpg.connect(infra.pg_admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rpartition("/")[2]}" WITH (FORCE)')
        finally:
            await conn.close()
