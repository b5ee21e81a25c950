"""SQL of the engine's tables (migrations/0001_saga.sql). Every function takes an open connection and
runs in the caller's transaction. Sagas are read with one statement (locking their rows) and written
with one (instances, history rows and notes together), however many a consumed batch touches."""

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import asyncpg
import orjson

from oms_saga.state import Control, Note, SagaState, StepRecord, Transition

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

# Writes many sagas at once: the instances that changed, their history rows, their notes. One
# statement per consumed batch, whatever the number of sagas and events in it.
_SAVE = """
WITH instance AS (
    INSERT INTO saga_instances (saga_id, saga_type, order_id, state, current_step, stuck, status, status_reason,
                                data, control, deadline_at, attempts, created_at, updated_at)
    SELECT u.saga_id, u.saga_type, u.order_id, u.state, u.current_step, u.stuck, u.status, u.status_reason,
           u.data::jsonb, u.control::jsonb, u.deadline_at, u.attempts, u.created_at, u.updated_at
    FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::bool[], $7::text[], $8::text[],
                $9::text[], $10::text[], $11::timestamptz[], $12::int[], $13::timestamptz[], $14::timestamptz[])
         AS u(saga_id, saga_type, order_id, state, current_step, stuck, status, status_reason, data, control,
              deadline_at, attempts, created_at, updated_at)
    ON CONFLICT (saga_id) DO UPDATE SET
        state = EXCLUDED.state, current_step = EXCLUDED.current_step, stuck = EXCLUDED.stuck,
        status = EXCLUDED.status, status_reason = EXCLUDED.status_reason, data = EXCLUDED.data,
        control = EXCLUDED.control, deadline_at = EXCLUDED.deadline_at, attempts = EXCLUDED.attempts,
        updated_at = EXCLUDED.updated_at
), steps AS (
    INSERT INTO saga_steps (saga_id, seq, step, kind, started_at, finished_at, attempts, outcome, detail)
    SELECT * FROM unnest($15::uuid[], $16::int[], $17::text[], $18::text[], $19::timestamptz[], $20::timestamptz[],
                         $21::int[], $22::text[], $23::text[])
    ON CONFLICT (saga_id, seq) DO UPDATE SET
        finished_at = EXCLUDED.finished_at, attempts = EXCLUDED.attempts, outcome = EXCLUDED.outcome,
        detail = coalesce(EXCLUDED.detail, saga_steps.detail)
), notes AS (
    INSERT INTO saga_log (saga_id, at, event_type, event_id, causation_id, disposition, detail)
    SELECT * FROM unnest($24::uuid[], $25::timestamptz[], $26::text[], $27::uuid[], $28::uuid[], $29::text[],
                         $30::text[])
)
SELECT 1
"""


@dataclass
class Write:
    """What the transitions of one saga changed, merged: its last state (written when any of them
    changed it), each history row as last decided, and every note with its time."""

    state: SagaState
    changed: bool = False
    steps: dict[int, StepRecord] = field(default_factory=dict)
    notes: list[tuple[datetime, Note]] = field(default_factory=list)

    def add(self, tr: Transition, now: datetime) -> None:
        assert tr.state is not None
        self.state, self.changed = tr.state, self.changed or tr.changed
        for seq, rec in tr.steps.items():
            earlier = self.steps.get(seq)
            if earlier is not None and rec.detail is None:  # as the upsert does: a detail once set stays
                rec = dataclasses.replace(rec, detail=earlier.detail)
            self.steps[seq] = rec
        self.notes += [(now, n) for n in tr.notes]

    @classmethod
    def of(cls, transitions: Iterable[Transition], now: datetime) -> "Write":
        """One saga's transitions (oldest first), merged."""
        items = list(transitions)
        assert items and items[0].state is not None
        write = cls(items[0].state)
        for tr in items:
            write.add(tr, now)
        return write

    @property
    def empty(self) -> bool:
        return not (self.changed or self.steps or self.notes)


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
    """Writes what one transition changed; nothing when it changed nothing."""
    if tr.state is not None:
        await save_many(conn, [Write.of([tr], now)])


async def save_many(conn: asyncpg.Connection, writes: Iterable[Write]) -> None:
    """Writes what transitions of several sagas changed, in one statement."""
    writes = [w for w in writes if not w.empty]
    if not writes:
        return
    sagas = [w.state for w in writes if w.changed]
    steps = [(w.state.saga_id, r) for w in writes for r in w.steps.values()]
    notes = [(w.state.saga_id, at, n) for w in writes for at, n in w.notes]
    await conn.execute(
        _SAVE,
        [s.saga_id for s in sagas], [s.saga_type for s in sagas], [s.order_id for s in sagas],
        [s.state for s in sagas], [s.step for s in sagas], [s.stuck for s in sagas], [s.status for s in sagas],
        [s.status_reason for s in sagas], [_json(s.data) for s in sagas], [_json(s.control.to_json()) for s in sagas],
        [s.deadline_at for s in sagas], [s.attempts for s in sagas], [s.created_at for s in sagas],
        [s.updated_at for s in sagas],
        [i for i, _ in steps], [r.seq for _, r in steps], [r.step for _, r in steps], [r.kind for _, r in steps],
        [r.started_at for _, r in steps], [r.finished_at for _, r in steps], [r.attempts for _, r in steps],
        [r.outcome for _, r in steps], [r.detail for _, r in steps],
        [i for i, _, _ in notes], [at for _, at, _ in notes], [n.event_type for _, _, n in notes],
        [n.event_id for _, _, n in notes], [n.causation_id for _, _, n in notes],
        [n.disposition for _, _, n in notes], [n.detail for _, _, n in notes],
    )


def _json(value: object) -> str:
    # jsonb inside arrays travels as text (cast in SQL): the pool's jsonb codec covers single values only.
    return orjson.dumps(value).decode()


async def stuck_count(conn: asyncpg.Connection, saga_type: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM saga_instances WHERE stuck AND saga_type = $1", saga_type)
