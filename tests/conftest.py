"""Shared fixtures: real Kafka and PostgreSQL once per test run, and service processes on them."""

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.infra import ROOT, Infra, start_infra
from tests.support.services import ADMIN_TOKEN, ServiceProcess

# Property tests judge correctness, not speed: no per-example deadline (CI's 2 cores run Kafka,
# PostgreSQL and service processes beside them, and a slow example is not a wrong one).
settings.register_profile("oms", deadline=None)
settings.load_profile("oms")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `last` (the chaos run restarts the shared test Kafka and PostgreSQL) run after the others."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    env = start_infra()
    yield env
    env.stop()


@pytest.fixture(scope="session")
def log_dir() -> Path:
    path = ROOT / ".local" / "test" / "service-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def database(infra: Infra, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for one test."""
    return await infra.create_database(request.node.name[:20].lower())


@pytest.fixture
def start_service(infra: Infra, log_dir: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """start_service(name, database_url, **env) runs a service process; all stopped at test end."""
    started: list[ServiceProcess] = []

    def start(name: str, database_url: str, *, wait: bool = True, **env: str) -> ServiceProcess:
        env.setdefault("OMS_ADMIN_TOKEN", ADMIN_TOKEN)
        # A consumer group per test: tests never steal each other's messages.
        env.setdefault("KAFKA_GROUP_SUFFIX", f".t{os.getpid()}.{len(started)}.{id(started)}")
        svc = ServiceProcess(name, database_url=database_url, kafka_bootstrap=infra.kafka_bootstrap,
                             log_dir=log_dir, env=env)
        started.append(svc)
        return svc.start(wait=wait)

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture
async def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def http() -> AsyncIterator:
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        yield client
