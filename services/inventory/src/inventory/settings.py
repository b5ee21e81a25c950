from pydantic import Field

from oms_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "inventory"
    http_port: int = 8002
    database_url: str = "postgresql://inventory@127.0.0.1:55432/inventory"
    # How many of the oldest waiting backorders one stock rise looks at (keeps that pass bounded).
    backorder_scan_limit: int = Field(default=1000, ge=1)
