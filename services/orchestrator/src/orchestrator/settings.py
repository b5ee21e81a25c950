from pydantic import Field

from oms_platform.settings import ServiceSettings
from orchestrator.domain import Deadlines


class Settings(ServiceSettings):
    service_name: str = "orchestrator"
    http_port: int = 8000
    database_url: str = "postgresql://orchestrator@127.0.0.1:55432/orchestrator"
    # A participant's reply is awaited this long; the command is then sent again, up to
    # STEP_MAX_ATTEMPTS sends in all, and then the saga compensates.
    step_timeout_seconds: float = Field(default=30.0, gt=0)
    step_max_attempts: int = Field(default=3, ge=1)
    payment_timeout_seconds: float = Field(default=3600.0, gt=0)
    backorder_timeout_seconds: float = Field(default=14 * 86400.0, gt=0)
    dispatch_timeout_seconds: float = Field(default=3 * 86400.0, gt=0)
    delivery_timeout_seconds: float = Field(default=30 * 86400.0, gt=0)
    tick_interval_seconds: float = Field(default=0.5, gt=0)
    tick_batch_size: int = Field(default=200, ge=1)

    def deadlines(self) -> Deadlines:
        return Deadlines(
            step=self.step_timeout_seconds, attempts=self.step_max_attempts, payment=self.payment_timeout_seconds,
            backorder=self.backorder_timeout_seconds, dispatch=self.dispatch_timeout_seconds,
            delivery=self.delivery_timeout_seconds,
        )
