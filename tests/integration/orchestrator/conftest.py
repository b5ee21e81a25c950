"""An orchestrator process per test module (its settings from the module's ORCHESTRATOR_ENV), and
the driver that plays the other systems around it."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.orchestrator.driver import Driver
from tests.integration.orchestrator.process import launch, shutdown
from tests.support.infra import Infra


@pytest.fixture(scope="module")
async def orchestrator(infra: Infra, log_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Driver]:
    svc, driver = await launch(infra, log_dir, getattr(request.module, "ORCHESTRATOR_ENV", {}))
    try:
        yield driver
    finally:
        await shutdown(infra, svc, driver)
