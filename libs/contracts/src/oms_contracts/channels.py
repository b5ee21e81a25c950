"""Channel API keys as events (oms.channels.events), so every service that accepts channel keys keeps
its own copy of them (oms_platform.channel_keys) instead of calling order capture. The envelope's
order_id is the key id: one key's events stay in order. Only the SHA-256 of a key travels."""

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from oms_contracts.base import Contract


class ChannelKeyIssuedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "ChannelKeyIssued"
    EVENT_VERSION: ClassVar[int] = 1

    key_id: UUID
    channel: str
    key_hash: str  # hex SHA-256 of the key
    issued_at: datetime


class ChannelKeyRevokedV1(Contract):
    EVENT_TYPE: ClassVar[str] = "ChannelKeyRevoked"
    EVENT_VERSION: ClassVar[int] = 1

    key_id: UUID
    channel: str
    revoked_at: datetime
