from pydantic import Field

from oms_platform.settings import ServiceSettings
from returns.saga import Deadlines


class Settings(ServiceSettings):
    service_name: str = "returns"
    http_port: int = 8005
    database_url: str = "postgresql://returns@127.0.0.1:55432/returns"
    # Days after delivery a customer may ask to return goods, by default and per channel
    # (RETURN_WINDOW_DAYS_BY_CHANNEL='{"pos": 14}').
    return_window_days: float = Field(default=30.0, ge=0)
    return_window_days_by_channel: dict[str, float] = Field(default_factory=dict)
    # Goods not received this many days after approval: the return closes as expired (its units may
    # be returned again).
    return_receipt_days: float = Field(default=30.0, gt=0)
    # A participant's reply (inventory's restock, the replacement order) is awaited this long, the
    # command sent again up to STEP_MAX_ATTEMPTS times, then the return is flagged stuck.
    # A placed replacement order is awaited this long to be confirmed (it may be backordered), or
    # rejected or cancelled (then refunded instead), then the return is flagged stuck.
    replacement_timeout_seconds: float = Field(default=15 * 86400.0, gt=0)
    step_timeout_seconds: float = Field(default=30.0, gt=0)
    step_max_attempts: int = Field(default=3, ge=1)
    # The billing system's RefundCompleted is awaited this long per RefundRequested (sent again up to
    # STEP_MAX_ATTEMPTS times: billing refunds a return once, by return_id).
    refund_timeout_seconds: float = Field(default=86400.0, gt=0)
    tick_interval_seconds: float = Field(default=0.5, gt=0)
    tick_batch_size: int = Field(default=200, ge=1)
    # Return labels: the built-in carrier's tracking numbers <prefix><9 digits><check><country>, and
    # where the parcels go (the returns desk's address, printed as the recipient).
    label_carrier: str = "oms-post"
    tracking_prefix: str = Field(default="OMR", pattern=r"^[A-Z]{1,4}$")
    tracking_country: str = Field(default="PT", pattern=r"^[A-Z]{2}$")
    returns_address_name: str = "OMS Returns"
    returns_address_line1: str = "Rua do Armazem 1"
    returns_address_city: str = "Lisboa"
    returns_address_postal_code: str = "1100-001"
    returns_address_country: str = Field(default="PT", pattern=r"^[A-Z]{2}$")

    def window_days(self, channel: str) -> float:
        return self.return_window_days_by_channel.get(channel, self.return_window_days)

    def deadlines(self) -> Deadlines:
        return Deadlines(receipt=self.return_receipt_days * 86400.0, step=self.step_timeout_seconds,
                         attempts=self.step_max_attempts, refund=self.refund_timeout_seconds,
                         replacement=self.replacement_timeout_seconds)
