"""Never overselling does not rest on the inventory-wide advisory lock: with it switched off, concurrent
transactions reserving the last units are still kept right by the sorted row locks, and the CHECK
constraint refuses any oversell that slipped past the code."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

import inventory
from inventory import repository as repo
from inventory.handlers import reservations
from oms_contracts import new_envelope
from oms_platform import db
from oms_platform.ids import uuid7
from oms_platform.outbox import UnitOfWork
from tests.integration.inventory.conftest import drop_database
from tests.integration.inventory.support import reserve_command

pytestmark = pytest.mark.infra


@pytest.fixture
async def pool(infra) -> AsyncIterator[asyncpg.Pool]:
    dsn = await infra.create_database("inventory_locks")
    p = await db.create_pool(dsn, min_size=2, max_size=20)
    await db.migrate(p, Path(inventory.__file__).parent / "migrations")
    async with p.acquire() as conn:
        await conn.execute("INSERT INTO locations (location_id, name, country) VALUES ('L1', 'L1', 'PT'), "
                           "('L2', 'L2', 'ES')")
        await conn.execute("INSERT INTO stock (sku, location_id, on_hand) VALUES ('HOT', 'L1', 12), ('HOT', 'L2', 8), "
                           "('COLD', 'L1', 500), ('COLD', 'L2', 500)")
    yield p
    await p.close()
    await drop_database(infra, dsn)


async def test_concurrent_transactions_without_the_advisory_lock_never_oversell(pool, monkeypatch):
    async def no_lock(conn: asyncpg.Connection) -> None:
        return None

    monkeypatch.setattr(repo, "lock_inventory", no_lock)
    gate = asyncio.Event()

    async def reserve_one(i: int) -> str:
        cmd = reserve_command(uuid7(), {"HOT": 1, "COLD": 1 + i % 3}, "PT" if i % 2 else "ES")
        env = new_envelope(cmd, producer="orchestrator", order_id=cmd.order_id)
        await gate.wait()
        async with pool.acquire() as conn, conn.transaction():
            batch = reservations.ReserveBatch()  # each transaction a batch of one command
            await batch.load(conn, [env])
            uow = UnitOfWork(conn, "inventory", batch, env)
            await reservations.reserve(uow, cmd)
            await batch.flush(conn)
        return uow.messages[0].headers[0][1]  # the reply's event_type

    tasks = [asyncio.create_task(reserve_one(i)) for i in range(60)]
    await asyncio.sleep(0.1)
    gate.set()
    outcomes = await asyncio.gather(*tasks)
    assert outcomes.count("StockReserved") == 20 and outcomes.count("StockReservationFailed") == 40
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT sum(reserved) FROM stock WHERE sku = 'HOT'") == 20
        assert await conn.fetchval("SELECT min(on_hand - reserved) FROM stock") >= 0


async def test_the_check_constraint_refuses_an_oversell(pool):
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE stock SET reserved = on_hand + 1 WHERE sku = 'HOT' AND location_id = 'L1'")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE stock SET on_hand = -1, reserved = 0 WHERE sku = 'HOT' AND location_id = 'L1'")
