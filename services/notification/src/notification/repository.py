"""SQL of notification. Every function takes an open connection (or the pool); the caller owns the
transaction."""

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from oms_platform.sql import Where

WAKE_CHANNEL = "oms_notification_due"

LOG_COLUMNS = """notification_id, channel, order_id, event_id, event_type, template, recipient, subscription_id,
    url, status, attempts, max_attempts, last_error, next_attempt_at, created_at, updated_at, sent_at, seq"""


async def upsert_orders(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    """The customers of the batch's OrderPlaced events, in one statement (a repeat changes nothing)."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO orders (order_id, channel, external_id, customer_id, email, name, currency, total, lines,
                               placed_at)
           SELECT (d->>'order_id')::uuid, d->>'channel', d->>'external_id', d->'customer'->>'id',
                  d->'customer'->>'email', d->'customer'->>'name', d->>'currency', (d->>'total')::numeric,
                  d->'lines', (d->>'created_at')::timestamptz
           FROM jsonb_array_elements($1::jsonb) AS d
           ON CONFLICT (order_id) DO NOTHING""",
        rows,
    )


async def insert_emails(conn: asyncpg.Connection, rows: list[dict[str, Any]], max_attempts: int) -> None:
    """rows: notification_id, order_id, event_id, event_type, template, dedupe_key, context. A second
    intent with the same (dedupe_key, template) is dropped: one email whatever the redeliveries."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO notifications (notification_id, channel, order_id, event_id, event_type, template,
                                      dedupe_key, context, max_attempts)
           SELECT (d->>'notification_id')::uuid, 'email', (d->>'order_id')::uuid, (d->>'event_id')::uuid,
                  d->>'event_type', d->>'template', d->>'dedupe_key', d->'context', $2
           FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS r(d, n) ORDER BY n
           ON CONFLICT DO NOTHING""",
        rows, max_attempts,
    )


async def active_subscriptions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT subscription_id, url, event_types FROM webhook_subscriptions WHERE status = 'active'"
    )


async def insert_webhooks(conn: asyncpg.Connection, rows: list[dict[str, Any]], max_attempts: int) -> None:
    """rows: notification_id, subscription_id, url, body (the envelope), in event order (seq follows it)."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO notifications (notification_id, channel, order_id, event_id, event_type, subscription_id,
                                      url, body, occurred_at, max_attempts)
           SELECT (d->>'notification_id')::uuid, 'webhook', (d->'body'->>'order_id')::uuid,
                  (d->'body'->>'event_id')::uuid, d->'body'->>'event_type', (d->>'subscription_id')::uuid,
                  d->>'url', d->'body', (d->'body'->>'occurred_at')::timestamptz, $2
           FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS r(d, n) ORDER BY n
           ON CONFLICT DO NOTHING""",
        rows, max_attempts,
    )


async def wake_senders(conn: asyncpg.Connection) -> None:
    """Wakes every process's sender when the transaction commits."""
    await conn.execute(f"NOTIFY {WAKE_CHANNEL}")


_CLAIM_EMAILS = """
WITH due AS (
    SELECT n.notification_id FROM notifications n
    WHERE n.channel = 'email' AND n.status IN ('pending', 'sending') AND n.next_attempt_at <= now()
      AND EXISTS (SELECT 1 FROM orders o WHERE o.order_id = n.order_id)
    ORDER BY n.next_attempt_at LIMIT $1
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE notifications n
SET status = 'sending', attempts = n.attempts + 1, recipient = o.email, updated_at = now(),
    next_attempt_at = now() + make_interval(secs => $2)
FROM due JOIN orders o ON true LEFT JOIN preferences p ON p.customer_id = o.customer_id
WHERE n.notification_id = due.notification_id AND o.order_id = n.order_id
RETURNING n.notification_id, n.order_id, n.event_id, n.template, n.context, n.attempts, n.max_attempts,
          n.created_at, o.email, o.name, o.customer_id, o.external_id, o.currency, o.total, o.lines,
          p.locale, coalesce(p.non_essential_email, true) AS non_essential_email
"""

# Only the first unfinished delivery of a (subscription, order), in event time, is due: a later one
# waits for it. A new row waits $5 seconds first: an order's events come from several topics, and an
# event of another topic that happened just before may be consumed a moment later.
# At most $4 per subscription in one claim, and none for the subscriptions in $3 (this process
# already has as many of theirs in flight as it allows).
_CLAIM_WEBHOOKS = """
WITH candidates AS (
    SELECT n.notification_id,
           row_number() OVER (PARTITION BY n.subscription_id ORDER BY n.occurred_at, n.seq) AS rank
    FROM notifications n
    JOIN webhook_subscriptions s ON s.subscription_id = n.subscription_id AND s.status = 'active'
    WHERE n.channel = 'webhook' AND n.status IN ('pending', 'sending') AND n.next_attempt_at <= now()
      AND n.created_at <= now() - make_interval(secs => $5)
      AND n.subscription_id <> ALL($3::uuid[])
      AND NOT EXISTS (SELECT 1 FROM notifications e
                      WHERE e.subscription_id = n.subscription_id AND e.order_id = n.order_id
                        AND (e.occurred_at, e.seq) < (n.occurred_at, n.seq) AND e.status IN ('pending', 'sending'))
), due AS (
    SELECT n.notification_id FROM notifications n
    WHERE n.notification_id IN (SELECT notification_id FROM candidates WHERE rank <= $4)
    ORDER BY n.occurred_at, n.seq LIMIT $1
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE notifications n
SET status = 'sending', attempts = n.attempts + 1, updated_at = now(),
    next_attempt_at = now() + make_interval(secs => $2)
FROM due JOIN webhook_subscriptions s ON true
WHERE n.notification_id = due.notification_id AND s.subscription_id = n.subscription_id
RETURNING n.notification_id, n.order_id, n.event_id, n.event_type, n.subscription_id, n.body, n.attempts,
          n.max_attempts, s.url, s.secret
"""


async def claim_emails(pool: asyncpg.Pool, limit: int, lease: float) -> list[asyncpg.Record]:
    """Takes up to `limit` due emails (pending, or sending with an expired lease: their process died)
    for `lease` seconds; safe with several processes (a row is taken by one)."""
    return await pool.fetch(_CLAIM_EMAILS, limit, lease)


async def claim_webhooks(pool: asyncpg.Pool, limit: int, lease: float, busy: list[UUID],
                         per_subscription: int, settle: float) -> list[asyncpg.Record]:
    return await pool.fetch(_CLAIM_WEBHOOKS, limit, lease, busy, per_subscription, settle)


async def mark_sent(pool: asyncpg.Pool, notification_id: UUID) -> None:
    await pool.execute(
        """UPDATE notifications SET status = 'sent', sent_at = now(), updated_at = now(), last_error = NULL
           WHERE notification_id = $1 AND status = 'sending'""",
        notification_id,
    )


async def mark_failed_attempt(pool: asyncpg.Pool, notification_id: UUID, attempt: int, error: str,
                              retry_in: float | None) -> str | None:
    """Records failed attempt number `attempt`: pending again after `retry_in` seconds, or failed (None,
    or no attempt left). Returns the new status; None when the row moved on (its lease ended and
    another process took it: that one records its own attempt)."""
    return await pool.fetchval(
        """UPDATE notifications
           SET status = CASE WHEN $3::float8 IS NULL OR attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
               next_attempt_at = now() + make_interval(secs => coalesce($3::float8, 0)),
               last_error = $2, updated_at = now()
           WHERE notification_id = $1 AND status = 'sending' AND attempts = $4
           RETURNING status""",
        notification_id, error[:2000], retry_in, attempt,
    )


async def fail_emails_without_recipient(pool: asyncpg.Pool, waited_seconds: float) -> int:
    """Fails the pending emails whose order's OrderPlaced (the recipient) has not arrived within
    `waited_seconds` of the email being decided. Returns how many."""
    rows = await pool.fetch(
        """UPDATE notifications n SET status = 'failed', updated_at = now(),
               last_error = 'no recipient: the order''s OrderPlaced did not arrive within '
                            || $1::float8 || ' s'
           WHERE n.channel = 'email' AND n.status = 'pending'
             AND n.created_at < now() - make_interval(secs => $1::float8)
             AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = n.order_id)
           RETURNING n.notification_id""",
        waited_seconds,
    )
    return len(rows)


async def mark_skipped(pool: asyncpg.Pool, notification_id: UUID, attempt: int, why: str) -> None:
    await pool.execute(
        """UPDATE notifications SET status = 'skipped', attempts = attempts - 1, last_error = $2, updated_at = now()
           WHERE notification_id = $1 AND status = 'sending' AND attempts = $3""",
        notification_id, why, attempt,
    )


async def redeliver(conn: asyncpg.Connection, notification_id: UUID, max_attempts: int,
                    statuses: list[str]) -> asyncpg.Record | None:
    """Makes a finished delivery due again (with `max_attempts` more tries), if its status is one of
    `statuses`. None when refused (the caller reads the row to tell why)."""
    return await conn.fetchrow(
        f"""UPDATE notifications
            SET status = 'pending', next_attempt_at = now(), max_attempts = attempts + $2, updated_at = now()
            WHERE notification_id = $1 AND status = ANY($3::text[]) RETURNING {LOG_COLUMNS}""",
        notification_id, max_attempts, statuses,
    )


async def get_notification(conn: asyncpg.Connection, notification_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {LOG_COLUMNS} FROM notifications WHERE notification_id = $1", notification_id)


async def list_notifications(conn: asyncpg.Connection, *, order_id: UUID | None, status: str | None,
                             channel: str | None, after: int | None, limit: int) -> list[asyncpg.Record]:
    """Oldest first (seq): the order things happened to an order."""
    w = Where()
    w.add("order_id = {}", order_id)
    w.add("status = {}", status)
    w.add("channel = {}", channel)
    w.add("seq > {}", after)
    return await conn.fetch(f"SELECT {LOG_COLUMNS} FROM notifications{w} ORDER BY seq LIMIT {w.param(limit)}",
                            *w.args)


# --- preferences --------------------------------------------------------------------------------------

async def put_preferences(conn: asyncpg.Connection, customer_id: str, non_essential_email: bool,
                          locale: str | None) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO preferences (customer_id, non_essential_email, locale) VALUES ($1, $2, $3)
           ON CONFLICT (customer_id) DO UPDATE SET non_essential_email = excluded.non_essential_email,
               locale = excluded.locale, updated_at = now()
           RETURNING customer_id, non_essential_email, locale, updated_at""",
        customer_id, non_essential_email, locale,
    )


async def get_preferences(conn: asyncpg.Connection, customer_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT customer_id, non_essential_email, locale, updated_at FROM preferences WHERE customer_id = $1",
        customer_id,
    )


async def customer_channels(conn: asyncpg.Connection, customer_id: str) -> set[str]:
    rows = await conn.fetch("SELECT DISTINCT channel FROM orders WHERE customer_id = $1", customer_id)
    return {r["channel"] for r in rows}


# --- webhook subscriptions ----------------------------------------------------------------------------

SUB_COLUMNS = "subscription_id, url, event_types, description, status, created_at, updated_at"


async def create_subscription(conn: asyncpg.Connection, subscription_id: UUID, url: str, event_types: list[str],
                              secret: str, description: str | None) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO webhook_subscriptions (subscription_id, url, event_types, secret, description)
            VALUES ($1, $2, $3, $4, $5) RETURNING {SUB_COLUMNS}""",
        subscription_id, url, event_types, secret, description,
    )


async def list_subscriptions(conn: asyncpg.Connection, after: UUID | None, limit: int) -> list[asyncpg.Record]:
    w = Where()
    w.add_sql("status <> 'deleted'")
    w.add("subscription_id > {}", after)
    return await conn.fetch(
        f"SELECT {SUB_COLUMNS} FROM webhook_subscriptions{w} ORDER BY subscription_id LIMIT {w.param(limit)}", *w.args
    )


async def get_subscription(conn: asyncpg.Connection, subscription_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE subscription_id = $1 AND status <> 'deleted'",
        subscription_id,
    )


async def set_subscription_status(conn: asyncpg.Connection, subscription_id: UUID,
                                  status: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""UPDATE webhook_subscriptions SET status = $2, updated_at = now()
            WHERE subscription_id = $1 AND status <> 'deleted' RETURNING {SUB_COLUMNS}""",
        subscription_id, status,
    )


async def cancel_deliveries(conn: asyncpg.Connection, subscription_id: UUID, at: datetime) -> int:
    """The deliveries of a deleted subscription that were not sent yet will not be."""
    result = await conn.execute(
        """UPDATE notifications SET status = 'cancelled', last_error = 'subscription deleted', updated_at = $2
           WHERE subscription_id = $1 AND status IN ('pending', 'sending')""",
        subscription_id, at,
    )
    return int(result.split()[-1])
