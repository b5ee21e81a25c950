"""A service SIGKILLed and started again gets its partitions back at once (static group membership,
KAFKA_GROUP_INSTANCE_ID), instead of waiting out the session timeout of its dead self before it is
ready to consume."""

import time

import pytest

from tests.support.services import ServiceProcess

pytestmark = pytest.mark.infra

SESSION_TIMEOUT_S = 60


async def test_a_restarted_consumer_is_ready_well_within_the_session_timeout(infra, log_dir) -> None:
    dsn = await infra.create_database("static_inv")
    svc = ServiceProcess("inventory", database_url=dsn, kafka_bootstrap=infra.kafka_bootstrap, log_dir=log_dir,
                         env={"KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_S * 1000),
                              "KAFKA_GROUP_SUFFIX": f".static{time.time_ns()}"})
    try:
        svc.start()
        svc.kill()
        started = time.monotonic()
        svc.start(wait=False)
        svc.wait_ready(timeout=SESSION_TIMEOUT_S * 2)
        took = time.monotonic() - started
        # Dynamic membership would wait for the dead member's 30 s session to expire first.
        assert took < SESSION_TIMEOUT_S / 2, f"ready after {took:.1f}s"
    finally:
        svc.stop()
