"""PostgreSQL access: the pool (with JSON codecs) and plain-SQL migrations applied under a lock."""

import hashlib
import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import asyncpg
import orjson

log = logging.getLogger(__name__)

# Any constant works as long as every service uses the same one: migrations of one database never
# run twice at once, whichever process starts first.
_MIGRATION_LOCK = 0x0A15_0001


def json_text(value: object) -> str:
    """JSON as text, for jsonb that travels inside a parameter array (text[], cast to jsonb in SQL) or as
    one document of rows (jsonb_to_recordset): the pool's codec covers single jsonb parameters only.
    Values orjson has no form for (asyncpg's own UUID type, on ids read back) become their str."""
    return orjson.dumps(value, default=str).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset: asyncpg itself still rolls back a transaction left open. Its default reset also runs
    `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release, a round trip per
    request and per batch for state this code never leaves on a pooled connection (session advisory
    locks, cursors, LISTEN and SET live on connections of their own)."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection, command_timeout=30, reset=_keep_session
    )


def _platform_migrations() -> list[tuple[str, str]]:
    folder = resources.files("oms_platform") / "migrations"
    return sorted(
        (f"platform/{p.name}", p.read_text()) for p in folder.iterdir() if p.name.endswith(".sql")
    )


def _service_migrations(folder: Path) -> list[tuple[str, str]]:
    return sorted((p.name, p.read_text()) for p in folder.glob("*.sql"))


async def migrate(
    pool: asyncpg.Pool, service_migrations: Path | None, lib_migrations: Sequence[tuple[str, Path]] = ()
) -> list[str]:
    """Applies the platform's migrations (outbox, inbox), then those of the libs the service uses
    (e.g. ("saga", oms_saga.MIGRATIONS), recorded as saga/<file>), then the service's own: each once,
    in name order, each in its own transaction, under an advisory lock. A changed applied file is an
    error."""
    scripts = _platform_migrations()
    for lib, folder in lib_migrations:
        scripts += [(f"{lib}/{name}", sql) for name, sql in _service_migrations(folder)]
    scripts += _service_migrations(service_migrations) if service_migrations else []
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       name text PRIMARY KEY, checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_migrations")}
            for name, sql in scripts:
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if name in done:
                    if done[name] != checksum:
                        raise RuntimeError(f"migration {name} changed after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations(name, checksum) VALUES ($1, $2)", name, checksum
                    )
                log.info("applied migration %s", name)
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied
