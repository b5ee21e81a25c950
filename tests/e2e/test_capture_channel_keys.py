"""Channel keys reach the other services: order capture announces every key it issues or revokes on
oms.channels.events, and oms_platform.channel_keys (the copy any service keeps) accepts exactly the
live keys, refuses revoked and unknown ones (401), and tells a channel key on an operator endpoint
apart (403)."""

from collections.abc import AsyncIterator
from uuid import UUID

import orjson
import pytest
from aiokafka import ConsumerRecord
from starlette.requests import Request

from oms_contracts import Envelope
from oms_contracts.channels import ChannelKeyIssuedV1, ChannelKeyRevokedV1
from oms_contracts.topics import CHANNELS_EVENTS
from oms_platform.channel_keys import Caller, ChannelKeys
from oms_platform.consumer import BatchProcessor
from oms_platform.http import ApiError
from oms_platform.outbox import Outbox
from tests.integration.helpers import migrated_pool
from tests.support.capture import ADMIN, ADMIN_TOKEN, Capture
from tests.support.kafka import TopicReader

pytestmark = pytest.mark.infra


class _Runtime:
    pool = None


def _request(token: str | None) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""})


async def _status(dependency, token: str | None) -> int | Caller:
    try:
        return await dependency(_request(token))
    except ApiError as exc:
        return exc.status


@pytest.fixture
async def keys_reader(cap: Capture) -> AsyncIterator[TopicReader]:
    r = await TopicReader(cap.kafka, CHANNELS_EVENTS).start()
    yield r
    await r.stop()


async def test_issued_and_revoked_keys_reach_another_services_copy(cap: Capture, keys_reader, infra) -> None:
    web = await cap.new_key("web")
    gone = await cap.new_key("pos")
    resp = await cap.http.delete(f"{cap.url}/v1/admin/api-keys/{gone.key_id}",
                                 headers=ADMIN)
    assert resp.status_code == 204

    def announced(records: list[ConsumerRecord]) -> bool:
        types = {(orjson.loads(r.value)["event_type"], orjson.loads(r.value)["order_id"]) for r in records}
        return {("ChannelKeyIssued", web.key_id), ("ChannelKeyIssued", gone.key_id),
                ("ChannelKeyRevoked", gone.key_id)} <= types

    records = await keys_reader.wait_for(announced)
    envelopes = [Envelope.model_validate_json(r.value) for r in records]
    issued = next(e for e in envelopes if e.event_type == "ChannelKeyIssued" and str(e.order_id) == web.key_id)
    payload = ChannelKeyIssuedV1.model_validate(issued.payload)
    assert payload.channel == "web" and web.key not in r_values(records)  # only the hash travels
    assert all(r.key == str(UUID(orjson.loads(r.value)["order_id"])).encode() for r in records)

    dsn = await infra.create_database("chkeys")
    runtime = _Runtime()
    keys = ChannelKeys(runtime, ADMIN_TOKEN)
    async with migrated_pool(dsn, None) as pool:
        from oms_platform import db

        await db.migrate(pool, None, [keys.migrations])
        runtime.pool = pool
        proc = BatchProcessor(keys.consumer, pool, outbox=Outbox("test"), group_id="test.channel-keys")
        await proc.process(records)
        await proc.process(records)  # a redelivery changes nothing

        assert await _status(keys.caller, web.key) == Caller(operator=False, channel="web")
        assert await _status(keys.caller, gone.key) == 401
        assert await _status(keys.caller, "oms_not-a-key") == 401
        assert await _status(keys.caller, None) == 401
        assert await _status(keys.caller, ADMIN_TOKEN) == Caller(operator=True, channel=None)
        assert await _status(keys.operator, ADMIN_TOKEN) == Caller(operator=True, channel=None)
        assert await _status(keys.operator, web.key) == 403
        assert await _status(keys.operator, gone.key) == 401
        assert Caller(operator=False, channel="web").may_see("web")
        assert not Caller(operator=False, channel="web").may_see("pos")


def r_values(records: list[ConsumerRecord]) -> str:
    return b"".join(r.value for r in records).decode()


async def test_keys_issued_before_the_announcements_are_announced_by_the_migration(infra) -> None:
    """The 0002 migration backfills: each existing key's issue (and revoke) goes out through the outbox."""
    from pathlib import Path

    import order_capture

    folder = Path(order_capture.__file__).parent / "migrations"
    dsn = await infra.create_database("chkeysbf")
    async with migrated_pool(dsn, folder) as pool:
        await pool.execute("DELETE FROM outbox")
        await pool.execute(
            """INSERT INTO api_keys (key_id, channel, key_hash, revoked_at) VALUES
               ('00000000-0000-7000-8000-000000000001', 'web', '\\x01', NULL),
               ('00000000-0000-7000-8000-000000000002', 'pos', '\\x02', now())""")
        await pool.execute((folder / "0002_announce_channel_keys.sql").read_text())
        rows = await pool.fetch("SELECT topic, key, value, headers FROM outbox ORDER BY id")
    envs = [Envelope.model_validate_json(r["value"]) for r in rows]
    assert [(r["topic"], e.event_type, r["key"]) for r, e in zip(rows, envs, strict=True)] == [
        (CHANNELS_EVENTS, "ChannelKeyIssued", "00000000-0000-7000-8000-000000000001"),
        (CHANNELS_EVENTS, "ChannelKeyIssued", "00000000-0000-7000-8000-000000000002"),
        (CHANNELS_EVENTS, "ChannelKeyRevoked", "00000000-0000-7000-8000-000000000002"),
    ]
    assert ChannelKeyIssuedV1.model_validate(envs[0].payload).key_hash == "01"
    assert ChannelKeyRevokedV1.model_validate(envs[2].payload).channel == "pos"
    headers = rows[0]["headers"]
    assert ["event_type", "ChannelKeyIssued"] in (orjson.loads(headers) if isinstance(headers, str) else headers)
