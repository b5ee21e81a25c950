"""Rate limits per channel key (README, Input rules): a key past its budget gets 429 with Retry-After
in the contract's error shape; another channel's key and the operator go on unhindered."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.capture import ADMIN, Capture, running_capture

pytestmark = pytest.mark.infra

RATE, BURST = 2, 5


@pytest.fixture(scope="module")
async def cap(infra, log_dir) -> AsyncIterator[Capture]:
    async with running_capture(infra, log_dir, "rate_limit", RATE_LIMIT_PER_KEY_PER_SECOND=str(RATE),
                               RATE_LIMIT_BURST=str(BURST)) as c:
        yield c


async def test_a_key_past_its_budget_gets_429_and_the_others_go_on(cap: Capture):
    noisy, quiet = await cap.new_key("web"), await cap.new_key("pos")
    url = f"{cap.url}/v1/orders"
    answers = await asyncio.gather(*(cap.http.get(url, headers=noisy.auth) for _ in range(BURST + 5)))
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) <= BURST + 1, statuses  # the burst (and what refilled meanwhile)
    limited = [r for r in answers if r.status_code == 429]
    assert len(limited) >= 4, statuses
    error = limited[0].json()["error"]
    assert error["code"] == "rate_limited"
    assert error["fields"][0]["field"] == "Authorization" and error["fields"][0]["rule"] == "rate_limit"
    assert 1 <= int(limited[0].headers["retry-after"]) <= 1 / RATE + 1
    # Another channel's key, and the operator, are not held back by the noisy one.
    assert (await cap.http.get(url, headers=quiet.auth)).status_code == 200
    assert (await cap.http.get(f"{cap.url}/v1/admin/api-keys", headers=ADMIN)).status_code == 200
    # The noisy key gets through again once its bucket refilled.
    await asyncio.sleep(float(limited[0].headers["retry-after"]))
    assert (await cap.http.get(url, headers=noisy.auth)).status_code == 200
