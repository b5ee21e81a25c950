"""Use cases of notification: what a consumed batch records (customers, email intents, webhook
deliveries), and the operator's and channels' requests."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from notification import repository as repo
from notification.domain import email_for
from oms_contracts import Envelope
from oms_platform.errors import Conflict, NotFound
from oms_platform.ids import uuid7
from oms_platform.pagination import Keyset, Page, of_type


@dataclass
class EventBatch:
    """The consumer's batch state: what one consumed batch records, written in a few set-based
    statements at its end (in the batch's transaction, with its inbox claims): so an intent exists
    exactly when its event was consumed."""

    email_attempts: int
    webhook_attempts: int
    subscriptions: list[asyncpg.Record] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    emails: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)

    async def load(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        # The subscriptions once per batch; one created now gets the events consumed after it.
        self.subscriptions = await repo.active_subscriptions(conn)

    def add(self, env: Envelope) -> None:
        if env.event_type == "OrderPlaced":
            self.orders.append(env.payload)
        intent = email_for(env.event_type, env.payload)
        if intent is not None:
            self.emails.append({"notification_id": str(uuid7()), "order_id": str(env.order_id),
                                "event_id": str(env.event_id), "event_type": env.event_type,
                                "template": intent.template, "dedupe_key": intent.dedupe_key,
                                "context": intent.context})
        body = None
        for sub in self.subscriptions:
            if env.event_type in sub["event_types"]:
                body = body or env.model_dump(mode="json")
                self.webhooks.append((env.occurred_at, {"notification_id": str(uuid7()),
                                                        "subscription_id": str(sub["subscription_id"]),
                                                        "url": sub["url"], "body": body}))

    async def flush(self, conn: asyncpg.Connection) -> None:
        """Writes what was collected and forgets it (the next message may be applied on its own)."""
        if not (self.orders or self.emails or self.webhooks):
            return
        await repo.upsert_orders(conn, self.orders)
        await repo.insert_emails(conn, self.emails, self.email_attempts)
        # Across topics a batch is not in time order; one order's deliveries go out in seq order.
        ordered = [row for _, row in sorted(self.webhooks, key=lambda w: w[0])]
        await repo.insert_webhooks(conn, ordered, self.webhook_attempts)
        await repo.wake_senders(conn)  # also for a new customer: their waiting emails can go
        self.orders, self.emails, self.webhooks = [], [], []


def subscription_view(row: asyncpg.Record) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret."""
    return {"subscription_id": row["subscription_id"], "url": row["url"], "event_types": list(row["event_types"]),
            "description": row["description"], "status": row["status"], "created_at": row["created_at"],
            "updated_at": row["updated_at"]}


def notification_view(row: asyncpg.Record) -> dict[str, Any]:
    email = row["channel"] == "email"
    return {
        "notification_id": row["notification_id"], "channel": row["channel"], "order_id": row["order_id"],
        "event_id": row["event_id"], "event_type": row["event_type"],
        "template": row["template"], "recipient": row["recipient"] if email else None,
        "subscription_id": row["subscription_id"], "url": row["url"],
        "status": row["status"], "attempts": row["attempts"], "max_attempts": row["max_attempts"],
        "last_error": row["last_error"],
        "next_attempt_at": row["next_attempt_at"] if row["status"] in ("pending", "sending") else None,
        "created_at": row["created_at"], "updated_at": row["updated_at"], "sent_at": row["sent_at"],
    }


NOTIFICATIONS = Keyset(key=lambda r: {"s": r["seq"]}, parse=lambda v: of_type(v["s"], int))
SUBSCRIPTIONS = Keyset(key=lambda r: {"i": str(r["subscription_id"])}, parse=lambda v: UUID(v["i"]))

# Which finished deliveries an operator may send again. An email only when it failed (a sent one
# would reach the customer twice); a webhook also when sent (the receiver lost it; it dedupes by
# X-OMS-Event-Id).
REDELIVERABLE = {"email": ["failed"], "webhook": ["failed", "sent", "cancelled"]}


async def _found(pool: asyncpg.Pool, read: Callable[[asyncpg.Connection, UUID], Awaitable[Any]], key: UUID,
                 what: str) -> Any:
    """The row `read` finds for `key`; NotFound naming `what` when there is none."""
    async with pool.acquire() as conn:
        row = await read(conn, key)
    if row is None:
        raise NotFound(f"{what} {key} not found")
    return row


class Notifications:
    """The operator's and channels' requests."""

    def __init__(self, attempts: dict[str, int]):
        self.attempts = attempts  # the max attempts of a fresh try, by channel

    # --- delivery log ---------------------------------------------------------------------------------

    async def list_notifications(self, pool: asyncpg.Pool, *, order_id: UUID | None, status: str | None,
                                 channel: str | None, cursor: str | None, limit: int) -> Page:
        after = NOTIFICATIONS.after(cursor)
        async with pool.acquire() as conn:
            rows = await repo.list_notifications(conn, order_id=order_id, status=status, channel=channel,
                                                 after=after, limit=limit + 1)
        return NOTIFICATIONS.page(rows, limit, notification_view)

    async def get_notification(self, pool: asyncpg.Pool, notification_id: UUID) -> dict[str, Any]:
        return notification_view(await _found(pool, repo.get_notification, notification_id, "notification"))

    async def redeliver(self, pool: asyncpg.Pool, notification_id: UUID) -> dict[str, Any]:
        async with pool.acquire() as conn, conn.transaction():
            row = await repo.get_notification(conn, notification_id)
            if row is None:
                raise NotFound(f"notification {notification_id} not found")
            if row["channel"] == "webhook" and await repo.get_subscription(conn, row["subscription_id"]) is None:
                raise Conflict("its webhook subscription was deleted")
            allowed = REDELIVERABLE[row["channel"]]
            updated = await repo.redeliver(conn, notification_id, self.attempts[row["channel"]], allowed)
            if updated is None:
                raise Conflict(f"a {row['channel']} notification that is {row['status']} cannot be redelivered "
                               f"(only when {' or '.join(allowed)})", code="not_redeliverable")
            await repo.wake_senders(conn)
        return notification_view(updated)

    # --- webhook subscriptions ------------------------------------------------------------------------

    async def create_subscription(self, pool: asyncpg.Pool, *, url: str, event_types: list[str], secret: str,
                                  description: str | None) -> dict[str, Any]:
        async with pool.acquire() as conn:
            row = await repo.create_subscription(conn, uuid7(), url, event_types, secret, description)
        return subscription_view(row)

    async def list_subscriptions(self, pool: asyncpg.Pool, *, cursor: str | None, limit: int) -> Page:
        after = SUBSCRIPTIONS.after(cursor)
        async with pool.acquire() as conn:
            rows = await repo.list_subscriptions(conn, after, limit + 1)
        return SUBSCRIPTIONS.page(rows, limit, subscription_view)

    async def get_subscription(self, pool: asyncpg.Pool, subscription_id: UUID) -> dict[str, Any]:
        return subscription_view(await _found(pool, repo.get_subscription, subscription_id, "webhook subscription"))

    async def set_subscription_status(self, pool: asyncpg.Pool, subscription_id: UUID, status: str) -> dict[str, Any]:
        """disabled: no new deliveries are recorded, those recorded wait; active: they go again."""
        async with pool.acquire() as conn:
            row = await repo.set_subscription_status(conn, subscription_id, status)
            if status == "active":
                await repo.wake_senders(conn)
        if row is None:
            raise NotFound(f"webhook subscription {subscription_id} not found")
        return subscription_view(row)

    async def delete_subscription(self, pool: asyncpg.Pool, subscription_id: UUID) -> None:
        """Its unsent deliveries are cancelled; the delivery log keeps what was sent."""
        async with pool.acquire() as conn, conn.transaction():
            if await repo.set_subscription_status(conn, subscription_id, "deleted") is None:
                raise NotFound(f"webhook subscription {subscription_id} not found")
            await repo.cancel_deliveries(conn, subscription_id, datetime.now(UTC))

    # --- preferences ----------------------------------------------------------------------------------

    async def put_preferences(self, pool: asyncpg.Pool, channel: str | None, customer_id: str,
                              non_essential_email: bool, locale: str | None) -> dict[str, Any]:
        async with pool.acquire() as conn:
            await self._check_customer(conn, channel, customer_id)
            return dict(await repo.put_preferences(conn, customer_id, non_essential_email, locale))

    async def get_preferences(self, pool: asyncpg.Pool, channel: str | None, customer_id: str) -> dict[str, Any]:
        async with pool.acquire() as conn:
            await self._check_customer(conn, channel, customer_id)
            row = await repo.get_preferences(conn, customer_id)
        # A customer who never chose gets every email, in the default language.
        return dict(row) if row else {"customer_id": customer_id, "non_essential_email": True, "locale": None,
                                      "updated_at": None}

    @staticmethod
    async def _check_customer(conn: asyncpg.Connection, channel: str | None, customer_id: str) -> None:
        """A channel key (channel) reaches the customers of its own channel's orders, or one not seen
        yet; another channel's customer is not found, so customer ids do not leak. None: an operator."""
        if channel is None:
            return
        channels = await repo.customer_channels(conn, customer_id)
        if channels and channel not in channels:
            raise NotFound(f"customer {customer_id} not found")
