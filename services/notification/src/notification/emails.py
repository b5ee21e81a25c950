"""Customer emails: templates as files rendered with jinja2 (per locale, falling back to the default),
a real message (Message-ID, Date, multipart/alternative with a plain-text and an HTML part), and SMTP
with aiosmtplib."""

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from uuid import UUID

import aiosmtplib
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape

from oms_platform.links import tracking_url

BUILT_IN = Path(__file__).parent / "templates"


class PermanentFailure(Exception):
    """A send that will not succeed by retrying (a template error, an address the server refuses)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    locale: str


class Templates:
    """<locale>/<name>.subject.txt, <name>.txt and <name>.html; a locale without a template falls back
    to its language (pt-BR -> pt), then to the default locale. HTML is autoescaped; a missing value is
    an error, not an empty string."""

    def __init__(self, default_locale: str, extra_dir: Path | None = None):
        folders = [FileSystemLoader(extra_dir)] if extra_dir else []
        self.default_locale = default_locale
        self.env = Environment(
            loader=ChoiceLoader([*folders, FileSystemLoader(BUILT_IN)]),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        )

    def _locales(self, locale: str | None) -> list[str]:
        out = [locale, locale.split("-")[0]] if locale else []
        return list(dict.fromkeys([*out, self.default_locale]))

    def render(self, name: str, locale: str | None, context: dict[str, Any]) -> Rendered:
        for loc in self._locales(locale):
            try:
                subject = self.env.get_template(f"{loc}/{name}.subject.txt").render(context)
            except TemplateNotFound:
                continue
            text = self.env.get_template(f"{loc}/{name}.txt").render(context)
            html = self.env.get_template(f"{loc}/{name}.html").render(context)
            return Rendered(" ".join(subject.split()), text, html, loc)
        raise PermanentFailure(f"no template {name} for locale {locale or self.default_locale}")


def template_context(row: Any, *, public_url: str, link_secret: str) -> dict[str, Any]:
    """What a template sees: the customer, the order (notification's copy), the event's own context
    and the customer's tracking page link."""
    return {
        "customer_name": row["name"],
        "order": {"order_id": str(row["order_id"]), "external_id": row["external_id"], "currency": row["currency"],
                  "total": f"{Decimal(row['total']):.2f}", "lines": row["lines"]},
        "tracking_url": tracking_url(public_url, link_secret, row["order_id"]),
        **(row["context"] or {}),
    }


def message_id(notification_id: UUID, domain: str) -> str:
    """Stable per notification: a resend after a crash carries the same Message-ID, so it is recognisable."""
    return f"<{notification_id}@{domain}>"


def build_message(rendered: Rendered, *, notification_id: UUID, order_id: UUID, created_at: datetime,
                  sender: str, recipient: str, recipient_name: str, domain: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = sender
    msg["To"] = formataddr((recipient_name, recipient))
    msg["Date"] = format_datetime(created_at)  # when it was decided: the same on a resend
    msg["Message-ID"] = message_id(notification_id, domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-OMS-Order-Id"] = str(order_id)
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    msg["Content-Language"] = rendered.locale  # after: making it multipart moves Content-* headers down
    return msg


class SmtpClient:
    """Sends over connections kept open between messages (one per concurrent send, up to the sender's
    EMAIL_CONCURRENCY): a message is recorded sent right after the server's 250 to its DATA, with no
    QUIT in between, which keeps the window between "accepted" and "recorded" to one local UPDATE."""

    IDLE_SECONDS = 20.0  # an idle connection older than this is closed, not reused (servers drop them)

    def __init__(self, host: str, port: int, *, starttls: bool, username: str | None, password: str | None,
                 timeout: float):
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self.password, self.timeout = username, password, timeout
        self._idle: list[tuple[float, aiosmtplib.SMTP]] = []

    async def send(self, msg: EmailMessage) -> None:
        """Raises PermanentFailure when the server refuses the recipient for good (5xx); any other
        error is worth a retry."""
        client, reused = await self._take()
        try:
            try:
                await client.send_message(msg)
            except aiosmtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # The server dropped the idle connection: once more on a new one.
                self._close(client)
                client, _ = await self._connect(), False
                await client.send_message(msg)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            self._close(client)
            if all(r.code >= 500 for r in exc.recipients):
                raise PermanentFailure(f"recipient refused: {exc.recipients[0].code} {exc.recipients[0].message}") \
                    from exc
            raise
        except BaseException:
            self._close(client)
            raise
        self._idle.append((time.monotonic(), client))

    async def _take(self) -> tuple[aiosmtplib.SMTP, bool]:
        now = time.monotonic()
        while self._idle:
            at, client = self._idle.pop()
            if now - at < self.IDLE_SECONDS and client.is_connected:
                return client, True
            self._close(client)
        return await self._connect(), False

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, start_tls=self.starttls, use_tls=False,
                                 username=self.username, password=self.password, timeout=self.timeout)
        await client.connect()
        return client

    @staticmethod
    def _close(client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            client.close()

    async def close(self) -> None:
        for _, client in self._idle:
            try:
                await asyncio.wait_for(client.quit(), 2)
            except Exception:  # noqa: BLE001 - closing anyway
                self._close(client)
        self._idle = []
