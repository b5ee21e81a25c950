from pathlib import Path

from pydantic import Field

from oms_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "fulfilment"
    http_port: int = 8003
    database_url: str = "postgresql://fulfilment@127.0.0.1:55432/fulfilment"
    # A JSON list of carrier rules (see domain.CarrierRule); unset: the built-in defaults.
    carrier_rules_file: Path | None = None
    # Built-in carrier tracking numbers: <prefix><9 digits><check digit><country>.
    tracking_prefix: str = Field(default="OMS", pattern=r"^[A-Z]{1,4}$")
    tracking_country: str = Field(default="PT", pattern=r"^[A-Z]{2}$")
    # Serials drawn from the database at a time (one round trip per block, not per shipment); what is
    # left of a block at a restart is skipped.
    tracking_serial_block: int = Field(default=100, ge=1, le=10_000)
    # The sender printed on labels above the shipping location.
    label_sender_name: str = Field(default="OMS Fulfilment", min_length=1, max_length=80)
