"""Order capture while its database is unreachable: every request that needs it answers 503 with
Retry-After in the contract's error shape (no 500, no traceback per request), the log has one line
when the outage starts and one when it ends, and orders are taken again as soon as it is back."""

import asyncio

import asyncpg
import httpx
import pytest

from tests.support.capture import Capture, ChannelKey, service_process
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
async def proxy(infra) -> TcpProxy:
    host_port = infra.pg_admin_dsn.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    p = await TcpProxy(host, int(port)).start()
    yield p
    await p.cut()


@pytest.fixture(scope="module")
async def cap(infra, log_dir, proxy: TcpProxy):
    """Order capture whose database connections go through the proxy (the test's own pool does not)."""
    dsn = await infra.create_database("cap_outage")
    creds, _, rest = dsn.partition("@")
    proxied = f"{creds}@127.0.0.1:{proxy.port}/{rest.split('/', 1)[1]}"
    svc = service_process(infra, log_dir, proxied, "outage")
    await asyncio.to_thread(svc.start)
    try:
        async with httpx.AsyncClient(timeout=30) as http, asyncpg.create_pool(dsn, min_size=1, max_size=2) as db:
            yield Capture(svc, dsn, infra.kafka_bootstrap, http, db)
    finally:
        svc.stop()


async def test_an_outage_answers_503_with_retry_after_and_logs_once(
    cap: Capture, web: ChannelKey, proxy: TcpProxy
) -> None:
    await cap.place_ok(web)  # the pool is warm
    log_lines_before = len(cap.svc.log_path.read_text(errors="replace").splitlines())
    await proxy.cut()  # PostgreSQL "restarts": connections dropped, new ones refused
    try:
        answers = [await cap.place(web) for _ in range(8)]
        reads = [await cap.http.get(f"{cap.url}/v1/orders", headers=web.auth) for _ in range(4)]
    finally:
        await proxy.start()
    for resp in answers + reads:
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["error"]["code"] == "unavailable"
    for _ in range(50):  # back: orders are taken again at once
        resp = await cap.place(web)
        if resp.status_code == 201:
            break
        await asyncio.sleep(0.2)
    assert resp.status_code == 201, resp.text
    await asyncio.sleep(0.5)
    new_lines = cap.svc.log_path.read_text(errors="replace").splitlines()[log_lines_before:]
    assert sum("database unavailable" in line for line in new_lines) == 1, new_lines[-20:]
    assert sum("database reachable again" in line for line in new_lines) == 1, new_lines[-20:]
    # No traceback per request: a handful of lines for the whole outage (each component says when its
    # failure starts and ends), however many requests were refused.
    assert not any("unhandled error" in line or "Exception in ASGI" in line for line in new_lines), new_lines
    assert len(new_lines) <= 8, new_lines
