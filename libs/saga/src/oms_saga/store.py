"""SQL of the engine's tables (migrations/0001_saga.sql). Every function takes an open connection and
runs in the caller's transaction. Sagas are read with one statement (locking their rows) and written
with one (instances, history rows and notes together), however many a consumed batch touches."""

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import asyncpg

from oms_platform.db import json_text
from oms_platform.inbox import StatementPart
from oms_saga.state import Control, Note, SagaState, StepRecord, Transition

COLUMNS = """saga_id, saga_type, order_id, state, current_step, stuck, status, status_reason, data, control,
    deadline_at, attempts, created_at, updated_at, version"""

_LOAD = f"SELECT {COLUMNS} FROM saga_instances WHERE saga_type = $1 AND order_id = $2 FOR UPDATE"

# Lock order of a saga's consumer (with oms_platform.consumer's, on every one of its paths):
#   1. the batch's orders: an advisory lock per (saga type, order), sorted (_LOCK_ORDERS), also for the
#      orders that have no saga yet, so two processes cannot both create one order's saga;
#   2. their saga rows, FOR UPDATE in order_id order (_LOAD_MANY), read after 1 (a saga another
#      process created meanwhile is seen, and the batch goes on with it);
#   3. the inbox ids (claimed sorted, first or with the batch's last statement);
#   4. what the batch writes (sagas, history, outbox).
# The deadline ticker takes only rows, skipping locked ones, so it waits on nobody.
_LOCK_ORDERS = """SELECT count(pg_advisory_xact_lock(hashtext($1), h)::text) FROM
    (SELECT DISTINCT hashtext(o::text) AS h FROM unnest($2::uuid[]) AS o ORDER BY h) AS ordered"""

# Locks in order_id order, so two transactions locking overlapping sets cannot deadlock.
_LOAD_MANY = f"""SELECT {COLUMNS} FROM saga_instances
    WHERE saga_type = $1 AND order_id = ANY($2::uuid[]) ORDER BY order_id FOR UPDATE"""

# The same without locks, for a consumer that writes optimistically (SagaBatch.read, write_sql).
_READ_MANY = f"""SELECT {COLUMNS} FROM saga_instances WHERE saga_type = $1 AND order_id = ANY($2::uuid[])"""

# Sagas whose deadline passed; rows another ticker (or a consumer) holds are skipped, not waited for.
_DUE = f"""SELECT {COLUMNS} FROM saga_instances
    WHERE deadline_at <= $2 AND saga_type = $1
    ORDER BY deadline_at LIMIT $3 FOR UPDATE SKIP LOCKED"""

# Writes many sagas at once: the instances that changed, their history rows, their notes. One
# statement per consumed batch, whatever the number of sagas and events in it. Each part travels as one
# JSON array of rows (encoded by orjson in one call; asyncpg's encoding of a parameter array per column
# cost more than the rest of the batch's decisions).
# A saga created by the batch whose order has one already (another process created it; the advisory
# lock of lock_orders makes that the exception) is not written, nor its history: its id comes back
# (`saga_lost`), and the caller applies its events again to the existing saga.
# Checked (a batch that read its sagas without locks: SagaBatch.write_sql), every row written must still
# be at the version it was read at, and the sagas read but not written (4th parameter: ids and versions)
# are locked and checked the same way: a count of them short of the 5th parameter means another writer
# came first, and the statement is undone (_conflict, oms_platform.inbox.claim_optimistic). Unchecked
# (the sagas are locked: load_many, load, due), those two parameters are empty and 0.
def _save_ctes(p: int, *, check: bool) -> str:
    at_version = "WHERE saga_instances.version = EXCLUDED.version" if check else ""
    # Checked, the statement takes the batch's order locks (lock_orders's, in its order) before it
    # writes anything: every write below joins saga_locks, and so do the caller's (StatementPart.gate).
    locks = f"""saga_locks AS (
    SELECT count(pg_advisory_xact_lock(hashtext(${p + 5}::text), h)::text) AS n FROM
    (SELECT DISTINCT hashtext(o::text) AS h FROM unnest(${p + 6}::uuid[]) AS o ORDER BY h) AS ordered
), """ if check else ""
    gate = ", saga_locks" if check else ""
    return f"""{locks}saga_u AS (
    SELECT * FROM jsonb_to_recordset(${p}::text::jsonb) AS u(saga_id uuid, saga_type text, order_id uuid, state text,
         current_step text, stuck bool, status text, status_reason text, data jsonb, control jsonb,
         deadline_at timestamptz, attempts int, created_at timestamptz, updated_at timestamptz, created bool,
         version bigint)
), saga_created AS (
    INSERT INTO saga_instances (saga_id, saga_type, order_id, state, current_step, stuck, status, status_reason,
                                data, control, deadline_at, attempts, created_at, updated_at)
    SELECT u.saga_id, u.saga_type, u.order_id, u.state, u.current_step, u.stuck, u.status, u.status_reason,
           u.data, u.control, u.deadline_at, u.attempts, u.created_at, u.updated_at
    FROM saga_u u{gate} WHERE u.created ORDER BY u.saga_type, u.order_id
    ON CONFLICT DO NOTHING
    RETURNING saga_id
), saga_lost AS (
    SELECT u.saga_id FROM saga_u u WHERE u.created AND u.saga_id NOT IN (SELECT saga_id FROM saga_created)
), saga_updated AS (
    INSERT INTO saga_instances (saga_id, saga_type, order_id, state, current_step, stuck, status, status_reason,
                                data, control, deadline_at, attempts, created_at, updated_at, version)
    SELECT u.saga_id, u.saga_type, u.order_id, u.state, u.current_step, u.stuck, u.status, u.status_reason,
           u.data, u.control, u.deadline_at, u.attempts, u.created_at, u.updated_at, u.version
    FROM saga_u u{gate} WHERE NOT u.created
    ON CONFLICT (saga_id) DO UPDATE SET
        state = EXCLUDED.state, current_step = EXCLUDED.current_step, stuck = EXCLUDED.stuck,
        status = EXCLUDED.status, status_reason = EXCLUDED.status_reason, data = EXCLUDED.data,
        control = EXCLUDED.control, deadline_at = EXCLUDED.deadline_at, attempts = EXCLUDED.attempts,
        updated_at = EXCLUDED.updated_at, deadline_failures = 0, version = saga_instances.version + 1
        {at_version}
    RETURNING saga_id
), saga_checked AS (
    SELECT s.saga_id FROM saga_instances s
    JOIN jsonb_to_recordset(${p + 3}::text::jsonb) AS c(saga_id uuid, version bigint)
      ON s.saga_id = c.saga_id AND s.version = c.version{gate}
    ORDER BY s.saga_id FOR UPDATE OF s
), saga_steps AS (
    INSERT INTO saga_steps (saga_id, seq, step, kind, started_at, finished_at, attempts, outcome, detail)
    SELECT u.saga_id, u.seq, u.step, u.kind, u.started_at, u.finished_at, u.attempts, u.outcome, u.detail
    FROM jsonb_to_recordset(${p + 1}::text::jsonb) AS u(saga_id uuid, seq int, step text, kind text,
         started_at timestamptz, finished_at timestamptz, attempts int, outcome text, detail text){gate}
    WHERE u.saga_id NOT IN (SELECT saga_id FROM saga_lost)
    ON CONFLICT (saga_id, seq) DO UPDATE SET
        finished_at = EXCLUDED.finished_at, attempts = EXCLUDED.attempts, outcome = EXCLUDED.outcome,
        detail = coalesce(EXCLUDED.detail, saga_steps.detail)
), saga_notes AS (
    INSERT INTO saga_log (saga_id, at, event_type, event_id, causation_id, disposition, detail)
    SELECT u.saga_id, u.at, u.event_type, u.event_id, u.causation_id, u.disposition, u.detail
    FROM jsonb_to_recordset(${p + 2}::text::jsonb) AS u(saga_id uuid, at timestamptz, event_type text, event_id uuid,
         causation_id uuid, disposition text, detail text){gate}
    WHERE u.saga_id NOT IN (SELECT saga_id FROM saga_lost)
)"""


# True when a saga was created meanwhile or one read was written meanwhile (params as _save_ctes).
def _conflict(p: int) -> str:
    return (f"(EXISTS (SELECT 1 FROM saga_lost) OR (SELECT count(*) FROM saga_updated) "
            f"+ (SELECT count(*) FROM saga_checked) <> ${p + 4}::int)")


_SAVE = f"""WITH {_save_ctes(1, check=False)}
SELECT array(SELECT saga_id FROM saga_lost)"""


# Sagas whose deadline decision raised: due again after a backoff doubling per failure in a row, and
# flagged stuck (deadline off) at the max_failures-th; a note each. One statement for all of a tick's.
# Like every write of a saga row it raises the version (an optimistic batch that read it is undone).
_DEADLINE_FAILED = """
WITH failed AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS f(saga_id, error)),
updated AS (
    UPDATE saga_instances s SET deadline_failures = s.deadline_failures + 1, version = s.version + 1,
        stuck = s.stuck OR s.deadline_failures + 1 >= $4::int,
        deadline_at = CASE WHEN s.deadline_failures + 1 >= $4 THEN NULL
                           ELSE $3::timestamptz + make_interval(secs => $5::float8 * 2 ^ s.deadline_failures) END
    FROM failed f WHERE s.saga_id = f.saga_id
    RETURNING s.saga_id, s.stuck
)
INSERT INTO saga_log (saga_id, at, event_type, disposition, detail)
SELECT u.saga_id, $3::timestamptz, 'deadline',
       CASE WHEN u.stuck THEN 'deadline_failed_stuck' ELSE 'deadline_failed' END, f.error
FROM updated u JOIN failed f USING (saga_id)
"""


class SagaExists(Exception):
    """A saga this transaction created has been created by another meanwhile (save_many's `lost`)."""


@dataclass
class Write:
    """What the transitions of one saga changed, merged: its last state (written when any of them
    changed it), each history row as last decided, and every note with its time."""

    state: SagaState
    changed: bool = False
    created: bool = False  # a saga new in this transaction (inserted unless its order has one already)
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
        version=row["version"],
    )


async def load(conn: asyncpg.Connection, saga_type: str, order_id: UUID) -> SagaState | None:
    """The saga of an order, its row locked until the caller's transaction ends."""
    row = await conn.fetchrow(_LOAD, saga_type, order_id)
    return _state(row) if row else None


async def lock_orders(conn: asyncpg.Connection, saga_type: str, order_ids: list[UUID]) -> None:
    """Holds these orders' sagas, existing or to be created, until the transaction ends (lock order above)."""
    if order_ids:
        await conn.execute(_LOCK_ORDERS, saga_type, order_ids)


async def load_many(conn: asyncpg.Connection, saga_type: str, order_ids: list[UUID]) -> dict[UUID, SagaState]:
    """The sagas of several orders (those that exist), all locked, in one statement."""
    return {r["order_id"]: _state(r) for r in await conn.fetch(_LOAD_MANY, saga_type, order_ids)}


async def due(conn: asyncpg.Connection, saga_type: str, now: datetime, limit: int) -> list[SagaState]:
    return [_state(r) for r in await conn.fetch(_DUE, saga_type, now, limit)]


async def save(conn: asyncpg.Connection, tr: Transition, now: datetime) -> None:
    """Writes what one transition changed; nothing when it changed nothing."""
    if tr.state is not None:
        await save_many(conn, [Write.of([tr], now)])


def save_params(writes: Iterable[Write], checked: dict[UUID, int]) -> tuple[str, str, str, str, int]:
    """The parameters of _save_ctes: sagas, history rows, notes, the (saga id, version) of sagas read and
    not written (`checked`, minus those written here), and how many rows the write and the check must
    find at their versions."""
    writes = [w for w in writes if not w.empty]
    sagas = [{
        "saga_id": s.saga_id, "saga_type": s.saga_type, "order_id": s.order_id, "state": s.state,
        "current_step": s.step, "stuck": s.stuck, "status": s.status, "status_reason": s.status_reason,
        "data": s.data, "control": s.control.to_json(), "deadline_at": s.deadline_at, "attempts": s.attempts,
        "created_at": s.created_at, "updated_at": s.updated_at, "created": created, "version": s.version,
    } for s, created in ((w.state, w.created) for w in writes if w.changed)]
    steps = [{
        "saga_id": w.state.saga_id, "seq": r.seq, "step": r.step, "kind": r.kind, "started_at": r.started_at,
        "finished_at": r.finished_at, "attempts": r.attempts, "outcome": r.outcome, "detail": r.detail,
    } for w in writes for r in w.steps.values()]
    notes = [{
        "saga_id": w.state.saga_id, "at": at, "event_type": n.event_type, "event_id": n.event_id,
        "causation_id": n.causation_id, "disposition": n.disposition, "detail": n.detail,
    } for w in writes for at, n in w.notes]
    updated = {s["saga_id"] for s in sagas if not s["created"]}
    check = [{"saga_id": k, "version": v} for k, v in checked.items() if k not in updated]
    # Datetimes go as ISO 8601 with their offset; timestamptz in jsonb_to_recordset reads them back.
    return json_text(sagas), json_text(steps), json_text(notes), json_text(check), len(updated) + len(check)


def save_sql(writes: Iterable[Write], checked: dict[UUID, int], first_param: int, *, saga_type: str,
             order_ids: list[UUID]) -> StatementPart:
    """The write of save_many as part of a caller's statement (inbox.claim_optimistic), checked, with
    lock_orders's locks of `order_ids` (sorted there) taken first: every other write joins saga_locks."""
    params = (*save_params(writes, checked), saga_type, order_ids)
    return StatementPart(_save_ctes(first_param, check=True), _conflict(first_param), params, gate="saga_locks")


async def save_many(conn: asyncpg.Connection, writes: Iterable[Write]) -> set[UUID]:
    """Writes what transitions of several sagas changed, in one statement, to sagas the caller holds
    locked (load_many, load, due). Returns the ids of created sagas that were not written because their
    order has a saga already (see _SAVE)."""
    writes = [w for w in writes if not w.empty]
    if not writes:
        return set()
    sagas, steps, notes, _, _ = save_params(writes, {})
    return set(await conn.fetchval(_SAVE, sagas, steps, notes, "[]"))


async def read_many(conn: asyncpg.Connection, saga_type: str, order_id: list[UUID]) -> dict[UUID, SagaState]:
    """The sagas of several orders, not locked (an optimistic writer checks their versions at the end)."""
    return {r["order_id"]: _state(r) for r in await conn.fetch(_READ_MANY, saga_type, order_id)}


async def deadline_failed(conn: asyncpg.Connection, failed: list[tuple[UUID, str]], now: datetime, *,
                          max_failures: int, backoff: float) -> None:
    """Records failed deadline decisions (saga id, error): retried later, then flagged stuck."""
    if failed:
        await conn.execute(_DEADLINE_FAILED, [f[0] for f in failed], [f[1][:2000] for f in failed], now,
                           max_failures, backoff)


async def stuck_count(conn: asyncpg.Connection, saga_type: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM saga_instances WHERE stuck AND saga_type = $1", saga_type)
