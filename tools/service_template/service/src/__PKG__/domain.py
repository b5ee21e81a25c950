"""The rules of __NAME__: pure Python, no I/O (no asyncpg, no FastAPI); handlers call them."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from oms_contracts.orders import OrderPlacedV1


@dataclass(frozen=True, slots=True)
class OrderSeen:
    order_id: UUID
    channel: str
    currency: str
    total: Decimal
    placed_at: datetime


def order_seen(event: OrderPlacedV1) -> OrderSeen:
    """What this service keeps of a placed order."""
    return OrderSeen(event.order_id, event.channel, event.currency, event.total, event.created_at)
