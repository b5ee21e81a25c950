from oms_platform.settings import ServiceSettings


class Settings(ServiceSettings):
    """Every platform setting (HTTP_PORT, DATABASE_URL, KAFKA_*, CONSUMER_*, ...) plus this service's own."""

    service_name: str = "__NAME__"
    http_port: int = __PORT__
    database_url: str = "postgresql://__DB__@127.0.0.1:55432/__DB__"
