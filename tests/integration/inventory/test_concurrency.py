"""Never oversell: two inventory processes share one consumer group (so each command is handled once)
and one database; 120 orders compete for 50 units. Exactly the stock is reserved, no more."""

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from oms_platform.ids import uuid7
from tests.integration.inventory.conftest import drop_database
from tests.integration.inventory.support import (
    Replies,
    envelope,
    reserve_command,
    send,
    service_name,
    start_inventory,
)
from tests.support.infra import Infra
from tests.support.services import ServiceProcess

pytestmark = pytest.mark.infra

ORDERS = 120
HOT = {"L1": 30, "L2": 20}  # 50 units of the contested SKU


@pytest.fixture
async def pair(infra: Infra, log_dir, events) -> AsyncIterator[tuple[list[ServiceProcess], str, str, str]]:
    """Two inventory processes on a fresh database, in one consumer group: (processes, dsn, name, group)."""
    dsn = await infra.create_database("inventory_pair")
    name, suffix = service_name(), f".t{os.getpid()}.{uuid.uuid4().hex[:8]}"
    procs = await start_inventory(infra.kafka_bootstrap, dsn, log_dir, name=name, group_suffix=suffix, count=2)
    yield procs, dsn, name, f"{name}.commands{suffix}"
    await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))
    await drop_database(infra, dsn)


async def wait_for_members(bootstrap: str, group_id: str, members: int, timeout: float = 30) -> None:
    """Until the group is stable with `members` consumers, each holding partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            [response] = await admin.describe_consumer_groups([group_id])
            _, _, state, _, _, group_members = response.groups[0][:6]
            if state == "Stable" and len(group_members) == members:
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"group {group_id} did not get {members} stable members")
    finally:
        await admin.close()


async def applied(http, proc: ServiceProcess) -> float:
    text = (await http.get(f"{proc.url}/metrics")).text
    prefix = 'oms_consumer_messages_total{consumer="commands",outcome="applied"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


async def test_concurrent_reservations_never_oversell(infra, pair, events, http, admin_headers):
    procs, dsn, name, group = pair
    base = procs[0].url
    hot, wide = f"HOT-{uuid.uuid4().hex[:6]}", f"WIDE-{uuid.uuid4().hex[:6]}"
    for loc, units in HOT.items():
        for path, body in ((f"/v1/locations/{loc}", {"name": loc, "country": "PT" if loc == "L1" else "ES"}),
                           (f"/v1/locations/{loc}/stock/{hot}", {"on_hand": units}),
                           (f"/v1/locations/{loc}/stock/{wide}", {"on_hand": 1000})):
            resp = await http.put(f"{base}{path}", json=body, headers=admin_headers)
            assert resp.status_code in (200, 201), resp.text
    await wait_for_members(infra.kafka_bootstrap, group, 2)

    rng = random.Random(7)
    commands = []
    for _ in range(ORDERS):
        lines = [(hot, 1), (wide, rng.randint(1, 3))]
        rng.shuffle(lines)  # SKUs in either order: the locking may not depend on it
        commands.append(envelope(reserve_command(uuid7(), dict(lines), rng.choice(["PT", "ES", "FR"]))))
    await send(infra.kafka_bootstrap, *commands)

    replies = Replies(events, name)
    await events.wait_for(lambda _: all(replies.to(c) for c in commands), timeout=60)
    answers = [replies.to(c) for c in commands]
    assert all(len(a) == 1 for a in answers)  # each command handled once, by one of the two processes
    kinds = [a[0]["event_type"] for a in answers]
    assert kinds.count("StockReserved") == 50 and kinds.count("StockReservationFailed") == ORDERS - 50
    granted = sum(al["quantity"] for a in answers if a[0]["event_type"] == "StockReserved"
                  for al in a[0]["payload"]["allocations"] if al["sku"] == hot)
    assert granted == sum(HOT.values())

    stock = (await http.get(f"{base}/v1/stock/{hot}", headers=admin_headers)).json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (50, 50, 0)
    assert all(loc["available"] == 0 for loc in stock["locations"])
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT min(on_hand - reserved) FROM stock") >= 0
        # What the reservations hold is exactly what the stock rows count as reserved.
        mismatched = await conn.fetch(
            """SELECT s.sku, s.location_id FROM stock s LEFT JOIN (
                   SELECT a->>'sku' AS sku, a->>'location_id' AS loc, sum((a->>'quantity')::int) AS q
                   FROM reservations r, jsonb_array_elements(r.allocations) a
                   WHERE r.status = 'reserved' GROUP BY 1, 2) h ON h.sku = s.sku AND h.loc = s.location_id
               WHERE s.reserved <> coalesce(h.q, 0)""")
        assert mismatched == []
    finally:
        await conn.close()
    handled = [await applied(http, p) for p in procs]
    assert all(n > 0 for n in handled), f"both processes should have handled commands: {handled}"
