"""Channel API keys in any service: order capture issues and revokes them and announces each change
on oms.channels.events (ChannelKeyIssued / ChannelKeyRevoked, with the key's SHA-256, never the key);
every other service that accepts channel keys keeps its own copy through the consumer below, so a
request is checked against its own database, with no call to order capture.

A revoke takes effect here one Kafka hop after order capture commits it (milliseconds when healthy).

ServiceRuntime wires the consumer and the migration for every service (order capture, which issues the
keys, opts out) and offers the checker as `runtime.channel_keys`; oms_platform.http.operator_dependency
uses it to answer 403 to a channel key on an operator endpoint.

    keys = runtime.channel_keys
    @router.get(...)
    async def view(caller: Annotated[Caller, Depends(keys.caller)]): ...   # operator or a channel
    async def admin(_: Annotated[Caller, Depends(keys.operator)]): ...      # operator only (403 for a key)
"""

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import Request

from oms_contracts.channels import ChannelKeyIssuedV1, ChannelKeyRevokedV1
from oms_contracts.topics import CHANNELS_EVENTS
from oms_platform.consumer import ConsumerSpec, Message, UnitOfWork
from oms_platform.http import ApiError, bearer_token, unauthorized
from oms_platform.openapi import CHANNEL, OPERATOR, requires

MIGRATIONS = Path(__file__).parent / "channel_keys_migrations"


def key_hash(key: str) -> bytes:
    # Keys are 256-bit random tokens: a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True, slots=True)
class Caller:
    operator: bool
    channel: str | None  # the key's channel; None for an operator

    def may_see(self, channel: str) -> bool:
        """An operator sees every channel's orders; a channel key only its own channel's."""
        return self.operator or self.channel == channel


async def _on_issued(msg: Message, uow: UnitOfWork[None]) -> None:
    e = msg.payload
    assert isinstance(e, ChannelKeyIssuedV1)
    await uow.conn.execute(
        """INSERT INTO channel_keys (key_id, channel, key_hash, issued_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (key_id) DO NOTHING""",
        e.key_id, e.channel, bytes.fromhex(e.key_hash), e.issued_at,
    )


async def _on_revoked(msg: Message, uow: UnitOfWork[None]) -> None:
    e = msg.payload
    assert isinstance(e, ChannelKeyRevokedV1)
    # A revoke that overtook its issue (another partition order cannot happen: same key id, same
    # partition) still wins: the row is kept revoked.
    await uow.conn.execute(
        """INSERT INTO channel_keys (key_id, channel, key_hash, issued_at, revoked_at)
           VALUES ($1, $2, $3, $4, $4)
           ON CONFLICT (key_id) DO UPDATE SET revoked_at = coalesce(channel_keys.revoked_at, excluded.revoked_at)""",
        e.key_id, e.channel, b"revoked:" + e.key_id.bytes, e.revoked_at,
    )


class ChannelKeys:
    """Checks bearer credentials: the operator token (OMS_ADMIN_TOKEN; without it set, no operator)
    or a channel key from this service's copy."""

    consumer = ConsumerSpec(
        name="channel-keys", topics=[CHANNELS_EVENTS],
        handlers={"ChannelKeyIssued": _on_issued, "ChannelKeyRevoked": _on_revoked},
    )
    migrations = ("channel_keys", MIGRATIONS)

    def __init__(self, runtime: Any, admin_token: str | None):
        self._runtime = runtime  # its pool exists once the service started
        self._admin_token = admin_token

    def _is_operator(self, token: str) -> bool:
        return bool(self._admin_token) and hmac.compare_digest(token.encode(), str(self._admin_token).encode())

    async def channel_of(self, key: str) -> str | None:
        pool: asyncpg.Pool = self._runtime.pool
        return await pool.fetchval(
            "SELECT channel FROM channel_keys WHERE key_hash = $1 AND revoked_at IS NULL", key_hash(key)
        )

    @requires(CHANNEL, OPERATOR)
    async def caller(self, request: Request) -> Caller:
        """FastAPI dependency: the operator or a channel; 401 for missing, unknown or revoked credentials."""
        token = bearer_token(request)
        if token is None:
            raise unauthorized()
        if self._is_operator(token):
            return Caller(operator=True, channel=None)
        channel = await self.channel_of(token)
        if channel is None:
            raise unauthorized("unknown or revoked API key")
        return Caller(operator=False, channel=channel)

    @requires(OPERATOR)
    async def operator(self, request: Request) -> Caller:
        """FastAPI dependency for operator endpoints: a valid channel key is 403 (wrong scope), else 401."""
        caller = await self.caller(request)
        if not caller.operator:
            raise ApiError(403, "forbidden", "a channel API key cannot call operator endpoints")
        return caller
