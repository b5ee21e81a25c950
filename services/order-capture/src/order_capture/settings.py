from oms_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "order-capture"
    http_port: int = 8001
    database_url: str = "postgresql://order_capture@127.0.0.1:55432/order_capture"
    # How long a channel key stays cached in this process; a revoke is seen by others within it.
    api_key_cache_seconds: float = 5.0
