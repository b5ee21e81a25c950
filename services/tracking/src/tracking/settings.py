from pydantic import Field

from oms_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "tracking"
    http_port: int = 8004
    database_url: str = "postgresql://tracking@127.0.0.1:55432/tracking"
    # The secret carriers sign their webhook bodies with (HMAC-SHA256). Unset: every scan is refused.
    carrier_webhook_secret: str | None = None
    # A live stream silent this long sends a comment, so proxies and load balancers keep it open.
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
