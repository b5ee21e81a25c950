"""Kafka topic names of CONTRACT.md. Every topic with a consumer has a `<topic>.dlq` beside it."""

ORDERS_EVENTS = "oms.orders.events"
ORDERS_STATUS = "oms.orders.status"
BILLING_REQUESTS = "oms.billing.requests"
BILLING_EVENTS = "oms.billing.events"
# Channel API keys issued and revoked by order capture (oms_contracts.channels).
CHANNELS_EVENTS = "oms.channels.events"

PARTICIPANTS = ("inventory", "fulfilment", "tracking", "returns", "notification")


def commands(service: str) -> str:
    return f"oms.{service}.commands"


def events(service: str) -> str:
    return f"oms.{service}.events"


DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


ALL_TOPICS: tuple[str, ...] = (
    ORDERS_EVENTS,
    ORDERS_STATUS,
    BILLING_REQUESTS,
    BILLING_EVENTS,
    CHANNELS_EVENTS,
    *(commands(s) for s in PARTICIPANTS),
    *(events(s) for s in PARTICIPANTS),
)
