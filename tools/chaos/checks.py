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
RANK = {"pending": 0, "awaiting_payment": 1, "backordered": 1, "confirmed": 2, "partially_shipped": 3,
        "shipped": 4, "delivered": 5, "cancelled": 6, "rejected": 6}
# Any figure above 0 in these fails the run (a loss or a duplicate, or an order left half done).
FAILING = ("orders lost", "orders stuck", "oversold units", "wrongly reserved", "duplicated effects",
           "status regressions")


async def fetch(stack: Stack, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    db = stack.database(service)
    if db is None:
        return []
    conn = await asyncpg.connect(stack.dsn(db))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def settle(stack: Stack, load: Load, timeout: float) -> dict[str, str]:
    """Waits until every accepted order has a final status at order-capture (or the timeout); returns
    the statuses seen last."""
    ids = [p.order_id for p in load.placed.values()]
    deadline, statuses = time.monotonic() + timeout, {}
    while True:
        try:
            rows = await fetch(stack, "order-capture", "SELECT order_id::text, status FROM orders "
                               "WHERE order_id = ANY($1::uuid[])", ids)
            statuses = {r["order_id"]: r["status"] for r in rows}
        except (OSError, asyncpg.PostgresError):
            pass
        if (len(statuses) == len(ids) and set(statuses.values()) <= FINAL) or time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(1)


async def status_events(stack: Stack, order_ids: set[str]) -> dict[str, list[tuple[str, str]]]:
    """(event_id, new_status) of every OrderStatusChanged of these orders, in topic order."""
    topic = f"{stack.topic_prefix}oms.orders.status"
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    try:
        tps = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not tps:
            await consumer.force_metadata_update()  # type: ignore[attr-defined]
            tps = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while any(await consumer.position(tp) < end[tp] for tp in tps):
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for rec in records:
                    env = orjson.loads(rec.value)
                    if env.get("order_id") in order_ids:
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
    stuck = [f"{o}: {s}" for o, s in statuses.items() if s not in FINAL]
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
    wrong = [f"{o}: order {s}, reservation {by_order.get(o)}" for o, s in statuses.items()
             if s in FINAL and (s == "confirmed") != (by_order.get(o) == "reserved")]
    out["wrongly reserved"] = (len(wrong), wrong[:10])

    dups = [f"stock {r['sku']}: reserved {r['reserved']} but reservations hold {held[r['sku']]}" for r in stock
            if r["reserved"] != held[r["sku"]]]  # a reservation applied or released twice
    dups += [f"order {r['order_id']}: {r['n']} shipments" for r in await fetch(
        stack, "fulfilment", "SELECT order_id::text, count(*) AS n FROM shipments WHERE order_id = ANY($1::uuid[]) "
        "GROUP BY order_id HAVING count(*) > 1", ids)]
    dups += [f"order {r['order_id']}: {r['n']} {r['channel']} {r['what']}" for r in await fetch(
        stack, "notification", "SELECT order_id::text, channel, coalesce(template, event_type) AS what, count(*) AS n "
        "FROM notifications WHERE order_id = ANY($1::uuid[]) AND status = 'sent' "
        "GROUP BY order_id, channel, coalesce(template, event_type), subscription_id HAVING count(*) > 1", ids)]
    dups += [f"Idempotency-Key retried: {load.mismatched_retries} answered with another order"] * (
        load.mismatched_retries > 0)
    out["duplicated effects"] = (len(dups), dups[:10])

    events = await status_events(stack, set(ids))
    regressions, twice = [], []
    for order_id, seq in events.items():
        top, seen = -1, {}
        for event_id, status in seq:
            if RANK[status] < top:
                regressions.append(f"{order_id}: {' -> '.join(s for _, s in seq)}")
                break
            top = max(top, RANK[status])
            if status in seen and seen[status] != event_id:
                twice.append(f"{order_id}: {status}")
            seen[status] = event_id
        if seq and statuses.get(order_id) not in (None, seq[-1][1]):
            regressions.append(f"{order_id}: order-capture says {statuses[order_id]}, last event {seq[-1][1]}")
    out["status regressions"] = (len(regressions), regressions[:10])
    out["status announced twice (distinct events)"] = (len(twice), twice[:10])
    dlq = await dead_letters(stack)
    out["dead letters"] = (sum(dlq.values()), [f"{t}: {n}" for t, n in dlq.items()])
    return out
