"""The checks after a run, on the services' own databases (read as the superuser) and on the status
topic. Each returns (figure, details); `failing` names the checks where any figure above 0 fails the run."""

import asyncio
import time
from collections import defaultdict
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from tools.chaos.load import LOCATION, Load
from tools.chaos.stack import Stack

FINAL = {"confirmed", "rejected", "cancelled"}  # authorised payment, no backorder: where every order ends here
RETURNED = "returned"  # where an order that went the whole way (tools/chaos/journeys.py) ends
RANK = {"pending": 0, "awaiting_payment": 1, "backordered": 1, "confirmed": 2, "partially_shipped": 3,
        "shipped": 4, "delivered": 5, "return_requested": 6, "partially_returned": 7, "returned": 8,
        "cancelled": 9, "rejected": 9}
# Any figure above 0 in these fails the run (a loss or a duplicate, or an order left half done).
FAILING = ("orders lost", "orders stuck", "oversold units", "wrongly reserved", "duplicated effects",
           "status regressions", "effects lost", "wrong refunds", "journeys not completed")


async def fetch(stack: Stack, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    db = stack.database(service)
    if db is None:
        return []
    conn = await asyncpg.connect(stack.dsn(db))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def final(load: Load) -> dict[str, set[str]]:
    """Where each order must end: returned when its return was accepted, else confirmed, rejected or
    cancelled; shipped or delivered too when its journey stopped there (a check of its own reports that)."""
    journeys = load.journeys.done if load.journeys else []
    returned = {j.order_id for j in journeys if j.return_id}
    stopped = {j.order_id for j in journeys if j.failed and not j.return_id}
    return {p.order_id: {RETURNED} if p.order_id in returned else FINAL | {"shipped", "delivered"}
            if p.order_id in stopped else FINAL for p in load.placed.values()}


async def settle(stack: Stack, load: Load, timeout: float) -> dict[str, str]:
    """Waits until every accepted order has its final status at order-capture, every return is closed
    and notification has nothing left to send for them (or the timeout); returns the statuses seen last."""
    wanted = final(load)
    ids = list(wanted)
    returns = [j.return_id for j in (load.journeys.done if load.journeys else []) if j.return_id]
    deadline, statuses = time.monotonic() + timeout, {}
    while True:
        try:
            rows = await fetch(stack, "order-capture", "SELECT order_id::text, status FROM orders "
                               "WHERE order_id = ANY($1::uuid[])", ids)
            statuses = {r["order_id"]: r["status"] for r in rows}
            open_returns = await fetch(stack, "returns", "SELECT return_id FROM returns "
                                       "WHERE return_id = ANY($1::uuid[]) AND status <> 'closed'", returns)
            unsent = await fetch(stack, "notification", "SELECT 1 FROM notifications WHERE order_id = ANY($1::uuid[]) "
                                 "AND status IN ('pending', 'sending') LIMIT 1", ids)
            settled = (len(statuses) == len(ids) and all(statuses[o] in wanted[o] for o in ids)
                       and not open_returns and not unsent)
        except (OSError, asyncpg.PostgresError):
            settled = False
        if settled or time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(1)


def status_findings(events: dict[str, list[tuple[str, str]]], statuses: dict[str, str]
                    ) -> tuple[list[str], list[str], int]:
    """From each order's (event_id, new_status) in topic order: the orders whose status went backwards
    (or whose last event disagrees with order capture), statuses announced twice by distinct events,
    and how many events were seen again with their event id. Such a resend (a relay that died between
    publishing and marking its rows; receivers drop it by event id) is not a change of status."""
    regressions, twice, resent = [], [], 0
    for order_id, seq in events.items():
        distinct = list(dict.fromkeys(seq))
        resent += len(seq) - len(distinct)
        top, seen = -1, {}
        for event_id, status in distinct:
            if RANK[status] < top:
                regressions.append(f"{order_id}: {' -> '.join(s for _, s in distinct)}")
                break
            top = max(top, RANK[status])
            if status in seen and seen[status] != event_id:
                twice.append(f"{order_id}: {status}")
            seen[status] = event_id
        if distinct and statuses.get(order_id) not in (None, distinct[-1][1]):
            regressions.append(f"{order_id}: order-capture says {statuses[order_id]}, last event {distinct[-1][1]}")
    return regressions, twice, resent


async def status_events(stack: Stack, order_ids: set[str]) -> dict[str, list[tuple[str, str]]]:
    """(event_id, new_status) of every OrderStatusChanged of these orders, in topic order."""
    topic = f"{stack.topic_prefix}oms.orders.status"
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    try:
        metadata = await consumer._client.fetch_all_metadata()  # a fresh consumer knows no topic yet
        tps = [TopicPartition(topic, p) for p in (metadata.partitions_for_topic(topic) or set())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for rec in records:
                    env = orjson.loads(rec.value)
                    if env.get("event_type") == "OrderStatusChanged" and env.get("order_id") in order_ids:
                        found[env["order_id"]].append((env["event_id"], env["payload"]["new_status"]))
    finally:
        await consumer.stop()
    return found


async def dead_letters(stack: Stack) -> dict[str, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.startswith(stack.topic_prefix) and t.endswith(".dlq")]
        counts = {}
        for t in topics:
            tps = [TopicPartition(t, p) for p in consumer.partitions_for_topic(t) or set()]
            begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            if n := sum(end[tp] - begin[tp] for tp in tps):
                counts[t] = n
        return counts
    finally:
        await consumer.stop()


async def run_checks(stack: Stack, load: Load, statuses: dict[str, str]) -> dict[str, tuple[int, list[str]]]:
    placed = {p.order_id: p for p in load.placed.values()}
    ids = list(placed)
    out: dict[str, tuple[int, list[str]]] = {}
    lost = [o for o in ids if o not in statuses]
    out["orders lost"] = (len(lost), lost[:10])
    wanted = final(load)
    stuck = [f"{o}: {s}" for o, s in statuses.items() if s not in wanted[o]]
    out["orders stuck"] = (len(stuck), stuck[:10])

    stock = await fetch(stack, "inventory", "SELECT sku, on_hand, reserved FROM stock WHERE location_id = $1 "
                        "AND sku = ANY($2::text[])", LOCATION, load.skus)
    reservations = await fetch(stack, "inventory", "SELECT order_id::text, status, allocations FROM reservations "
                               "WHERE order_id = ANY($1::uuid[])", ids)
    held: dict[str, int] = defaultdict(int)
    for r in reservations:
        if r["status"] == "reserved":
            for a in orjson.loads(r["allocations"]):
                if a["location_id"] == LOCATION:
                    held[a["sku"]] += a["quantity"]
    oversold = sum(max(0, held[r["sku"]] - r["on_hand"]) for r in stock)
    out["oversold units"] = (oversold, [f"{r['sku']}: on hand {r['on_hand']}, held {held[r['sku']]}" for r in stock
                                        if held[r["sku"]] > r["on_hand"]])
    by_order = {r["order_id"]: r["status"] for r in reservations}
    # confirmed: held; shipped (and delivered, returned): committed; cancelled or rejected: neither
    expect = {"confirmed": "reserved",
              **{s: "committed" for s in RANK if RANK["shipped"] <= RANK[s] < RANK["cancelled"]}}
    wrong = [f"{o}: order {s}, reservation {by_order.get(o)}" for o, s in statuses.items()
             if (s in FINAL or s == RETURNED) and expect.get(s) != (by_order.get(o) if by_order.get(o) in
                                                                   ("reserved", "committed") else None)]
    out["wrongly reserved"] = (len(wrong), wrong[:10])

    dups = [f"stock {r['sku']}: reserved {r['reserved']} but reservations hold {held[r['sku']]}" for r in stock
            if r["reserved"] != held[r["sku"]]]  # a reservation applied or released twice
    dups += [f"order {r['order_id']}: {r['n']} shipments" for r in await fetch(
        stack, "fulfilment", "SELECT order_id::text, count(*) AS n FROM shipments WHERE order_id = ANY($1::uuid[]) "
        "GROUP BY order_id HAVING count(*) > 1", ids)]
    dups += [f"order {r['order_id']}: {r['n']} stock movements {r['reason']} of {r['sku']}" for r in await fetch(
        stack, "inventory", "SELECT order_id::text, sku, reason, count(*) AS n FROM stock_movements "
        "WHERE order_id = ANY($1::uuid[]) GROUP BY order_id, sku, reason HAVING count(*) > 1", ids)]
    dups += [f"Idempotency-Key retried: {load.mismatched_retries} answered with another order"] * (
        load.mismatched_retries > 0)
    out["duplicated effects"] = (len(dups), dups[:10])

    events = await status_events(stack, set(ids))
    regressions, twice, resent = status_findings(events, statuses)
    out["status regressions"] = (len(regressions), regressions[:10])
    out["status announced twice (distinct events)"] = (len(twice), twice[:10])
    out["status events resent (same event id)"] = (resent, [])
    dlq = await dead_letters(stack)
    out["dead letters"] = (sum(dlq.values()), [f"{t}: {n}" for t, n in dlq.items()])
    return out
