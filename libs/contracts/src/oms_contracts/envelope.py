"""The envelope every Kafka message carries (CONTRACT.md, Kafka)."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID
    event_type: str
    event_version: int = Field(ge=1)
    occurred_at: datetime
    producer: str
    order_id: UUID
    correlation_id: UUID
    causation_id: UUID | None = None
    payload: dict[str, Any]


def new_envelope(
    event: BaseModel,
    *,
    producer: str,
    order_id: UUID,
    correlation_id: UUID | None = None,
    causation_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Wraps a contract model (which names its own EVENT_TYPE and EVENT_VERSION) in an envelope."""
    return Envelope(
        event_id=uuid4(),
        event_type=event.EVENT_TYPE,  # type: ignore[attr-defined]
        event_version=event.EVENT_VERSION,  # type: ignore[attr-defined]
        occurred_at=occurred_at or datetime.now(UTC),
        producer=producer,
        order_id=order_id,
        correlation_id=correlation_id or order_id,
        causation_id=causation_id,
        payload=event.model_dump(mode="json"),
    )
