"""Real Kafka and PostgreSQL for the tests, started once per run.

OMS_TEST_INFRA chooses where they come from:
  auto (default) - testcontainers when a Docker engine answers, else the local servers
  docker         - testcontainers (Kafka and PostgreSQL modules)
  local          - deploy/local/infra.sh test start (Kafka 19092, PostgreSQL 55433; wiped each run)
  external       - already running: TEST_KAFKA_BOOTSTRAP and TEST_PG_ADMIN_DSN
"""

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Infra:
    kafka_bootstrap: str
    pg_admin_dsn: str  # a superuser DSN on the `postgres` database
    mode: str
    _stop: object = None

    def dsn_for(self, database: str) -> str:
        base, _, _ = self.pg_admin_dsn.rpartition("/")
        return f"{base}/{database}"

    async def create_database(self, prefix: str) -> str:
        """A fresh database for one test scope; returns its DSN."""
        name = f"t_{prefix}_{uuid.uuid4().hex[:10]}".replace("-", "_")
        conn = await asyncpg.connect(self.pg_admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.dsn_for(name)

    def stop(self) -> None:
        if callable(self._stop):
            self._stop()


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means no engine here
        return False


def _start_docker() -> Infra:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    kafka = KafkaContainer().with_kraft()
    pg = PostgresContainer("postgres:16-alpine", username="oms", password="oms", dbname="postgres", driver=None)
    kafka.start()
    pg.start()

    def stop() -> None:
        kafka.stop()
        pg.stop()

    dsn = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
    return Infra(kafka.get_bootstrap_server(), dsn, "docker", stop)


def _start_local() -> Infra:
    script = ROOT / "deploy" / "local" / "infra.sh"
    status = subprocess.run([str(script), "test", "status"], capture_output=True, text=True).stdout
    already_running = "kafka: running" in status and "postgres: running" in status
    subprocess.run([str(script), "test", "start"], check=True)
    out = subprocess.run([str(script), "test", "env"], check=True, capture_output=True, text=True).stdout
    env = dict(line.split("=", 1) for line in out.split())
    # Servers this run found running (another run's, or kept with OMS_TEST_KEEP_INFRA=1) stay up.
    keep = already_running or os.environ.get("OMS_TEST_KEEP_INFRA") == "1"

    def stop() -> None:
        if not keep:
            subprocess.run([str(script), "test", "stop"], check=False)

    return Infra(env["KAFKA_BOOTSTRAP"], env["PG_ADMIN_DSN"], "local", stop)


def start_infra() -> Infra:
    mode = os.environ.get("OMS_TEST_INFRA", "auto")
    if mode == "external":
        return Infra(os.environ["TEST_KAFKA_BOOTSTRAP"], os.environ["TEST_PG_ADMIN_DSN"], "external")
    if mode == "docker" or (mode == "auto" and _docker_available()):
        return _start_docker()
    return _start_local()
