"""Use cases of order capture: channel keys, placing, reading, listing and cancelling orders."""

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import orjson
from prometheus_client import Counter

from oms_contracts import Envelope
from oms_contracts.channels import ChannelKeyIssuedV1, ChannelKeyRevokedV1
from oms_contracts.orders import OrderCancellationRequestedV1, OrderPlacedV1
from oms_contracts.topics import CHANNELS_EVENTS, ORDERS_EVENTS
from oms_platform import metrics, outbox, telemetry
from oms_platform.channel_keys import key_hash
from oms_platform.errors import Conflict, NotFound, RuleBroken, Violation
from oms_platform.ids import uuid7
from oms_platform.outbox import Outbox
from oms_platform.pagination import Keyset, Page
from order_capture import repository as repo
from order_capture.domain import TERMINAL_FOR_CANCEL, OrderIn, business_rule_errors, line_view, order_total

# Counted once the order is committed: a replayed Idempotency-Key or a refused order is not counted.
ORDERS_PLACED = Counter("oms_orders_placed_total", "Orders placed, by channel", ["channel"])


class KeyCache:
    """Which channel a key belongs to, remembered for `ttl` seconds: live keys in one LRU, unknown keys
    in a smaller one of their own, so a flood of random tokens cannot push live keys out. A lookup that
    started before a revoke does not store what it read (it may be the revoked key), so a revoke here is
    effective at once in this process."""

    def __init__(self, ttl: float, *, size: int = 10_000, unknown_size: int = 1_000):
        self.ttl, self.size, self.unknown_size = ttl, size, unknown_size
        self._known: OrderedDict[bytes, tuple[float, str]] = OrderedDict()
        self._unknown: OrderedDict[bytes, float] = OrderedDict()
        self.revocations = 0  # bumped by every revoke: a fill that began before one is dropped

    def get(self, digest: bytes, now: float) -> tuple[bool, str | None]:
        """(hit, channel): hit False means ask the database."""
        if (known := self._known.get(digest)) is not None and known[0] > now:
            self._known.move_to_end(digest)
            return True, known[1]
        if (until := self._unknown.get(digest)) is not None and until > now:
            return True, None
        return False, None

    def put(self, digest: bytes, channel: str | None, now: float, began_at_revocation: int) -> None:
        if began_at_revocation != self.revocations:
            return
        table: OrderedDict = self._known if channel is not None else self._unknown
        table[digest] = (now + self.ttl, channel) if channel is not None else now + self.ttl
        table.move_to_end(digest)
        while len(table) > (self.size if channel is not None else self.unknown_size):
            table.popitem(last=False)

    def revoke(self, digest: bytes) -> None:
        self.revocations += 1
        self._known.pop(digest, None)


class ApiKeys:
    """Channel keys with a short per-process cache: a key checked once is not looked up again for
    `ttl` seconds (a revoke here clears it at once; other processes see it within `ttl`). Each issue
    and revoke is announced on oms.channels.events in the same transaction, so the other services
    that accept channel keys keep their copy (oms_platform.channel_keys)."""

    def __init__(self, get_pool: Callable[[], asyncpg.Pool], outbox: Outbox, ttl: float):
        self._get_pool, self.outbox = get_pool, outbox
        self.cache = KeyCache(ttl)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._get_pool()

    async def create(self, channel: str) -> dict[str, Any]:
        key = f"oms_{secrets.token_urlsafe(32)}"
        key_id = uuid7()
        digest = key_hash(key)
        async with self.outbox.transaction(self.pool) as uow:
            created_at = await repo.insert_api_key(uow.conn, key_id, channel, digest)
            uow.emit(CHANNELS_EVENTS, ChannelKeyIssuedV1(key_id=key_id, channel=channel, key_hash=digest.hex(),
                                                         issued_at=created_at), order_id=key_id)
        return {"key_id": str(key_id), "channel": channel, "key": key, "created_at": created_at.isoformat()}

    async def revoke(self, key_id: UUID) -> None:
        async with self.outbox.transaction(self.pool) as uow:
            row = await repo.revoke_api_key(uow.conn, key_id)
            if row is None:
                raise NotFound(f"API key {key_id} not found")
            uow.emit(CHANNELS_EVENTS, ChannelKeyRevokedV1(key_id=key_id, channel=row["channel"],
                                                          revoked_at=row["revoked_at"]), order_id=key_id)
        self.cache.revoke(row["key_hash"])

    async def list(self) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            return [dict(r) for r in await repo.list_api_keys(conn)]

    async def channel_of(self, key: str) -> str | None:
        digest, began = key_hash(key), self.cache.revocations
        hit, channel = self.cache.get(digest, time.monotonic())
        if hit:
            return channel
        async with self.pool.acquire() as conn:
            found = await repo.channel_for_key(conn, digest)
        channel = found[1] if found else None
        self.cache.put(digest, channel, time.monotonic(), began)
        return channel


def order_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    v = dict(row)
    v["order_id"] = str(v["order_id"])
    for k in ("created_at", "updated_at"):
        if isinstance(v[k], datetime):
            v[k] = v[k].isoformat()
    return v


@dataclass(frozen=True)
class Placement:
    """What placing one order writes in one statement: its row, its idempotency record (request hash),
    its OrderPlaced message; and its view, the response to the request that placed it."""

    row: dict[str, Any]
    view: dict[str, Any]
    digest: bytes
    message: outbox.OutgoingMessage


def placement(order: OrderIn, order_id: UUID, producer: str) -> Placement:
    body = order.model_dump(mode="json")
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()
    now = datetime.now(UTC)
    total = order_total(order.lines)
    created_at = now.isoformat()
    view = {
        "order_id": str(order_id), "status": "pending", "status_reason": None,
        "channel": order.channel, "external_id": order.external_id,
        "customer": body["customer"], "shipping_address": body["shipping_address"],
        "shipping_method": order.shipping_method, "lines": [line_view(li) for li in order.lines],
        "total": str(total), "currency": order.currency, "payment": body["payment"],
        "created_at": created_at, "updated_at": created_at,
    }
    # The OrderPlacedV1 payload from data validated a moment ago (tests check it against the model):
    # the envelope is constructed without validating that payload a second time (the hot path).
    payload = {**body, "order_id": str(order_id), "total": str(total), "created_at": created_at}
    envelope = Envelope.model_construct(
        event_id=uuid4(), event_type=OrderPlacedV1.EVENT_TYPE, event_version=OrderPlacedV1.EVENT_VERSION,
        occurred_at=now, producer=producer, order_id=order_id, correlation_id=order_id, causation_id=None,
        payload=payload,
    )
    message = outbox.message(ORDERS_EVENTS, envelope)
    row = {**body, "order_id": order_id, "created_at": now, "total": total, "lines": view["lines"]}
    return Placement(row, view, digest, message)


async def place_order(pool: asyncpg.Pool, out: Outbox, order: OrderIn, idempotency_key: str) -> dict[str, Any]:
    """Stores the order, its idempotency key and its OrderPlaced event in one statement. A repeat of
    the same key and body returns the first response; a different body with the key is a conflict."""
    errors = business_rule_errors(order)
    if errors:
        raise RuleBroken.of(errors)
    p = placement(order, uuid7(), out.producer)
    telemetry.set_order_id(p.row["order_id"])  # the request's span, its database spans and log lines
    row, view, digest = p.row, p.view, p.digest
    async with pool.acquire() as conn:
        try:
            written = await repo.place_order(conn, row, idempotency_key, digest, out, [p.message])
            if written is not None:
                written.committed()
                metrics.child(ORDERS_PLACED, order.channel).inc()
                return view
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "orders_channel_external_id":
                raise
            existing = await repo.order_id_by_external_id(conn, order.channel, order.external_id)
            raise Conflict(
                f"channel {order.channel} already has an order with external_id {order.external_id}: {existing}",
                [Violation("external_id", "unique_per_channel", f"existing order {existing}")],
                code="duplicate_external_id",
            ) from exc
        first = await repo.get_idempotency_key(conn, order.channel, idempotency_key)
    if first is None:  # pragma: no cover - the key was seen a statement ago
        raise Conflict("retry the request", code="idempotency_conflict")
    if first["request_hash"] != digest:
        raise Conflict(
            "this Idempotency-Key was used with a different request body",
            [Violation("Idempotency-Key", "same_body_for_same_key", f"already used for order {first['order_id']}")],
            code="idempotency_key_reused",
        )
    return first["response"] or first_response(first)


def first_response(row: asyncpg.Record) -> dict[str, Any]:
    """The response that placed the order, from its row: the order as it was placed (pending, never
    updated), whatever happened to it since (a replay answers what the first request got)."""
    view = order_view({k: v for k, v in row.items() if k not in ("request_hash", "response")})
    return {**view, "status": "pending", "status_reason": None, "updated_at": view["created_at"]}


async def get_order(pool: asyncpg.Pool, order_id: UUID, channel: str | None) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await repo.get_order(conn, order_id)
    # Another channel's order is answered as not found, so order ids do not leak across channels.
    if row is None or (channel is not None and row["channel"] != channel):
        raise NotFound(f"order {order_id} not found")
    return order_view(row)


# Newest first: (created_at, order_id) of the last order of a page.
ORDERS = Keyset(key=lambda r: {"c": r["created_at"].isoformat(), "i": str(r["order_id"])},
                parse=lambda v: (datetime.fromisoformat(v["c"]), UUID(v["i"])))


async def list_orders(
    pool: asyncpg.Pool, *, channel: str | None, status: str | None, customer_id: str | None,
    created_from: datetime | None, created_to: datetime | None, cursor: str | None, limit: int,
) -> Page:
    after = ORDERS.after(cursor)
    async with pool.acquire() as conn:
        rows = await repo.list_orders(
            conn, channel=channel, status=status, customer_id=customer_id, created_from=created_from,
            created_to=created_to, after=after, limit=limit + 1,
        )
    return ORDERS.page(rows, limit, order_view)


async def request_cancellation(
    pool: asyncpg.Pool, out: Outbox, order_id: UUID, reason: str, channel: str | None, requested_by: str
) -> dict[str, Any]:
    async with out.transaction(pool) as uow:
        conn = uow.conn
        row = await repo.lock_order(conn, order_id)
        if row is None or (channel is not None and row["channel"] != channel):
            raise NotFound(f"order {order_id} not found")
        if row["status"] in TERMINAL_FOR_CANCEL:
            raise Conflict(f"order {order_id} is already {row['status']}", code="not_cancellable")
        if row["cancel_requested_at"] is not None:
            # Asked before and the saga has not ended the order yet: the first request stands, once.
            return {"order_id": str(order_id), "status": row["status"], "cancellation": "already_requested",
                    "reason": row["cancel_reason"], "requested_at": row["cancel_requested_at"].isoformat()}
        event = OrderCancellationRequestedV1(order_id=order_id, reason=reason, requested_by=requested_by)
        await repo.mark_cancel_requested(conn, order_id, reason)
        uow.emit(ORDERS_EVENTS, event, order_id=order_id)
    return {"order_id": str(order_id), "status": row["status"], "cancellation": "requested", "reason": reason}
