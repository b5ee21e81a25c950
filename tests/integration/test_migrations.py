"""Plain-SQL migrations: each script applied once, in name order, under an advisory lock, and an
applied script that changed afterwards is refused."""

import asyncio
from pathlib import Path

import asyncpg
import pytest

from oms_platform import db

pytestmark = pytest.mark.infra

PLATFORM = ["platform/0001_outbox_inbox.sql", "platform/0002_outbox_parked.sql",
            "platform/0003_inbox_dead_lettered.sql", "platform/0004_batch_conflict.sql",
            "platform/0005_outbox_delete_when_sent.sql"]


def _write(folder: Path, scripts: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, sql in scripts.items():
        (folder / name).write_text(sql)
    return folder


async def _applied(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")]
    finally:
        await conn.close()


async def test_applied_once_in_name_order_and_rerun_applies_nothing(fresh_db: str, tmp_path: Path) -> None:
    folder = _write(tmp_path / "migrations", {
        "0002_second.sql": "ALTER TABLE widgets ADD COLUMN colour text;",
        "0001_first.sql": "CREATE TABLE widgets (id int PRIMARY KEY);",
        "README.md": "not a migration",
    })
    pool = await db.create_pool(fresh_db, min_size=1, max_size=2)
    try:
        first = await db.migrate(pool, folder)
        assert first == [*PLATFORM, "0001_first.sql", "0002_second.sql"]
        assert await pool.fetchval("SELECT count(*) FROM information_schema.columns WHERE table_name = 'widgets'") == 2
        assert await pool.fetchval("SELECT to_regclass('outbox') IS NOT NULL AND to_regclass('inbox') IS NOT NULL")

        assert await db.migrate(pool, folder) == []
        assert await _applied(fresh_db) == sorted(first)

        _write(folder, {"0003_third.sql": "CREATE INDEX widgets_colour ON widgets (colour);"})
        assert await db.migrate(pool, folder) == ["0003_third.sql"]
    finally:
        await pool.close()


async def test_concurrent_migrate_calls_apply_each_script_once(fresh_db: str, tmp_path: Path) -> None:
    # The slow script keeps the first caller inside the lock while the second one arrives; without the
    # lock both would run CREATE TABLE and one would fail.
    folder = _write(tmp_path / "migrations", {
        "0001_slow.sql": "SELECT pg_sleep(0.3); CREATE TABLE gadgets (id int PRIMARY KEY);",
        "0002_rows.sql": "INSERT INTO gadgets VALUES (1);",
    })
    pools = [await db.create_pool(fresh_db, min_size=1, max_size=1) for _ in range(2)]
    try:
        results = await asyncio.gather(*(db.migrate(p, folder) for p in pools))
    finally:
        for p in pools:
            await p.close()
    everything = [*PLATFORM, "0001_slow.sql", "0002_rows.sql"]
    assert sorted(results[0] + results[1]) == sorted(everything)  # each script applied by exactly one caller
    assert [] in results  # the one that waited for the lock found everything applied
    assert await _applied(fresh_db) == sorted(everything)
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM gadgets") == 1
    finally:
        await conn.close()


async def test_changed_applied_script_raises_and_releases_the_lock(fresh_db: str, tmp_path: Path) -> None:
    folder = _write(tmp_path / "migrations", {"0001_t.sql": "CREATE TABLE t (id int);"})
    pool = await db.create_pool(fresh_db, min_size=1, max_size=2)
    try:
        await db.migrate(pool, folder)
        _write(folder, {"0001_t.sql": "CREATE TABLE t (id bigint);", "0002_u.sql": "CREATE TABLE u (id int);"})
        with pytest.raises(RuntimeError, match="0001_t.sql"):
            await db.migrate(pool, folder)
        assert await _applied(fresh_db) == sorted([*PLATFORM, "0001_t.sql"])  # nothing after it ran

        # The failed call released the advisory lock: another caller is not blocked.
        _write(folder, {"0001_t.sql": "CREATE TABLE t (id int);"})
        assert await asyncio.wait_for(db.migrate(pool, folder), 30) == ["0002_u.sql"]
    finally:
        await pool.close()


async def test_failing_script_leaves_no_trace_and_can_be_fixed(fresh_db: str, tmp_path: Path) -> None:
    folder = _write(tmp_path / "migrations", {
        "0001_ok.sql": "CREATE TABLE ok (id int);",
        "0002_bad.sql": "CREATE TABLE half (id int); CREATE TABLE broken (id nosuchtype);",
    })
    pool = await db.create_pool(fresh_db, min_size=1, max_size=2)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await db.migrate(pool, folder)
        assert await _applied(fresh_db) == sorted([*PLATFORM, "0001_ok.sql"])
        assert await pool.fetchval("SELECT to_regclass('half')") is None  # the script's transaction rolled back

        _write(folder, {"0002_bad.sql": "CREATE TABLE half (id int);"})
        assert await asyncio.wait_for(db.migrate(pool, folder), 30) == ["0002_bad.sql"]
    finally:
        await pool.close()
