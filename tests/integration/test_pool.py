"""The platform's pool releases connections without asyncpg's reset query (a round trip per request
and per batch), yet a transaction left open on a released connection is still rolled back."""

import pytest

from oms_platform import db

pytestmark = pytest.mark.infra


async def test_a_released_connection_has_no_open_transaction_and_no_extra_round_trip(fresh_db: str):
    pool = await db.create_pool(fresh_db, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE t (v int)")
            tx = conn.transaction()
            await tx.start()  # left open: never committed nor rolled back by its owner
            await conn.execute("INSERT INTO t VALUES (1)")
            backend = conn.get_server_pid()
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == backend  # the same session...
            assert not conn.is_in_transaction()  # ...with the abandoned transaction rolled back
            assert await conn.fetchval("SELECT count(*) FROM t") == 0
            # The default reset would have run "RESET ALL": a session setting survives the release.
            await conn.execute("SET application_name = 'kept'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "kept"
    finally:
        await pool.close()
