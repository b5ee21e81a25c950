"""Builds the notification service: settings, templates, SMTP and webhook clients, the sender loop,
the consumer, the API."""

from pathlib import Path

import asyncpg
from fastapi import FastAPI

from notification import consumers
from notification.api import API_DESCRIPTION, build_router
from notification.emails import SmtpClient, Templates
from notification.handlers import Notifications
from notification.sender import Sender
from notification.settings import Settings
from notification.webhooks import WebhookClient
from oms_platform.channel_keys import ChannelKeys
from oms_platform.runtime import ServiceRuntime, create_app


class NotificationRuntime(ServiceRuntime):
    """The platform runtime plus the sender, which starts once the database is migrated and stops
    before the pool closes."""

    sender: Sender

    async def start(self) -> None:
        await super().start()
        await self.sender.start()

    async def stop(self) -> None:
        await self.sender.stop()
        await self.sender.webhooks.close()
        await self.sender.smtp.close()
        await super().stop()


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    templates = Templates(settings.email_default_locale, settings.email_templates_dir)
    templates.render("order_confirmed", None, _SAMPLE)  # a broken template stops the service at start
    keys_migrations = ChannelKeys.migrations
    runtime = NotificationRuntime(settings, migrations=Path(__file__).parent / "migrations",
                                  lib_migrations=[keys_migrations])
    keys = ChannelKeys(runtime, settings.oms_admin_token)
    runtime.consumers = [consumers.event_consumer(settings.email_max_attempts, settings.webhook_max_attempts),
                         keys.consumer]
    smtp = SmtpClient(settings.smtp_host, settings.smtp_port, starttls=settings.smtp_starttls,
                      username=settings.smtp_username, password=settings.smtp_password,
                      timeout=settings.smtp_timeout_seconds)

    def pool() -> asyncpg.Pool:  # the runtime's, once it started
        assert runtime.pool is not None
        return runtime.pool

    runtime.sender = Sender(settings, pool, templates, smtp, WebhookClient(settings.webhook_timeout_seconds))
    service = Notifications({"email": settings.email_max_attempts, "webhook": settings.webhook_max_attempts})
    return create_app(runtime, [build_router(keys, service)], title="OMS notification", description=API_DESCRIPTION)


_SAMPLE = {"customer_name": "Ana", "tracking_url": "http://example/track",
           "order": {"order_id": "x", "external_id": "X-1", "currency": "EUR", "total": "1.00", "lines": []}}
