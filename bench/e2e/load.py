"""The measurement: a reader of the status topic, a preflight order, the idle phase, the maximum
(closed loop) and the latency at a fixed rate (open loop)."""

import asyncio
import time
from typing import Any

import orjson

from bench import hops
from bench.e2e.client import HttpConn, Order, PhaseCounters, RequestFactory
from bench.e2e.figures import p99_by_second, pct, summarise, timeline
from bench.e2e.flames import flame_graphs
from bench.e2e.measure import Meter
from bench.e2e.pgstats import analyze, vacuum
from bench.e2e.plan import STATUS_TOPIC, Plan
from bench.env import ROOT, Context, Server, say


class Load:
    def __init__(self, ctx: Context, plan: Plan, servers: dict[str, Server], api_key: str, pids: dict[str, int],
                 databases: list[str], *, entry: str = "order-capture", hops: bool = True):
        self.ctx, self.plan, self.servers, self.pids, self.databases = ctx, plan, servers, pids, databases
        self.hops = hops  # split POST -> confirmed by the OMS's own messages (not for the raw baseline)
        capture = servers[entry]
        self.host, self.port = "127.0.0.1", capture.port
        self.requests = RequestFactory(self.host, self.port, api_key, ctx.nonce)
        self.orders: dict[str, Order] = {}
        self.early: dict[str, tuple[float, float, str, str | None]] = {}
        self.window: asyncio.Semaphore | None = None
        self.meter = Meter(ctx, servers, pids, databases)

    # --- the status topic ---

    async def consume_status(self, consumer: Any) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            seen = time.time()
            for records in batches.values():
                for rec in records:
                    self._on_status(rec, seen)

    def _on_status(self, rec: Any, seen: float) -> None:
        for key, value in rec.headers or ():
            if key == "event_type":
                if value != b"OrderStatusChanged":
                    return
                break
        env = orjson.loads(rec.value)
        payload = env.get("payload") or {}
        new = payload.get("new_status")
        if new not in ("confirmed", "rejected", "cancelled"):
            return
        order_id = env.get("order_id") or (rec.key or b"").decode()
        at = rec.timestamp / 1000.0
        order = self.orders.get(order_id)
        if order is None:
            if order_id not in self.early:
                self.early[order_id] = (at, seen, new, payload.get("reason"))
            return
        self._finish(order, at, seen, new, payload.get("reason"))

    def _finish(self, order: Order, at: float, seen: float, status: str, reason: str | None) -> None:
        if order.done is not None:
            return
        order.done, order.seen, order.status, order.reason = at, seen, status, reason
        if self.window is not None and order.phase.startswith("max"):
            self.window.release()

    def _placed(self, phase: str, sent: float, post_ms: float, status: int, body: bytes, counters: PhaseCounters,
                lag_ms: float = 0.0) -> bool:
        counters.posted += 1
        if status != 201:
            counters.error(str(status), body.decode(errors="replace"))
            return False
        order_id = orjson.loads(body)["order_id"]
        order = Order(phase, sent, post_ms, lag_ms)
        self.orders[order_id] = order
        early = self.early.pop(order_id, None)
        if early is not None:
            self._finish(order, *early)
        return True

    # --- the whole measurement ---

    async def run(self) -> dict[str, Any]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        # A long poll (Kafka's default 500 ms): a fetch returns as soon as a record arrives, and the
        # confirmation time is the record's own timestamp anyway. A short one (it was 20 ms) made this
        # reader alone send 50 fetches/s, Kafka CPU charged to the OMS's idle and low-rate figures.
        consumer = AIOKafkaConsumer(bootstrap_servers=self.ctx.kafka_bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=500, max_partition_fetch_bytes=4 * 1024 * 1024,
                                    client_id="oms-bench-e2e")
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(STATUS_TOPIC) or set()
            if not partitions:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - a topic just created
                partitions = consumer.partitions_for_topic(STATUS_TOPIC) or set()
            if not partitions:
                raise RuntimeError(f"Kafka topic {STATUS_TOPIC} not found")
            tps = [TopicPartition(STATUS_TOPIC, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
            reader = asyncio.create_task(self.consume_status(consumer), name="status-reader")
            try:
                return await self._measure(reader)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            await consumer.stop()

    async def _measure(self, reader: asyncio.Task) -> dict[str, Any]:
        await self.preflight(reader)
        results: dict[str, Any] = {"idle": await self.idle_phase(reader)}
        rate = self.plan.rate
        if not self.plan.skip_max:
            results["max"] = await self.max_phase(reader)
            if rate is None:
                rate = results["max"]["confirmed_per_s"] / 2
                if rate <= 0:
                    raise RuntimeError("no order was confirmed in the maximum phase")
        assert rate is not None
        results["latency"] = await self.rate_phase(reader, rate)
        results["latency"]["rate_source"] = "given (--e2e-rate)" if self.plan.rate is not None else "half the max"
        # The cost curve's other points: every rate not measured already, lowest first.
        for extra in sorted(r for r in set(self.plan.curve) if abs(r - rate) > 0.05):
            results.setdefault("rates", []).append(await self.rate_phase(reader, extra))
        return results

    async def preflight(self, reader: asyncio.Task) -> None:
        """One order through the whole saga before any load: a broken chain shows here, with the logs."""
        conn = HttpConn(self.host, self.port)
        counters = PhaseCounters()
        t0 = time.perf_counter()
        try:
            sent, status, body = await conn.exchange(self.requests.next())
        finally:
            conn.close()
        if not self._placed("preflight", sent, (time.perf_counter() - t0) * 1000, status, body, counters):
            raise RuntimeError(f"POST /v1/orders answered {status}: {body[:500]!r}")
        order_id = orjson.loads(body)["order_id"]
        order = self.orders[order_id]
        deadline = time.monotonic() + 60
        while order.done is None and time.monotonic() < deadline:
            if reader.done():
                reader.result()
            await asyncio.sleep(0.05)
        if order.status != "confirmed":
            logs = "\n".join(f"--- {n} ({s.log_path.relative_to(ROOT)}):\n{s.tail(15)}"
                             for n, s in self.servers.items())
            what = f"became {order.status} ({order.reason})" if order.status else "was not confirmed within 60s"
            raise RuntimeError(f"the preflight order {order_id} {what}; last lines of the services' logs:\n{logs}")
        say(f"preflight order confirmed in {(order.done - order.sent) * 1000:.0f} ms")

    async def idle_phase(self, reader: asyncio.Task, seconds: float = 5.0) -> dict[str, Any]:
        """What every process burns with no order at all (polling consumers, relays, the saga ticker)."""
        await self._sleep(1.0, reader, [])
        snap = await self.meter.snapshot()
        await self._sleep(seconds, reader, [])
        cpu = await self.meter.delta(snap)
        share = {k: round(v / cpu["wall_s"], 3) for k, v in cpu["cpu_s"].items()}
        say("idle: " + ", ".join(f"{k} {v * 100:.0f}%" for k, v in share.items()) + " of a core")
        return {"cpu": cpu, "cpu_share_of_core": share}

    # --- phase 1: maximum throughput ---

    async def max_phase(self, reader: asyncio.Task) -> dict[str, Any]:
        plan = self.plan
        say(f"max: closed loop, {plan.connections} connections, at most {plan.window} orders unconfirmed; "
            f"warm-up {plan.warmup:g}s, then {plan.duration:g}s measured")
        self.window = asyncio.Semaphore(plan.window)
        counters = PhaseCounters()
        stop = asyncio.Event()
        bounds: dict[str, float] = {}

        async def worker() -> None:
            conn = HttpConn(self.host, self.port)
            try:
                while True:
                    assert self.window is not None
                    await self.window.acquire()
                    if stop.is_set():
                        return
                    request = self.requests.next()
                    t0 = time.perf_counter()
                    try:
                        sent, status, body = await conn.exchange(request)
                    except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                        counters.posted += 1
                        counters.error(type(exc).__name__, str(exc))
                        self.window.release()
                        await asyncio.sleep(0.05)
                        continue
                    phase = "max" if "start" in bounds and sent >= bounds["start"] else "max-warmup"
                    if not self._placed(phase, sent, (time.perf_counter() - t0) * 1000, status, body, counters):
                        self.window.release()
            finally:
                conn.close()

        workers = [asyncio.create_task(worker()) for _ in range(plan.connections)]
        try:
            await self._sleep(plan.warmup, reader, workers)
            if plan.analyze:
                await asyncio.to_thread(analyze, self.ctx, self.databases)
            snap = await self.meter.snapshot()
            bounds["start"] = time.time()
            await self._sleep(plan.duration, reader, workers)
            bounds["end"] = time.time()
            stop.set()
            backlog = sum(1 for o in self.orders.values() if o.phase.startswith("max") and o.done is None)
            cpu = await self.meter.delta(snap)
            for _ in workers:
                self.window.release()
            await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), 30)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        drained_in, unconfirmed = await self.drain(("max", "max-warmup"), reader)
        self.window = None
        window_orders = [o for o in self.orders.values()
                         if o.phase == "max" and bounds["start"] <= o.sent < bounds["end"]]
        result = summarise(window_orders, bounds["end"] - bounds["start"], counters, cpu)
        result.update({
            "backlog_at_end": backlog, "drained_in_s": drained_in, "unconfirmed_after_drain": unconfirmed,
            "sustained": unconfirmed == 0,
            # A full window means orders waited for confirmations; otherwise the POSTs themselves (the
            # HTTP connections or order capture) set the pace, and the figure is not the saga's maximum.
            "limited_by": "confirmations (window full)" if backlog >= 0.8 * plan.window
            else "posting (HTTP connections or order capture): raise --e2e-connections",
            "confirmed_per_s": result["confirmed_in_window"] / (bounds["end"] - bounds["start"]),
            "per_second": timeline(self.orders.values(), bounds["start"], bounds["end"], ("max", "max-warmup")),
        })
        per5 = [sum(result["per_second"][i:i + 5]) / 5 for i in range(0, len(result["per_second"]) - 4, 5)]
        result["per_5s_min"] = round(min(per5), 1) if per5 else None
        result["per_5s_max"] = round(max(per5), 1) if per5 else None
        result["confirmed_per_s"] = round(result["confirmed_per_s"], 1)
        say(f"max: {result['confirmed_per_s']:.1f} confirmed orders/s; backlog {backlog} at the end, "
            f"{'drained in ' + format(drained_in, '.1f') + 's' if drained_in is not None else 'NOT drained'}")
        return result

    # --- phase 2: latency at a fixed rate ---

    async def rate_phase(self, reader: asyncio.Task, rate: float) -> dict[str, Any]:
        plan = self.plan
        if plan.vacuum:
            await asyncio.to_thread(vacuum, self.ctx, self.databases)
        say(f"latency: open loop at {rate:.1f} orders/s; warm-up {plan.warmup:g}s, then "
            f"{plan.latency_duration:g}s measured")
        counters = PhaseCounters()
        idle: list[HttpConn] = []
        opened = [0]
        limit = 256
        slots = asyncio.Semaphore(limit)
        tasks: set[asyncio.Task] = set()
        bounds: dict[str, float] = {}

        async def one(due_wall: float) -> None:
            async with slots:
                conn = idle.pop() if idle else HttpConn(self.host, self.port)
                if conn.writer is None:
                    opened[0] += 1
                request = self.requests.next()
                t0 = time.perf_counter()
                try:
                    sent, status, body = await conn.exchange(request)
                except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                    counters.posted += 1
                    counters.error(type(exc).__name__, str(exc))
                    conn.close()
                    return
                idle.append(conn)
                phase = "rate" if "start" in bounds and due_wall >= bounds["start"] else "rate-warmup"
                if "end" in bounds and due_wall >= bounds["end"]:
                    phase = "rate-after"
                self._placed(phase, sent, (time.perf_counter() - t0) * 1000, status, body, counters,
                             lag_ms=(sent - due_wall) * 1000)

        interval = 1.0 / rate
        t_wall0, t_mono0 = time.time(), time.monotonic()
        total = plan.warmup + plan.latency_duration
        n = 0
        snap_task: asyncio.Task | None = None
        analyze_task: asyncio.Task | None = None
        flames: list[tuple[Any, Any]] = []
        while True:
            due = n * interval
            if due >= total:
                break
            if analyze_task is None and plan.analyze and due >= plan.warmup / 2:
                # Half way through the warm-up, when the tables hold rows (before any, ANALYZE would make
                # the services plan for empty tables: sequential scans until autovacuum analyzes them).
                analyze_task = asyncio.create_task(asyncio.to_thread(analyze, self.ctx, self.databases))
            if snap_task is None and due >= plan.warmup:
                # Taken beside the schedule, not in its way (it reads /proc, PostgreSQL and /metrics).
                snap_task = asyncio.create_task(self.meter.snapshot())
                bounds["start"] = t_wall0 + due
                if self.plan.flame and rate in self.plan.curve:
                    flames = flame_graphs(self.ctx, self.servers, rate, plan.latency_duration)
            now = time.monotonic() - t_mono0
            if due > now:
                await asyncio.sleep(due - now)
            if reader.done():
                reader.result()
            task = asyncio.create_task(one(t_wall0 + due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        bounds["end"] = t_wall0 + total
        backlog = sum(1 for o in self.orders.values() if o.phase.startswith("rate") and o.done is None)
        if snap_task is None:
            snap_task = asyncio.create_task(self.meter.snapshot())
            bounds["start"] = time.time()
        cpu = await self.meter.delta(await snap_task)
        for proc, path in flames:
            if await asyncio.to_thread(proc.wait) == 0:
                say(f"flame graph written to {path.relative_to(ROOT)}")
        if analyze_task is not None:
            await analyze_task
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        for conn in idle:
            conn.close()
        drained_in, unconfirmed = await self.drain(("rate", "rate-warmup"), reader)
        window_orders = [o for o in self.orders.values() if o.phase == "rate"]
        span = bounds["end"] - bounds["start"]
        result = summarise(window_orders, span, counters, cpu)
        lags = sorted(o.lag_ms for o in window_orders)
        result.update({
            "rate": round(rate, 1), "sent_per_s": round(len(window_orders) / span, 1) if span else 0.0,
            "backlog_at_end": backlog, "drained_in_s": drained_in, "unconfirmed_after_drain": unconfirmed,
            "connections_opened": opened[0],
            "generator_lag_ms": {"p50": pct(lags, 50), "p99": pct(lags, 99),
                                 "max": round(lags[-1], 1) if lags else None},
            "per_second": timeline(self.orders.values(), bounds["start"], bounds["end"], ("rate", "rate-warmup")),
            "p99_ms_by_second_sent": p99_by_second(window_orders, bounds["start"], bounds["end"]),
        })
        lat = result["to_confirmed_ms"]
        say(f"latency: at {rate:.1f}/s POST -> confirmed p50 {lat['p50']} ms, p99 {lat['p99']} ms")
        if self.hops:
            sent = {oid: o.sent for oid, o in self.orders.items() if o.phase == "rate" and o.status == "confirmed"}
            result["hops_ms"] = hops.hop_table(sent, await hops.read_timestamps(self.ctx.kafka_bootstrap, set(sent)))
        for o in self.orders.values():  # a later phase at another rate counts only its own orders
            if o.phase.startswith("rate"):
                o.phase = "past-" + o.phase
        return result

    # --- helpers ---

    async def _sleep(self, seconds: float, reader: asyncio.Task, workers: list[asyncio.Task]) -> None:
        """Sleeps, failing early if the status reader or every worker died."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.5))
            if reader.done():
                reader.result()
            if workers and all(w.done() for w in workers):
                for w in workers:
                    w.result()
                raise RuntimeError("every load worker stopped")

    async def drain(self, phases: tuple[str, ...], reader: asyncio.Task) -> tuple[float | None, int]:
        """Waits up to plan.drain seconds for the phase's orders to reach a final status: (seconds it
        took or None, how many are still unconfirmed)."""
        t0 = time.monotonic()
        pending = [o for o in self.orders.values() if o.phase in phases and o.done is None]
        while True:
            pending = [o for o in pending if o.done is None]
            if not pending:
                return round(time.monotonic() - t0, 2), 0
            if time.monotonic() - t0 >= self.plan.drain:
                return None, len(pending)
            if reader.done():
                reader.result()
            await asyncio.sleep(0.1)
