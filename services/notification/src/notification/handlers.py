"""Use cases of notification: what a consumed batch records (customers, email intents, webhook
deliveries), and the operator's and channels' requests."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from notification import repository as repo
from notification.domain import email_for
from oms_contracts import Envelope
from oms_platform.http import ApiError
from oms_platform.ids import uuid7


@dataclass
class EventBatch:
    """What one consumed batch records, written in a few set-based statements at its end (in the
    batch's transaction, with its inbox claims): so an intent exists exactly when its event was consumed."""

    subscriptions: list[asyncpg.Record]
    email_attempts: int
    webhook_attempts: int
    orders: list[dict[str, Any]] = field(default_factory=list)
    emails: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)

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


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


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


# Which finished deliveries an operator may send again. An email only when it failed (a sent one
# would reach the customer twice); a webhook also when sent (the receiver lost it; it dedupes by
# X-OMS-Event-Id).
REDELIVERABLE = {"email": ["failed"], "webhook": ["failed", "sent", "cancelled"]}


async def redeliver(conn: asyncpg.Connection, notification_id: UUID, attempts: dict[str, int]) -> dict[str, Any]:
    async with conn.transaction():
        row = await repo.get_notification(conn, notification_id)
        if row is None:
            raise not_found("notification")
        if row["channel"] == "webhook" and row["subscription_id"] is not None:
            sub = await repo.get_subscription(conn, row["subscription_id"])
            if sub is None:
                raise ApiError(409, "conflict", "its webhook subscription was deleted")
        allowed = REDELIVERABLE[row["channel"]]
        updated = await repo.redeliver(conn, notification_id, attempts[row["channel"]], allowed)
        if updated is None:
            raise ApiError(409, "conflict", f"a {row['channel']} notification that is {row['status']} cannot be "
                                            f"redelivered (only when {' or '.join(allowed)})")
        await repo.wake_senders(conn)
    return notification_view(updated)


async def delete_subscription(conn: asyncpg.Connection, subscription_id: UUID) -> None:
    async with conn.transaction():
        if await repo.set_subscription_status(conn, subscription_id, "deleted") is None:
            raise not_found("webhook subscription")
        await repo.cancel_deliveries(conn, subscription_id, datetime.now(UTC))
