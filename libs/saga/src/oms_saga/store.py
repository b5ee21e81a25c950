"""SQL of the engine's tables (migrations/0001_saga.sql). Every function takes an open connection and
runs in the caller's transaction. A saga is read with one statement (locking its row) and written
with one (instance, history rows and notes together)."""

from datetime import datetime
from uuid import UUID

import asyncpg

from oms_saga.state import Control, SagaState, Transition

COLUMNS = """saga_id, saga_type, order_id, state, current_step, stuck, status, status_reason, data, control,
    deadline_at, attempts, created_at, updated_at"""

_LOAD = f"SELECT {COLUMNS} FROM saga_instances WHERE saga_type = $1 AND order_id = $2 FOR UPDATE"

# Locks in order_id order, so two transactions locking overlapping sets cannot deadlock.
_LOAD_MANY = f"""SELECT {COLUMNS} FROM saga_instances
    WHERE saga_type = $1 AND order_id = ANY($2::uuid[]) ORDER BY order_id FOR UPDATE"""

# Sagas whose deadline passed; rows another ticker (or a consumer) holds are skipped, not waited for.
_DUE = f"""SELECT {COLUMNS} FROM saga_instances
    WHERE deadline_at <= $2 AND saga_type = $1
    ORDER BY deadline_at LIMIT $3 FOR UPDATE SKIP LOCKED"""

_SAVE = """
WITH instance AS (
    INSERT INTO saga_instances (saga_id, saga_type, order_id, state, current_step, stuck, status, status_reason,
                                data, control, deadline_at, attempts, created_at, updated_at)
    SELECT $1::uuid, $2::text, $3::uuid, $4::text, $5::text, $6::bool, $7::text, $8::text, $9::jsonb, $10::jsonb,
           $11::timestamptz, $12::int, $13::timestamptz, $14::timestamptz
    WHERE $15::bool
    ON CONFLICT (saga_id) DO UPDATE SET
        state = EXCLUDED.state, current_step = EXCLUDED.current_step, stuck = EXCLUDED.stuck,
        status = EXCLUDED.status, status_reason = EXCLUDED.status_reason, data = EXCLUDED.data,
        control = EXCLUDED.control, deadline_at = EXCLUDED.deadline_at, attempts = EXCLUDED.attempts,
        updated_at = EXCLUDED.updated_at
), steps AS (
    INSERT INTO saga_steps (saga_id, seq, step, kind, started_at, finished_at, attempts, outcome, detail)
    SELECT $1::uuid, * FROM unnest($16::int[], $17::text[], $18::text[], $19::timestamptz[], $20::timestamptz[],
                                   $21::int[], $22::text[], $23::text[])
    ON CONFLICT (saga_id, seq) DO UPDATE SET
        finished_at = EXCLUDED.finished_at, attempts = EXCLUDED.attempts, outcome = EXCLUDED.outcome,
        detail = coalesce(EXCLUDED.detail, saga_steps.detail)
), notes AS (
    INSERT INTO saga_log (saga_id, at, event_type, event_id, causation_id, disposition, detail)
    SELECT $1::uuid, $29::timestamptz, * FROM unnest($24::text[], $25::uuid[], $26::uuid[], $27::text[], $28::text[])
)
SELECT 1
"""


def _state(row: asyncpg.Record) -> SagaState:
    return SagaState(
        saga_id=row["saga_id"], saga_type=row["saga_type"], order_id=row["order_id"], state=row["state"],
        step=row["current_step"], stuck=row["stuck"], data=row["data"], deadline_at=row["deadline_at"],
        attempts=row["attempts"], status=row["status"], status_reason=row["status_reason"],
        control=Control.from_json(row["control"]), created_at=row["created_at"], updated_at=row["updated_at"],
    )


async def load(conn: asyncpg.Connection, saga_type: str, order_id: UUID) -> SagaState | None:
    """The saga of an order, its row locked until the caller's transaction ends."""
    row = await conn.fetchrow(_LOAD, saga_type, order_id)
    return _state(row) if row else None


async def load_many(conn: asyncpg.Connection, saga_type: str, order_ids: list[UUID]) -> dict[UUID, SagaState]:
    """The sagas of several orders (those that exist), all locked, in one statement."""
    return {r["order_id"]: _state(r) for r in await conn.fetch(_LOAD_MANY, saga_type, order_ids)}


async def due(conn: asyncpg.Connection, saga_type: str, now: datetime, limit: int) -> list[SagaState]:
    return [_state(r) for r in await conn.fetch(_DUE, saga_type, now, limit)]


async def save(conn: asyncpg.Connection, tr: Transition, now: datetime) -> None:
    """Writes what a transition changed, in one statement; nothing when it changed nothing."""
    s = tr.state
    if s is None or not (tr.changed or tr.steps or tr.notes):
        return
    rows = list(tr.steps.values())
    await conn.execute(
        _SAVE,
        s.saga_id, s.saga_type, s.order_id, s.state, s.step, s.stuck, s.status, s.status_reason, s.data,
        s.control.to_json(), s.deadline_at, s.attempts, s.created_at, s.updated_at, tr.changed,
        [r.seq for r in rows], [r.step for r in rows], [r.kind for r in rows], [r.started_at for r in rows],
        [r.finished_at for r in rows], [r.attempts for r in rows], [r.outcome for r in rows],
        [r.detail for r in rows],
        [n.event_type for n in tr.notes], [n.event_id for n in tr.notes], [n.causation_id for n in tr.notes],
        [n.disposition for n in tr.notes], [n.detail for n in tr.notes], now,
    )


async def stuck_count(conn: asyncpg.Connection, saga_type: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM saga_instances WHERE stuck AND saga_type = $1", saga_type)
