"""Fixtures of the end-to-end modules: for the order-capture ones one capture process per module (a
module that needs other settings overrides `cap`), its channel keys, and a reader of oms.orders.events;
for the saga ones the whole system of services per module (`system`, overridden likewise)."""

from collections.abc import AsyncIterator

import pytest

from tests.support.capture import Capture, ChannelKey, events_reader, running_capture
from tests.support.kafka import TopicReader
from tests.support.system import System


@pytest.fixture(scope="module")
async def cap(infra, log_dir, request: pytest.FixtureRequest) -> AsyncIterator[Capture]:
    label = request.module.__name__.rsplit("test_capture_", 1)[-1]
    async with running_capture(infra, log_dir, label) as c:
        yield c


@pytest.fixture(scope="module")
async def web(cap: Capture) -> ChannelKey:
    return await cap.new_key("web")


@pytest.fixture(scope="module")
async def pos(cap: Capture) -> ChannelKey:
    return await cap.new_key("pos")


@pytest.fixture(scope="module")
async def reader(cap: Capture) -> AsyncIterator[TopicReader]:
    r = await events_reader(cap.kafka)
    yield r
    await r.stop()


@pytest.fixture(scope="module")
async def system(infra, log_dir) -> AsyncIterator[System]:
    system = await System.start(infra, log_dir)
    yield system
    await system.stop()
