"""Order capture throughput and latency against a bare FastAPI + asyncpg endpoint on the same machine.

Both servers are processes of this benchmark (never the ones `make up` started), each with a fresh
database, driven by the same wrk settings and the same order body. Reported per endpoint: accepted
orders per second (201s only), latency p50/p99, errors, and the CPU its server process and its
PostgreSQL backends spent per order; then the ratio capture/bare against the goal of 0.8. The
capture run is checked afterwards: every accepted order is in its database, and its outbox is drained
to Kafka (the relay marks a row sent only after Kafka acknowledged it; the topic's end offsets must
have grown by at least the number of orders).
"""

import os
import pstats
import secrets
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.env import (
    RESULTS_DIR,
    TOPIC_PREFIX,
    Context,
    CpuMeter,
    Server,
    fetchval,
    free_port,
    http_json,
    machine_info,
    recreate_database,
    run_async,
    say,
)
from bench.load import WrkResult, ensure_wrk, run_wrk, wrk_version
from bench.orders import order_body

NAME = "capture"
DESCRIPTION = "order capture (POST /v1/orders) vs a bare FastAPI + asyncpg insert: orders/s, p50, p99"
GOAL = 0.8
CAPTURE_DB = "bench_order_capture"
BARE_DB = "bench_bare"
ORDERS_TOPIC = TOPIC_PREFIX + "oms.orders.events"
DRAIN_TIMEOUT_S = 60.0
# The outbox holds only unsent rows (published ones are deleted) and parked ones (refused by Kafka).
UNSENT_SQL = "SELECT count(*) FROM outbox WHERE parked_at IS NULL"
SETTLE_S = 1.0  # after wrk stops, requests still in flight on the server finish


def add_arguments(parser: Any) -> None:
    parser.add_argument("--profile", action="store_true",
                        help="capture: run order capture under cProfile and print where its time goes "
                             "(slows it down: its figures are then not comparable)")
    parser.add_argument("--capture-env", action="append", default=[], metavar="NAME=VALUE",
                        help="capture: one more environment variable for the order-capture process, for "
                             "experiments (e.g. OUTBOX_RELAY_ENABLED=false); repeatable; recorded in the figures")


def run(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    extra_env = capture_env(args.capture_env)
    wrk = ensure_wrk()
    machine = machine_info(ctx.pg_admin_dsn)
    say(f"recreating databases {CAPTURE_DB} and {BARE_DB}")
    capture_dsn = recreate_database(ctx, CAPTURE_DB)
    bare_dsn = recreate_database(ctx, BARE_DB)
    admin_token = secrets.token_urlsafe(24)
    prof_path = RESULTS_DIR / f"capture-{ctx.stamp}.prof"

    capture_port, bare_port = free_port(), free_port()
    capture_argv = ["-m", "order_capture"]
    if args.profile:
        prof_path.parent.mkdir(parents=True, exist_ok=True)
        capture_argv = ["-m", "cProfile", "-o", str(prof_path), "-m", "order_capture"]
    capture = Server("order-capture", capture_argv, {
        "SERVICE_NAME": "order-capture", "HTTP_PORT": str(capture_port), "DATABASE_URL": capture_dsn,
        "KAFKA_BOOTSTRAP_SERVERS": ctx.kafka_bootstrap, "OMS_ADMIN_TOKEN": admin_token,
        "KAFKA_GROUP_SUFFIX": ".bench", "KAFKA_TOPIC_PREFIX": TOPIC_PREFIX, "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_KEY_PER_SECOND": "0",  # one key sends everything: no per-key limit in the measure
        **extra_env,
    }, capture_port, stop_signal=signal.SIGINT if args.profile else signal.SIGTERM)
    bare = Server("bare", ["-m", "bench.bare"], {
        "SERVICE_NAME": "bench-bare", "HTTP_PORT": str(bare_port), "DATABASE_URL": bare_dsn,
        "LOG_LEVEL": "WARNING",
    }, bare_port)

    with ExitStack() as stack:
        for server in (capture, bare):
            stack.callback(server.stop)
            server.start()
        capture.wait_ready("/readyz")
        bare.wait_ready("/readyz")

        status, created = http_json("POST", f"{capture.url}/v1/admin/api-keys", {"channel": "web"},
                                    {"Authorization": f"Bearer {admin_token}"})
        if status != 201:
            raise RuntimeError(f"creating a channel API key answered {status}: {created}")
        api_key = created["key"]
        offsets_before = kafka_end_offsets(ctx.kafka_bootstrap, ORDERS_TOPIC)
        preflight(capture.url + "/v1/orders", api_key, ctx.nonce)
        preflight(bare.url + "/orders", api_key, ctx.nonce)

        results = {}
        for label, server, path, dsn, table, database in (
            ("bare", bare, "/orders", bare_dsn, "bare_orders", BARE_DB),
            ("capture", capture, "/v1/orders", capture_dsn, "orders", CAPTURE_DB),
        ):
            results[label] = measure(ctx, wrk, label, server, server.url + path, api_key, dsn, table, database,
                                     drain=label == "capture" and relay_enabled(extra_env))

        checks = check_capture(ctx, capture_dsn, results["capture"], offsets_before)
        stack.close()
    if args.profile:
        print_profile(prof_path)

    figures = {
        "benchmark": NAME,
        "started_at": ctx.started_at.isoformat(),
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
                     "threads": args.threads, "load_generator": wrk_version(wrk), "profiled": args.profile,
                     "capture_env": extra_env},
        "machine": machine,
        "capture": results["capture"],
        "bare": results["bare"],
        "ratio_capture_to_bare": ratio(results),
        "goal": GOAL,
        "goal_met": ratio(results) >= GOAL,
        "capture_checks": checks,
    }
    if args.profile:
        figures["profile"] = str(prof_path)
    print_table(figures)
    return figures


def capture_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--capture-env wants NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def relay_enabled(env: dict[str, str]) -> bool:
    return env.get("OUTBOX_RELAY_ENABLED", os.environ.get("OUTBOX_RELAY_ENABLED", "true")).lower() not in (
        "0", "false", "no", "off")


def preflight(url: str, api_key: str, nonce: str) -> None:
    """One order through the same body and headers as the Lua script: a refusal here would otherwise
    show up only as wrk's non-2xx count."""
    external_id = f"BENCH-{nonce}-preflight"
    status, body = http_json("POST", url, order_body(external_id),
                             {"Authorization": f"Bearer {api_key}", "Idempotency-Key": external_id})
    if status != 201:
        raise RuntimeError(f"POST {url} answered {status}, not 201: {body}")


def measure(ctx: Context, wrk: str, label: str, server: Server, url: str, api_key: str, dsn: str,
            table: str, database: str, *, drain: bool) -> dict[str, Any]:
    args = ctx.args
    common = {"token": api_key, "connections": args.connections, "threads": args.threads}
    if args.warmup > 0:
        say(f"{label}: warm-up {args.warmup:g}s")
        run_wrk(wrk, url, nonce=f"{ctx.nonce}w", duration=args.warmup, echo=False, **common)
        time.sleep(SETTLE_S)
    rows_before = fetchval(dsn, f"SELECT count(*) FROM {table}")
    meter = CpuMeter(ctx.pg_admin_dsn, {"server": server.pid}, [database])
    say(f"{label}: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency {url}")
    meter.start()
    result: WrkResult = run_wrk(wrk, url, nonce=f"{ctx.nonce}m", duration=args.duration, **common)
    cpu = meter.stop()
    figures: dict[str, Any] = {"url": url, **result.as_dict(), "cpu_s": cpu}
    if table == "orders":  # capture: how far behind the relay was when the load stopped, and the drain
        figures["outbox_unsent_at_stop"] = fetchval(dsn, UNSENT_SQL)
        figures["outbox_drain_s"] = wait_outbox_drained(dsn) if drain else None
    time.sleep(SETTLE_S)
    figures["rows_stored"] = fetchval(dsn, f"SELECT count(*) FROM {table}") - rows_before
    accepted = max(result.accepted, 1)
    figures["server_cpu_ms_per_order"] = round(cpu["server"] * 1000 / accepted, 3)
    figures["postgres_cpu_ms_per_order"] = round(cpu["postgres_backends"] * 1000 / accepted, 3)
    return figures


def wait_outbox_drained(dsn: str) -> float | None:
    """Seconds until the outbox has no unsent row (None if not within DRAIN_TIMEOUT_S)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < DRAIN_TIMEOUT_S:
        if fetchval(dsn, UNSENT_SQL) == 0:
            return round(time.monotonic() - t0, 2)
        time.sleep(0.1)
    return None


def kafka_end_offsets(bootstrap: str, topic: str) -> int:
    """The sum of the topic's partitions' end offsets (messages ever written to it)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def go() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        partitions = [p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"]]
        if not partitions:
            raise RuntimeError(f"Kafka topic {topic} not found")
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return sum(ends.values())
        finally:
            await consumer.stop()

    return run_async(go(), timeout=30)


def check_capture(ctx: Context, dsn: str, capture: dict[str, Any], offsets_before: int) -> dict[str, Any]:
    accepted = capture["accepted"]
    stored = capture["rows_stored"]
    in_flight = stored - accepted
    total_orders = fetchval(dsn, "SELECT count(*) FROM orders")
    unsent = fetchval(dsn, UNSENT_SQL)
    published = kafka_end_offsets(ctx.kafka_bootstrap, ORDERS_TOPIC) - offsets_before
    checks = {
        "orders_accepted": accepted,
        "orders_stored": stored,
        # wrk stops counting at the deadline; requests then in flight still complete on the server.
        "stored_minus_accepted": in_flight,
        "orders_match": 0 <= in_flight <= ctx.args.connections,
        "orders_in_database": total_orders,
        "outbox_drain_s": capture.get("outbox_drain_s"),
        "outbox_unsent_after": unsent,
        "kafka_messages_added": published,
        # Other producers of the topic (a dev order-capture) can only add to the count.
        "kafka_has_every_order": unsent == 0 and published >= total_orders,
    }
    checks["ok"] = checks["orders_match"] and checks["kafka_has_every_order"]
    return checks


def ratio(results: dict[str, dict[str, Any]]) -> float:
    bare = results["bare"]["accepted_per_s"]
    return round(results["capture"]["accepted_per_s"] / bare, 3) if bare else 0.0


def print_table(f: dict[str, Any]) -> None:
    s, m = f["settings"], f["machine"]
    print()
    profiled = "  [PROFILED: capture slowed down]" if s["profiled"] else ""
    if s["capture_env"]:
        profiled += "  [capture env: " + " ".join(f"{k}={v}" for k, v in s["capture_env"].items()) + "]"
    print(f"Order capture vs bare FastAPI + asyncpg: {s['connections']} connections, {s['duration_s']:g}s "
          f"(warm-up {s['warmup_s']:g}s), wrk -t{s['threads']}{profiled}")
    print(f"machine: nproc {m['nproc']}, {m['cpu_model']}, load average at start "
          f"{' '.join(f'{v:.2f}' for v in m['loadavg_at_start'])}")
    print()
    head = (f"{'endpoint':<28}{'accepted/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
            f"{'server CPU':>12}{'PG CPU':>9}{'machine':>9}")
    print(head)
    print(f"{'':<28}{'':>11}{'':>9}{'':>9}{'':>8}{'ms/order':>12}{'ms/order':>9}{'busy':>9}")
    print("-" * len(head))
    for label, name in (("capture", "capture  POST /v1/orders"), ("bare", "bare     POST /orders")):
        r = f[label]
        print(f"{name:<28}{r['accepted_per_s']:>11.1f}{r['latency_ms']['p50']:>9.2f}{r['latency_ms']['p99']:>9.2f}"
              f"{r['errors']:>8}{r['server_cpu_ms_per_order']:>12.3f}{r['postgres_cpu_ms_per_order']:>9.3f}"
              f"{r['cpu_s']['machine_busy_fraction']:>9.0%}")
    print()
    verdict = "met" if f["goal_met"] else "NOT met"
    print(f"ratio capture/bare (accepted/s): {f['ratio_capture_to_bare']:.2f}   goal >= {f['goal']:.2f}: {verdict}")
    c = f["capture_checks"]
    if c["outbox_drain_s"] is not None:
        drain = f"{c['outbox_drain_s']:.2f}s"
    elif not relay_enabled(s["capture_env"]):
        drain = "never (relay disabled)"
    else:
        drain = f"NOT within {DRAIN_TIMEOUT_S:.0f}s"
    print(f"capture checks: {c['orders_stored']} orders stored for {c['orders_accepted']} accepted "
          f"(+{c['stored_minus_accepted']} in flight at stop) {'ok' if c['orders_match'] else 'MISMATCH'}; "
          f"outbox backlog at stop {f['capture'].get('outbox_unsent_at_stop')}, drained in {drain}; "
          f"Kafka {ORDERS_TOPIC} +{c['kafka_messages_added']} messages for {c['orders_in_database']} orders "
          f"{'ok' if c['kafka_has_every_order'] else 'MISSING'}")
    print()


def print_profile(path: Path, top: int = 35) -> None:
    if not path.exists():
        say(f"no profile at {path} (the service did not exit cleanly)")
        return
    print(f"\ncProfile of order capture ({path}), top {top} by own time:")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(f"top {top} by cumulative time:")
    stats.sort_stats("cumulative").print_stats(top)
