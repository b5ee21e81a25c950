"""Use cases of the returns service: request (eligibility, label, saga start), receive, cancel, and
the read views. Each runs in one transaction with its outgoing messages (outbox)."""

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import asyncpg
import orjson

from oms_carriers.carriers import BookingRequest, Carriers
from oms_carriers.labels import LabelData
from oms_contracts import new_envelope
from oms_contracts.inventory import StockLine
from oms_contracts.orders import Address
from oms_contracts.returns import ReceivedLine, ReturnApprovedV1, ReturnClosedV1, ReturnLine, ReturnReceivedV1
from oms_platform import outbox, telemetry
from oms_platform.channel_keys import Caller
from oms_platform.errors import Conflict, NotFound, RuleBroken, Violation
from oms_platform.ids import uuid7
from oms_platform.pagination import Keyset, Page
from oms_saga import engine, store
from oms_saga.definition import Saga
from oms_saga.state import Incoming, Transition
from returns import domain
from returns import repository as repo
from returns.saga import RETURNS_EVENTS, ReturnCancellationRequested, ReturnData

_REPLACEMENT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:oms:returns:replacement-order")
# Newest first (return ids are UUIDv7), before the last return id of a page.
RETURNS = Keyset(key=lambda r: {"i": str(r["return_id"])}, parse=lambda v: UUID(v["i"]))


def replacement_order_id(return_id: UUID) -> UUID:
    """The exchange's replacement order id, chosen here so that order capture places it once."""
    return uuid5(_REPLACEMENT_NAMESPACE, str(return_id))


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def return_view(r: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    v = dict(r)
    for k in ("return_id", "order_id", "replacement_order_id"):
        v[k] = str(v[k]) if v.get(k) else None
    for k in ("created_at", "updated_at"):
        v[k] = _iso(v[k])
    v["label_url"] = f"/v1/returns/{v['return_id']}/label"
    return v


def _visible(row: asyncpg.Record | None, caller: Caller, what: str) -> asyncpg.Record:
    # Another channel's order or return is answered as not found, so ids do not leak across channels.
    if row is None or not caller.may_see(row["channel"]):
        raise NotFound(f"{what} not found")
    return row


class Returns:
    def __init__(self, saga: Saga, carriers: Carriers, settings: Any, out: outbox.Outbox):
        self.saga, self.carriers, self.settings = saga, carriers, settings
        # The runtime's declaration (what it may send), without its relay: these writes happen inside
        # transactions of their own callers, so the relay hears of them through pg_notify at commit.
        self.outbox = outbox.Outbox(out.producer, publishes=out.publishes)

    # --- request --------------------------------------------------------------------------------------

    async def request(self, pool: asyncpg.Pool, body: domain.ReturnIn, key: str, caller: Caller) -> tuple[dict, bool]:
        """Approves an eligible return (422 naming each refused line's rule otherwise), books its label and
        starts its saga, all in one transaction under the order's lock. Returns (view, created)."""
        order_id = UUID(body.order_id)
        telemetry.set_order_id(order_id)  # the request's span and log lines: found by the order
        digest = hashlib.sha256(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).digest()
        now = datetime.now(UTC)
        async with pool.acquire() as conn, conn.transaction():
            order = _visible(await repo.lock_order(conn, order_id), caller, f"order {order_id}")
            telemetry.set_order_id(order_id, link=order["order_traceparent"])  # linked to the order's trace
            scope = caller.channel or order["channel"]
            first = await repo.get_idempotency_key(conn, scope, key)
            if first is not None:
                return self._repeat(first, digest), False
            facts = await repo.order_facts(conn, order_id)
            got = domain.delivered(order["lines"], facts["shipments"], _deliveries(facts["deliveries"]))
            skus = [li.sku for li in body.lines]
            errors = domain.eligibility_errors(
                body.lines, order["lines"], got, _requested(facts["returns"]), await repo.returnable(conn, skus),
                now, self.settings.window_days(order["channel"]))
            if errors:
                summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
                raise RuleBroken(f"not eligible for return: {summary}", errors, code="not_eligible")
            view = await self._approve(conn, order, body, now)
            if not await repo.claim_idempotency_key(conn, scope, key, digest, UUID(view["return_id"]), view):
                raise Conflict("this Idempotency-Key was used for another request",
                               [Violation("Idempotency-Key", "same_body_for_same_key", "already used")],
                               code="idempotency_key_reused")
        return view, True

    @staticmethod
    def _repeat(first: asyncpg.Record, digest: bytes) -> dict[str, Any]:
        if first["request_hash"] != digest:
            raise Conflict("this Idempotency-Key was used with a different request body",
                           [Violation("Idempotency-Key", "same_body_for_same_key",
                                      f"already used for return {first['return_id']}")], code="idempotency_key_reused")
        return first["response"]

    async def _approve(self, conn: asyncpg.Connection, order: asyncpg.Record, body: domain.ReturnIn,
                       now: datetime) -> dict[str, Any]:
        return_id, order_id = uuid7(), order["order_id"]
        prices = {li["sku"]: li["unit_price"] for li in order["lines"]}
        lines = [{"sku": li.sku, "quantity": li.quantity, "reason": li.reason, "unit_price": prices[li.sku]}
                 for li in body.lines]
        carrier = self.carriers.get(self.settings.label_carrier)
        booking = await carrier.create_shipment(BookingRequest(
            reference=f"return/{return_id}", shipment_id=return_id, order_id=order_id, service="return",
            origin_location_id="customer", destination=self.returns_address(),
            lines=tuple(StockLine(sku=li.sku, quantity=li.quantity) for li in body.lines)))
        history = [{"status": s, "at": now.isoformat()} for s in ("requested", "approved", "awaiting_receipt")]
        replacement = replacement_order_id(return_id) if body.resolution == "exchange" else None
        row = {"return_id": return_id, "order_id": order_id, "channel": order["channel"],
               "resolution": body.resolution, "status": "awaiting_receipt", "lines": lines,
               "currency": order["currency"], "replacement_order_id": replacement, "carrier": carrier.name,
               "tracking_number": booking.tracking_number, "history": history, "created_at": now}
        await repo.insert_return(conn, row)
        data = ReturnData(return_id=return_id, order_id=order_id, channel=order["channel"],
                          resolution=body.resolution, currency=order["currency"], lines=lines,
                          replacement_order_id=replacement, status="awaiting_receipt", history=history)
        tr = engine.start(self.saga, None, return_id, data, None, now)
        approved = ReturnApprovedV1(
            order_id=order_id, return_id=return_id, channel=order["channel"], resolution=body.resolution,
            lines=[ReturnLine(sku=li.sku, quantity=li.quantity, reason=li.reason) for li in body.lines],
            approved_at=now, order_status="return_requested")
        await self._save(conn, tr, now, [approved], order_id)
        return return_view({**row, "outcome": None, "received": None, "refund_amount": None, "updated_at": now})

    def returns_address(self) -> Address:
        s = self.settings
        return Address(name=s.returns_address_name, line1=s.returns_address_line1, city=s.returns_address_city,
                       postal_code=s.returns_address_postal_code, country=s.returns_address_country)

    async def _save(self, conn: asyncpg.Connection, tr: Transition, now: datetime, extra: list[Any],
                    order_id: UUID) -> None:
        await store.save(conn, tr, now)
        messages = [outbox.message(topic, env) for topic, env in tr.messages]
        messages += [outbox.message(RETURNS_EVENTS, new_envelope(e, producer=self.saga.producer, order_id=order_id))
                     for e in extra]
        # Written in the caller's transaction; the relay hears of it through pg_notify at its commit.
        await self.outbox.write(conn, messages)

    # --- receive and cancel ---------------------------------------------------------------------------

    async def receive(self, pool: asyncpg.Pool, return_id: UUID, body: domain.ReceiveIn) -> dict[str, Any]:
        """The desk received and inspected the parcel: the saga restocks the resellable units, then refunds
        (or places the replacement order). Once per return (then 409 naming its status)."""
        now = datetime.now(UTC)
        async with pool.acquire() as conn, conn.transaction():
            ret = _visible(await repo.get_return(conn, return_id), Caller(operator=True, channel=None),
                           f"return {return_id}")
            telemetry.set_order_id(ret["order_id"])
            order = _visible(await repo.lock_order(conn, ret["order_id"]), Caller(operator=True, channel=None),
                             f"order {ret['order_id']}")
            telemetry.set_order_id(ret["order_id"], link=order["order_traceparent"])
            state = await store.load(conn, self.saga.name, return_id)
            if state is None or state.step != "await_receipt" or state.state != "running":
                status = ret["outcome"] or ret["status"]  # the row follows the saga (an expired one: its outcome)
                raise Conflict(f"return {return_id} is {status}; only a return awaiting receipt can be received",
                               code="not_awaiting_receipt")
            errors = domain.receipt_errors(body, state.data["lines"])
            if errors:
                raise RuleBroken.of(errors)
            facts = await repo.order_facts(conn, ret["order_id"])
            location = body.location_id or _shipped_from(facts["shipments"], body.lines[0].sku)
            if location is None:
                raise RuleBroken.of([Violation("location_id", "required",
                                               "no shipment of this SKU is known: name the location")])
            received = [ReceivedLine(sku=li.sku, quantity=li.quantity, condition=li.condition, location_id=location)
                        for li in body.lines if li.quantity > 0]
            got = domain.delivered(order["lines"], facts["shipments"], _deliveries(facts["deliveries"]))
            others = sum(li["quantity"] for r in facts["returns"] if str(r["return_id"]) != str(return_id)
                         for li in (r["received"] or []))
            status = domain.order_status_after(got.units, others + sum(li.quantity for li in received), 1)
            prices = {li["sku"]: Decimal(li["unit_price"]) for li in order["lines"]}
            state.data["refund_amount"] = str(domain.refund_amount([li.model_dump() for li in received], prices))
            event = ReturnReceivedV1(order_id=ret["order_id"], return_id=return_id, lines=received, received_at=now,
                                     order_status=status)
            tr = engine.handle(self.saga, state, _incoming(event), now)
            await self._save(conn, tr, now, [], ret["order_id"])
            assert tr.state is not None
            await repo.update_return(conn, return_id, tr.state.data, now)
            row = await repo.get_return(conn, return_id)
        return return_view(row)

    async def cancel(self, pool: asyncpg.Pool, return_id: UUID, reason: str, caller: Caller) -> dict[str, Any]:
        """Cancellable before receipt (the label is then void); later, 409 naming the status."""
        now = datetime.now(UTC)
        async with pool.acquire() as conn, conn.transaction():
            ret = _visible(await repo.get_return(conn, return_id), caller, f"return {return_id}")
            order = _visible(await repo.lock_order(conn, ret["order_id"]), caller, f"order {ret['order_id']}")
            telemetry.set_order_id(ret["order_id"], link=order["order_traceparent"])
            state = await store.load(conn, self.saga.name, return_id)
            assert state is not None
            tr = engine.handle(self.saga, state, _incoming(ReturnCancellationRequested(return_id=return_id,
                                                                                       reason=reason)), now)
            assert tr.state is not None
            if state.state != "running" or tr.state.state != "cancelled":
                raise Conflict(f"return {return_id} is {ret['outcome'] or ret['status']}; only a return not "
                               "received yet can be cancelled", code="not_cancellable")
            await self._save(conn, tr, now, [], ret["order_id"])
            await self._close_unreceived(conn, ret, order, tr.state.data, "cancelled", now)
            row = await repo.get_return(conn, return_id)
        return return_view(row)

    async def settle_expired(self, pool: asyncpg.Pool, limit: int = 5000) -> int:
        """Closes as expired the returns whose saga ended on the receipt deadline (the ticker ends the
        saga; this needs the order's other returns for its status). Returns how many."""
        async with pool.acquire() as conn:
            due = await repo.expired_returns(conn, limit)
        for return_id, order_id in due:
            now = datetime.now(UTC)
            async with pool.acquire() as conn, conn.transaction():
                order = await repo.lock_order(conn, order_id)
                ret = await repo.get_return(conn, return_id)  # read again under the order's lock
                state = await store.load(conn, self.saga.name, return_id)
                if (order is None or ret is None or ret["status"] != "awaiting_receipt" or state is None
                        or state.state != "cancelled"):
                    continue
                data = ReturnData.model_validate(state.data)
                data.moved("expired", now)
                data.moved("closed", now)
                data.outcome = "expired"
                await self._close_unreceived(conn, ret, order, data.model_dump(mode="json"), "expired", now)
        return len(due)

    async def _close_unreceived(self, conn: asyncpg.Connection, ret: asyncpg.Record, order: asyncpg.Record,
                                data: dict[str, Any], outcome: str, now: datetime) -> None:
        """A return closed before receipt (cancelled or expired): its units may be returned again, and the
        order's status is what its other returns make it (back to delivered when none is open)."""
        facts = await repo.order_facts(conn, ret["order_id"])
        others = [r for r in facts["returns"] if str(r["return_id"]) != str(ret["return_id"])]
        back = sum(li["quantity"] for r in others for li in (r["received"] or []))
        open_ = sum(1 for r in others if r["status"] not in ("cancelled", "closed"))
        got = domain.delivered(order["lines"], facts["shipments"], _deliveries(facts["deliveries"]))
        closed = ReturnClosedV1(order_id=ret["order_id"], return_id=ret["return_id"], outcome=outcome,
                                closed_at=now, order_status=domain.order_status_after(got.units, back, open_))
        await self.outbox.write(conn, [outbox.message(
            RETURNS_EVENTS, new_envelope(closed, producer=self.saga.producer, order_id=ret["order_id"]))])
        await repo.update_return(conn, ret["return_id"], data, now)

    # --- reads ----------------------------------------------------------------------------------------

    async def get(self, pool: asyncpg.Pool, return_id: UUID, caller: Caller) -> dict[str, Any]:
        async with pool.acquire() as conn:
            row = _visible(await repo.get_return(conn, return_id), caller, f"return {return_id}")
        return return_view(row)

    async def list(self, pool: asyncpg.Pool, caller: Caller, *, order_id: UUID | None, status: str | None,
                   cursor: str | None, limit: int) -> Page:
        before = RETURNS.after(cursor)
        async with pool.acquire() as conn:
            rows = await repo.list_returns(conn, channel=None if caller.operator else caller.channel,
                                           order_id=order_id, status=status, before=before, limit=limit + 1)
        return RETURNS.page(rows, limit, return_view)

    async def label(self, pool: asyncpg.Pool, return_id: UUID, caller: Caller) -> tuple[bytes, str]:
        async with pool.acquire() as conn:
            row = _visible(await repo.get_return(conn, return_id), caller, f"return {return_id}")
            order = _visible(await repo.get_order(conn, row["order_id"]), caller, f"order {row['order_id']}")
        a = order["shipping_address"]
        sender = [a["name"], a["line1"], *([a["line2"]] if a.get("line2") else []), f"{a['postal_code']} {a['city']}",
                  a["country"]]
        data = LabelData(
            shipment_id=return_id, order_id=row["order_id"], location_id="returns", sender_name=a["name"],
            recipient=self.returns_address(), carrier=row["carrier"], service="return",
            tracking_number=row["tracking_number"], created_at=row["created_at"], sender_lines=tuple(sender),
            kind="Return", lines=tuple(StockLine(sku=li["sku"], quantity=li["quantity"]) for li in row["lines"]))
        return await self.carriers.get(row["carrier"]).label(data), row["tracking_number"]


def _incoming(event: Any) -> Incoming:
    """An API action as the engine sees an event (it never travels on Kafka as such)."""
    return Incoming(event.EVENT_TYPE, event.EVENT_VERSION, uuid4(), None, None, event.return_id, event,
                    event.model_dump(mode="json"))


def _deliveries(rows: list[dict[str, Any]]) -> dict[str | None, datetime]:
    return {r["shipment_id"]: datetime.fromisoformat(r["delivered_at"]) for r in rows}


def _requested(returns: list[dict[str, Any]]) -> dict[str, int]:
    """Units per SKU in the order's returns that still count (open or completed, not cancelled or
    expired: their units may be returned again)."""
    units: dict[str, int] = {}
    for r in returns:
        if r["status"] == "cancelled" or r.get("outcome") == "expired":
            continue
        for li in r["lines"]:
            units[li["sku"]] = units.get(li["sku"], 0) + li["quantity"]
    return units


def _shipped_from(shipments: list[dict[str, Any]], sku: str) -> str | None:
    return next((s["location_id"] for s in shipments for li in s["lines"] if li["sku"] == sku), None)
