"""The run: the services' processes on fresh databases and bench topics, their set-up through the
operator APIs, the measurement (load.py) and the figures (report.py)."""

import asyncio
import os
import secrets
import signal
import subprocess
import time
from contextlib import ExitStack
from typing import Any

from bench.e2e.curve import curve_path, plot_curve, points, print_curve, run_raw
from bench.e2e.edges import MAIL_SINK, edge_env, mail_sink, run_secrets, wait_listening
from bench.e2e.load import Load
from bench.e2e.pgstats import postgres_aux_pids
from bench.e2e.plan import LOCATION, NAME, QUANTITY, SAGA_TOPICS, SKU_COUNT, STOCK, Plan, service_table, skus
from bench.e2e.procstats import kafka_pid
from bench.e2e.report import goals, print_profile, print_table
from bench.env import (
    RESULTS_DIR,
    ROOT,
    TOPIC_PREFIX,
    Context,
    Server,
    Unmeasurable,
    fetch,
    free_port,
    http_json,
    machine_info,
    recreate_database,
    reset_bench_topics,
    run_async,
    say,
)


def run(ctx: Context) -> dict[str, Any]:
    plan = Plan.from_args(ctx.args)
    machine = machine_info(ctx.pg_admin_dsn)
    revision = code_revision()
    shared = foreign_consumers(ctx.kafka_bootstrap)
    if shared:
        listing = "; ".join(f"{g} ({', '.join(t)})" for g, t in sorted(shared.items()))
        message = (f"other consumer groups read the benchmark's topics: {listing} (another benchmark run?). "
                   f"They would process this benchmark's orders too and answer its commands. Stop them "
                   f"first, or pass --e2e-allow-shared-topics to measure anyway.")
        if not plan.allow_shared:
            raise Unmeasurable(message)
        say(f"WARNING: {message}")

    else:
        say(f"deleting the topics of earlier runs ({TOPIC_PREFIX}*)")
        reset_bench_topics(ctx.kafka_bootstrap)
    table = service_table()
    admin_token = secrets.token_urlsafe(24)
    group_suffix = f".bench-{ctx.nonce}"
    prof_path = RESULTS_DIR / f"e2e-{ctx.stamp}-{plan.profile}.prof" if plan.profile else None
    servers: dict[str, Server] = {}
    databases: dict[str, str] = {}
    sink = mail_sink() if plan.edges else None
    link_secret, carrier_secret = run_secrets()
    for name in plan.services:
        module, db = table[name]
        databases[name] = f"bench_{db}"
        say(f"recreating database {databases[name]}")
        dsn = recreate_database(ctx, databases[name])
        for setting, value in plan.pg_settings.items():
            fetch(ctx.pg_admin_dsn, f'ALTER DATABASE "{databases[name]}" SET {setting} = \'{value}\'')
        for replica in range(plan.replicas.get(name, 1)):
            key = name if replica == 0 else f"{name}#{replica + 1}"  # one service, one consumer group
            port = free_port()
            profiled = name == plan.profile and replica == 0
            argv = ["-m", module]
            if profiled:
                assert prof_path is not None
                prof_path.parent.mkdir(parents=True, exist_ok=True)
                argv = ["-m", "cProfile", "-o", str(prof_path), "-m", module]
            env = {
                "SERVICE_NAME": name, "HTTP_PORT": str(port), "DATABASE_URL": dsn,
                "KAFKA_BOOTSTRAP_SERVERS": ctx.kafka_bootstrap, "OMS_ADMIN_TOKEN": admin_token,
                "KAFKA_GROUP_SUFFIX": group_suffix, "KAFKA_AUTO_OFFSET_RESET": "latest", "LOG_LEVEL": "WARNING",
                # Every service on the benchmark's topics, and no span export, whatever the shell has.
                "KAFKA_TOPIC_PREFIX": TOPIC_PREFIX, "ZIPKIN_ENDPOINT": "",
                # One channel key sends every order: the per-key rate limit would cap the measure.
                "RATE_LIMIT_PER_KEY_PER_SECOND": "0",
                **edge_env(name, sink.port if sink else None, link_secret, carrier_secret),
                **plan.env_all, **plan.env_by_service[name],
            }
            servers[key] = Server(key.replace("#", "-"), argv, env, port,
                                  stop_signal=signal.SIGINT if profiled else signal.SIGTERM)

    with ExitStack() as stack:
        stack.callback(stop_all, list(servers.values()) + ([sink] if sink else []))
        if sink is not None:
            wait_listening(sink.start())
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready("/readyz", timeout=120)
        api_key = set_up(servers, admin_token)
        pids = {name: s.pid for name, s in servers.items()}
        if sink is not None:
            pids[MAIL_SINK] = sink.pid
        broker = kafka_pid(ctx.kafka_bootstrap)
        if broker is not None:
            pids["kafka"] = broker
        pg_aux = postgres_aux_pids(ctx.pg_admin_dsn)
        pids.update({f"pg-aux:{pid}": pid for pid in pg_aux})
        load = Load(ctx, plan, servers, api_key, pids, list(databases.values()))
        try:
            results = asyncio_run(load.run(), timeout=plan.max_seconds())
        except TimeoutError as exc:
            raise RuntimeError(f"the measurement did not finish within {plan.max_seconds():.0f}s") from exc
        tails = {name: s.tail(5) for name, s in servers.items() if _has_errors(s)}
        stack.close()
    raw = None
    if plan.raw:
        try:
            raw = run_raw(ctx, plan, stop_all, asyncio_run)
        except Exception as exc:  # noqa: BLE001 - the baseline is beside the figures: say so and go on
            say(f"WARNING: the raw baseline failed ({type(exc).__name__}: {exc})")
    if prof_path is not None:
        print_profile(prof_path, plan.profile or "")

    figures = {
        "benchmark": NAME,
        "started_at": ctx.started_at.isoformat(),
        "settings": {
            "max_window_s": plan.duration, "warmup_s": plan.warmup, "latency_window_s": plan.latency_duration,
            "rate_given": plan.rate, "unconfirmed_cap": plan.window, "connections": plan.connections,
            "drain_s": plan.drain, "skus": SKU_COUNT, "lines_per_order": 1, "units_per_line": QUANTITY,
            "service_env_all": plan.env_all,
            "service_env": {k: v for k, v in plan.env_by_service.items() if v},
            "postgres_settings": plan.pg_settings, "analyze_after_warmup": plan.analyze,
            "vacuum_before_rate_phases": plan.vacuum,
            "replicas": plan.replicas, "services": list(plan.services), "edges": plan.edges,
            "group_suffix": group_suffix, "profiled": plan.profile,
            "load_generator": "python asyncio streams + uvloop, HTTP/1.1 keep-alive, prebuilt requests",
            "confirmed_time": "Kafka record timestamp of OrderStatusChanged(confirmed) on oms.orders.status",
            "shared_topic_consumers": shared,
        },
        "machine": {**machine, "loadavg_at_end": list(os.getloadavg())},
        "code": revision,
        **results,
        "service_log_errors": tails,
        "raw": raw,
    }
    figures["goals"] = goals(figures)
    print_table(figures)
    print_curve(figures)
    figures["cost_curve"] = {"oms": points(figures), "raw": points(raw) if raw else None}
    plot = plot_curve(figures, curve_path(ctx.stamp))
    if plot is not None:
        say(f"cost curve plotted to {plot.relative_to(ROOT)}")
    return figures


def code_revision() -> dict[str, Any]:
    """The commit measured, and whether the working tree differed from it."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None,
            "changed_files": [line[3:] for line in git("status", "--porcelain").splitlines()]}


def stop_all(servers: list[Server]) -> None:
    """Signals every live server at once, then waits for each (a stuck one is killed)."""
    live = [s for s in servers if s.proc is not None and s.proc.poll() is None]
    for s in live:
        say(f"stopping {s.name} (pid {s.pid})")
        s.proc.send_signal(s.stop_signal)  # type: ignore[union-attr]
    deadline = time.monotonic() + 25
    for s in live:
        assert s.proc is not None
        try:
            s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()


def _has_errors(server: Server) -> bool:
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return False
    return '"level": "error"' in text or '"level":"error"' in text or "Traceback" in text


def asyncio_run(coro: Any, timeout: float) -> Any:
    import uvloop

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(bounded())


def set_up(servers: dict[str, Server], admin_token: str) -> str:
    """One location, SKU_COUNT SKUs with STOCK units there, a channel API key; returns the key."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    inv = servers["inventory"].url

    def call(method: str, url: str, body: Any, ok: tuple[int, ...] = (200, 201)) -> Any:
        status, answer = http_json(method, url, body, admin)
        if status not in ok:
            raise RuntimeError(f"{method} {url} answered {status}: {answer}")
        return answer

    call("PUT", f"{inv}/v1/locations/{LOCATION}", {"name": "Bench DC", "country": "PT"})
    for sku in skus():
        call("PUT", f"{inv}/v1/skus/{sku}", {"allow_backorder": False, "low_stock_threshold": 0, "returnable": True})
        call("PUT", f"{inv}/v1/locations/{LOCATION}/stock/{sku}", {"on_hand": STOCK, "reason": "bench"})
    created = call("POST", f"{servers['order-capture'].url}/v1/admin/api-keys", {"channel": "web"}, (201,))
    say(f"set up: location {LOCATION}, {SKU_COUNT} SKUs with {STOCK} units each, a channel key for web")
    return created["key"]



# --- the infrastructure around the services ---------------------------------------------------------


def foreign_consumers(bootstrap: str) -> dict[str, list[str]]:
    """Consumer groups with live members subscribed to any of SAGA_TOPICS: group -> those topics."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

    async def go() -> dict[str, list[str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="oms-bench")
        await admin.start()
        try:
            groups = [g[0] for g in await admin.list_consumer_groups()]
            found: dict[str, list[str]] = {}
            if not groups:
                return found
            # One group per request: aiokafka fails to decode Kafka 4's answer about several at once.
            answers = await asyncio.gather(*(admin.describe_consumer_groups([g]) for g in groups))
            for resp in (r for answer in answers for r in answer):
                for group in resp.to_object()["groups"]:
                    topics: set[str] = set()
                    for member in group.get("members", []):
                        try:
                            meta = ConsumerProtocolMemberMetadata.decode(member["member_metadata"])
                        except Exception:  # noqa: BLE001, S112 - not a plain Kafka consumer: not ours to judge
                            continue
                        topics |= set(meta.subscription)
                    hit = sorted(t for t in topics if t in SAGA_TOPICS)
                    if group.get("members") and hit:
                        found[group["group"]] = hit
            return found
        finally:
            await admin.close()

    try:
        return run_async(go(), timeout=30)
    except Exception as exc:  # noqa: BLE001 - the check is a courtesy: say so and go on
        say(f"WARNING: could not check for other consumers of the saga's topics ({type(exc).__name__}: {exc})")
        return {}
