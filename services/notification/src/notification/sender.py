"""The sender: sends what the consumer recorded, after commit. Two lanes (email, webhook), each with its
own concurrency, so a slow or dead SMTP server and slow receivers never hold each other up.

Each lane wakes on NOTIFY (a commit that added work), when one of its sends finishes, and every
SENDER_POLL_SECONDS (retries coming due). It claims due rows with FOR UPDATE SKIP LOCKED and a lease
(several processes share the work; a row whose process died is taken again when its lease ends),
sends them, and records the outcome: sent, or a failed attempt retried with exponential backoff and
jitter, or failed for good after its last attempt.

The one window left: the SMTP server (or the receiver) accepted, and the process died before the
row was marked sent. After the lease the row is sent again, with the same Message-ID (email) or the
same X-OMS-Event-Id (webhook), so the resend is recognisable. It is kept small: the row is marked
right after the accept, on a connection of its own, retried while the database is briefly away."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
from prometheus_client import Counter

from notification import repository as repo
from notification.domain import NON_ESSENTIAL, mask_email, retry_delay
from notification.emails import PermanentFailure, SmtpClient, Templates, build_message, template_context
from notification.settings import Settings
from notification.webhooks import WebhookClient
from oms_platform import db, faults, telemetry

log = logging.getLogger(__name__)

SENT = Counter("oms_notifications_total", "Notification send attempts by outcome", ["channel", "outcome"])


@dataclass
class Lane:
    channel: str
    capacity: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    inflight: dict[UUID, asyncio.Task] = field(default_factory=dict)
    per_subscription: dict[UUID, int] = field(default_factory=dict)


class Sender:
    def __init__(self, settings: Settings, pool: Callable[[], asyncpg.Pool], templates: Templates,
                 smtp: SmtpClient, webhooks: WebhookClient):
        self.s = settings
        self._pool = pool
        self.templates = templates
        self.smtp = smtp
        self.webhooks = webhooks
        self.lanes = {"email": Lane("email", settings.email_concurrency),
                      "webhook": Lane("webhook", settings.webhook_concurrency)}
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._tracer = telemetry.tracer("oms.notification")
        self._next_orphan_check = 0.0

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool()

    def wake(self, *_: object) -> None:
        for lane in self.lanes.values():
            lane.wake.set()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen(), name="notification-listen")]
        self._tasks += [asyncio.create_task(self._run(lane), name=f"notification-{lane.channel}")
                        for lane in self.lanes.values()]

    async def stop(self) -> None:
        """Stops claiming; sends in flight get a few seconds to finish and be recorded (what is cut off
        is sent again after its lease by the next process)."""
        self._stopping = True
        self.wake()
        inflight = [t for lane in self.lanes.values() for t in lane.inflight.values()]
        if inflight:
            await asyncio.wait(inflight, timeout=5)
        for task in self._tasks + inflight:
            task.cancel()
        await asyncio.gather(*self._tasks, *inflight, return_exceptions=True)

    async def _listen(self) -> None:
        """LISTEN on a connection of its own, reconnecting after a failure (the poll covers the gap)."""
        while not self._stopping:
            try:
                conn = await asyncpg.connect(self.s.database_url)
                await db.init_connection(conn)
                try:
                    await conn.add_listener(repo.WAKE_CHANNEL, self.wake)
                    while not conn.is_closed():
                        await asyncio.sleep(5)
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database is away: retry, polling meanwhile
                log.warning("notification listener lost its connection (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(2)

    async def _run(self, lane: Lane) -> None:
        while not self._stopping:
            lane.wake.clear()
            free = lane.capacity - len(lane.inflight)
            if free > 0:
                try:
                    rows = await self._claim(lane, free)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("claiming %s notifications failed", lane.channel)
                    rows = []
                    await asyncio.sleep(1)
                for row in rows:
                    self._spawn(lane, row)
                if rows and len(rows) == free:
                    continue
            try:
                await asyncio.wait_for(lane.wake.wait(), self.s.sender_poll_seconds)
            except TimeoutError:
                pass

    async def _claim(self, lane: Lane, limit: int) -> list[asyncpg.Record]:
        lease = self.s.sender_lease_seconds
        if lane.channel == "email":
            await self._fail_orphans()
            return await repo.claim_emails(self.pool, limit, lease)
        cap = self.s.webhook_per_subscription
        busy = [sub for sub, n in lane.per_subscription.items() if n >= cap]
        return await repo.claim_webhooks(self.pool, limit, lease, busy, cap, self.s.webhook_order_settle_seconds)

    async def _fail_orphans(self) -> None:
        """Now and then (at most every minute): emails still waiting for their order's recipient after
        EMAIL_RECIPIENT_WAIT_SECONDS are failed rather than left pending for ever."""
        now, wait = asyncio.get_running_loop().time(), self.s.email_recipient_wait_seconds
        if now < self._next_orphan_check:
            return
        self._next_orphan_check = now + min(60.0, wait / 4)
        if n := await repo.fail_emails_without_recipient(self.pool, wait):
            SENT.labels("email", "failed").inc(n)
            log.warning("%d email(s) failed: their order's OrderPlaced did not arrive within %.0f s", n, wait)

    def _spawn(self, lane: Lane, row: asyncpg.Record) -> None:
        nid = row["notification_id"]
        sub = row["subscription_id"] if lane.channel == "webhook" else None
        if sub is not None:
            lane.per_subscription[sub] = lane.per_subscription.get(sub, 0) + 1
        work = self._email(row) if lane.channel == "email" else self._webhook(row)
        with telemetry.order_scope(row["order_id"]):  # the task's spans and log lines name the order
            task = asyncio.create_task(work, name=f"notification-{nid}")
        lane.inflight[nid] = task

        def done(_: asyncio.Task) -> None:
            lane.inflight.pop(nid, None)
            if sub is not None:
                left = lane.per_subscription.get(sub, 1) - 1
                if left:
                    lane.per_subscription[sub] = left
                else:
                    lane.per_subscription.pop(sub, None)
            lane.wake.set()

        task.add_done_callback(done)

    # --- email ------------------------------------------------------------------------------------------

    async def _email(self, row: asyncpg.Record) -> None:
        nid, template = row["notification_id"], row["template"]
        if template in NON_ESSENTIAL and not row["non_essential_email"]:
            await self._record(repo.mark_skipped, nid, row["attempts"], "customer opted out of non-essential email")
            SENT.labels("email", "skipped").inc()
            log.info("email %s %s skipped: opted out", template, nid)
            return
        with self._tracer.start_as_current_span(
            f"email {template}", attributes={"oms.order_id": str(row["order_id"]),
                                             "oms.notification_id": str(nid), "oms.attempt": row["attempts"]},
        ):
            try:
                context = template_context(row, public_url=self.s.tracking_public_url,
                                           link_secret=self.s.tracking_link_secret)
                rendered = self.templates.render(template, row["locale"], context)
                msg = build_message(rendered, notification_id=nid, order_id=row["order_id"],
                                    created_at=row["created_at"], sender=self.s.email_from, recipient=row["email"],
                                    recipient_name=row["name"], domain=self.s.email_message_id_domain)
                faults.crash_point("notification.email_before_send")
                await self.smtp.send(msg)
            except PermanentFailure as exc:
                await self._failed(row, "email", str(exc), permanent=True)
                return
            except Exception as exc:  # noqa: BLE001 - SMTP down, refusing, timing out: retried
                await self._failed(row, "email", f"{type(exc).__name__}: {exc}")
                return
            faults.crash_point("notification.email_after_send")
            await self._record(repo.mark_sent, nid)
        SENT.labels("email", "sent").inc()
        log.info("email %s %s sent to %s (attempt %d)", template, nid, mask_email(row["email"]), row["attempts"])

    # --- webhook ----------------------------------------------------------------------------------------

    async def _webhook(self, row: asyncpg.Record) -> None:
        nid = row["notification_id"]
        with self._tracer.start_as_current_span(
            f"webhook {row['event_type']}", attributes={"oms.order_id": str(row["order_id"]),
                                                         "oms.notification_id": str(nid),
                                                         "oms.subscription_id": str(row["subscription_id"]),
                                                         "oms.attempt": row["attempts"]},
        ):
            error = await self.webhooks.deliver(row["url"], row["secret"], row["body"], nid)
            if error is not None:
                await self._failed(row, "webhook", error)
                return
            faults.crash_point("notification.webhook_after_send")
            await self._record(repo.mark_sent, nid)
        SENT.labels("webhook", "sent").inc()

    # --- outcomes ---------------------------------------------------------------------------------------

    async def _failed(self, row: asyncpg.Record, channel: str, error: str, *, permanent: bool = False) -> None:
        nid = row["notification_id"]
        delay = None if permanent else retry_delay(row["attempts"], base=self.s.retry_base_seconds,
                                                   cap=self.s.retry_max_seconds)
        status = await self._record(repo.mark_failed_attempt, nid, row["attempts"], error, delay)
        SENT.labels(channel, "failed" if status == "failed" else "retry").inc()
        outcome = {"failed": "giving up", "pending": f"retrying in {delay or 0:.1f}s"}.get(status or "", "taken over")
        log.warning("%s %s attempt %d failed (%s); %s", channel, nid, row["attempts"], error, outcome)

    async def _record(self, write: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Writes an outcome, retrying while the database is briefly away (until the lease would end:
        after that another process may already have taken the row)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.s.sender_lease_seconds / 2
        pause = 0.1
        while True:
            try:
                return await write(self.pool, *args)
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError):
                if loop.time() + pause > deadline:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2)
