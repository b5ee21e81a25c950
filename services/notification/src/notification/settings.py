from pathlib import Path

from pydantic import Field

from oms_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "notification"
    http_port: int = 8006
    database_url: str = "postgresql://notification@127.0.0.1:55432/notification"

    # SMTP (plain SMTP unless STARTTLS or credentials are configured).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    email_from: str = "OMS <no-reply@oms.local>"
    # The right-hand side of every Message-ID (<notification id@domain>).
    email_message_id_domain: str = "oms.local"
    email_default_locale: str = "en"
    # A folder of templates (<locale>/<template>.subject.txt, .txt, .html) used before the built-in ones.
    email_templates_dir: Path | None = None
    # An SMTP server that is down is retried for a long time (backoff capped at RETRY_MAX_SECONDS).
    email_max_attempts: int = Field(default=100, ge=1)
    email_concurrency: int = Field(default=4, ge=1, le=100)
    # An email whose order's OrderPlaced (the recipient) has not arrived after this long is failed,
    # not left pending for ever (the delivery log names why; an operator can redeliver it).
    email_recipient_wait_seconds: float = Field(default=86_400.0, gt=0)

    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_max_attempts: int = Field(default=10, ge=1)
    webhook_concurrency: int = Field(default=32, ge=1, le=1000)
    # Deliveries in flight to one subscription from one process: a slow receiver holds at most these.
    webhook_per_subscription: int = Field(default=4, ge=1, le=100)
    # A new delivery waits this long before it is sent: one order's events come from several topics,
    # and one that happened just before on another topic may be consumed a moment later.
    webhook_order_settle_seconds: float = Field(default=0.5, ge=0, le=60)

    # Retries: the first within 2*RETRY_BASE_SECONDS, doubling, capped, with jitter.
    retry_base_seconds: float = Field(default=1.0, gt=0, le=60)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    # How long a claimed row is this process's; after that (the process died) another one takes it.
    # Longer than the SMTP and webhook timeouts, so a live sender is never doubled.
    sender_lease_seconds: float = Field(default=60.0, gt=0)
    # The sender wakes on every commit that adds work, and at least this often (retries come due).
    sender_poll_seconds: float = Field(default=0.5, gt=0)
