"""PostgreSQL's side of a window: its background processes, activity counters per bench database,
rows read per table and index, and the ANALYZE after a warm-up."""

from bench.env import Context, fetch, process_cpu_seconds, run_async


def postgres_aux_pids(pg_admin_dsn: str) -> list[int]:
    """PostgreSQL's own processes (WAL writer, checkpointer, background writer, ...): they work for
    every database, and the commits of the benchmark are most of their work."""
    rows = fetch(pg_admin_dsn, "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'")
    return [r["pid"] for r in rows if process_cpu_seconds(r["pid"]) is not None]


PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated",
               "tup_deleted", "blks_read")
WAL_COUNTERS = ("wal_records", "wal_bytes", "wal_write", "wal_sync")


def _in_each(ctx: Context, databases: list[str], statement: str) -> None:
    """Runs the statement in every bench database, one connection each (VACUUM needs no transaction)."""
    import asyncpg

    async def go() -> None:
        for db in databases:
            conn = await asyncpg.connect(ctx.dsn_for(db), timeout=5)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

    run_async(go(), timeout=300)


def analyze(ctx: Context, databases: list[str]) -> None:
    """ANALYZE every bench database. Tables created empty by the services' migrations have no
    statistics yet, and the plans the services' prepared statements cache then (e.g. a sequential scan
    of the outbox, every saga id of a type read per batch) stay until autovacuum analyzes them, about a
    minute in: a database that has been running for a while has its statistics."""
    _in_each(ctx, databases, "ANALYZE")


def vacuum(ctx: Context, databases: list[str]) -> None:
    """VACUUM (ANALYZE) every bench database before a fixed-rate phase, so the phase before it (the
    maximum's tens of thousands of orders) is not vacuumed during the window: autovacuum of its rows
    started in the first seconds of the half-maximum window and took that window's p99 from 183-374 ms
    a second to 602-1481 ms (2026-12-06 05:55, both cores busy)."""
    _in_each(ctx, databases, "VACUUM (ANALYZE)")


def pg_table_reads(ctx: Context, databases: list[str]) -> dict[str, float]:
    """Cumulative rows read per table (sequential scans) and per index (index entries read), over the
    bench databases: {'<db> <table or index> seq|idx': rows}."""
    out: dict[str, float] = {}
    for db in databases:
        rows = fetch(ctx.dsn_for(db), """
            SELECT relname AS name, 'seq' AS kind, seq_tup_read AS n FROM pg_stat_user_tables
            UNION ALL
            SELECT indexrelname, 'idx', idx_tup_read FROM pg_stat_user_indexes""")
        for r in rows:
            out[f"{db.removeprefix('bench_')} {r['name']} {r['kind']}"] = float(r["n"] or 0)
    return out


def pg_counters(pg_admin_dsn: str, databases: list[str]) -> dict[str, dict[str, float]]:
    """Cumulative activity counters of the bench databases, and the cluster's WAL counters."""
    rows = fetch(pg_admin_dsn, f"SELECT datname, {', '.join(PG_COUNTERS)} FROM pg_stat_database "
                               f"WHERE datname = ANY($1::text[])", databases)
    out = {r["datname"]: {k: float(r[k]) for k in PG_COUNTERS} for r in rows}
    try:
        wal = fetch(pg_admin_dsn, f"SELECT {', '.join(WAL_COUNTERS)} FROM pg_stat_wal")
        out["(wal)"] = {k: float(wal[0][k]) for k in WAL_COUNTERS}
    except Exception:  # noqa: BLE001 - pg_stat_wal is PostgreSQL 14+
        pass
    return out


# --- the load and the measurements ------------------------------------------------------------------
