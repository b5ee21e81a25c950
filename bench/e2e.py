"""End to end: orders per second carried from POST /v1/orders to `confirmed`, and the latency from the
POST to `confirmed` at a fixed rate of half that maximum.

The benchmark runs processes of its own of order-capture, orchestrator, inventory and fulfilment (never
the ones `make up` started), each on a fresh database `bench_<database of deploy/services.conf>`, on
topics of their own: the topics of CONTRACT.md with KAFKA_TOPIC_PREFIX=bench. (bench.oms.orders.events,
...), deleted at the start of every run, so the dev services never see the benchmark's orders and a run
starts empty. Their consumer groups are new (KAFKA_GROUP_SUFFIX=.bench-<nonce>). It sets them up
through the operator APIs (one location, a few SKUs with a billion units each, a channel API key), then:

1. Maximum throughput: a closed loop of HTTP connections posts orders while at most --e2e-window orders
   are posted and not yet confirmed, so orders go in exactly as fast as the system confirms them.
   After --e2e-warmup seconds, the figure is the number of orders whose POST was sent inside the next
   --e2e-duration seconds and that were confirmed, divided by that duration. Posting then stops, and
   the backlog must drain: the orders still unconfirmed --e2e-drain seconds later are reported (a
   maximum that leaves a backlog was not sustained).
2. Latency at a fixed rate (open loop): orders sent on a fixed schedule at half the measured maximum
   (or --e2e-rate) for --e2e-latency-duration seconds; POST -> confirmed p50/p90/p99/max, and the
   POST's own latency.

`confirmed` is read from oms.orders.status by the benchmark itself (OrderStatusChanged with new_status
`confirmed`, keyed by order id), consumed from the topic's end before any order is posted. Its time is
the record's Kafka timestamp: when the orchestrator's outbox relay produced it, whatever this process's
own consumer delay. The POST's time is taken just before its bytes are written to the socket.

The load generator is a small HTTP/1.1 client on asyncio streams with uvloop, over keep-alive
connections, with prebuilt request bytes: on this 2-core machine every millisecond of CPU it takes is
taken from the servers, and it costs a fraction of httpx per request (its own CPU is reported). wrk
cannot be used here: the time each order was sent must be matched to its order id.

CPU is accounted per process over each measured window (from /proc): each service, the Kafka broker of
the dev profile, the PostgreSQL backends serving the bench databases and PostgreSQL's own background
processes, the benchmark process itself, and the whole machine (the rest is other work on the machine).
Each service's /metrics gives its consumer batches in the window (count, mean size, time spent), and
PostgreSQL its activity per database (commits, rows written and read, WAL), all per confirmed order.

Options for experiments: --e2e-env (settings of the services), --e2e-pg (of the bench databases),
--e2e-replicas (several processes of a service), --e2e-profile (cProfile of one service). The figures
are printed as a table and returned to __main__, which writes bench/results/e2e-<UTC time>.json.
"""

import asyncio
import os
import pstats
import re
import resource
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import hops
from bench.env import (
    RESULTS_DIR,
    ROOT,
    TOPIC_PREFIX,
    Context,
    CpuMeter,
    Server,
    Unmeasurable,
    fetch,
    free_port,
    http_json,
    machine_cpu,
    machine_info,
    process_cpu_seconds,
    recreate_database,
    reset_bench_topics,
    run_async,
    say,
)
from tests.support.orders import new_order

NAME = "e2e"
DESCRIPTION = ("order saga end to end (POST /v1/orders -> confirmed on oms.orders.status): max orders/s "
               "sustained, then p50/p99 latency at half that rate")
GOAL_RATE = 300.0  # orders/s end to end
GOAL_P99_MS = 250.0  # POST -> confirmed at half the maximum

SERVICES = ("order-capture", "orchestrator", "inventory", "fulfilment")
STATUS_TOPIC = TOPIC_PREFIX + "oms.orders.status"
# What the saga's services consume: another consumer group with members on these (another benchmark
# run on the same Kafka) would also process the benchmark's orders (and answer its commands).
SAGA_TOPICS = tuple(TOPIC_PREFIX + t for t in (
    "oms.orders.events", "oms.inventory.commands", "oms.inventory.events", "oms.fulfilment.commands",
    "oms.fulfilment.events", "oms.orders.status"))
LOCATION = "BENCH-LIS"
SKU_COUNT = 4
STOCK = 1_000_000_000  # units per SKU: no order of a run can find it short
QUANTITY, UNIT_PRICE = 2, "19.90"
CONF = ROOT / "deploy" / "services.conf"
KAFKA_PID_FILE = ROOT / ".local" / "dev" / "run" / "kafka.pid"
_MARK = "@EXTERNAL_ID@"


def add_arguments(parser: Any) -> None:
    g = parser.add_argument_group("e2e (order saga end to end)")
    g.add_argument("--e2e-duration", type=float, default=60,
                   help="e2e: seconds of the maximum-throughput window (default 60)")
    g.add_argument("--e2e-warmup", type=float, default=5,
                   help="e2e: seconds of load before each measured window (default 5)")
    g.add_argument("--e2e-latency-duration", type=float, default=30,
                   help="e2e: seconds of the fixed-rate latency window (default 30)")
    g.add_argument("--e2e-rate", type=float, default=None,
                   help="e2e: orders/s of the latency phase (default: half the measured maximum)")
    g.add_argument("--e2e-window", type=int, default=1000,
                   help="e2e: maximum phase, at most this many orders posted and not yet confirmed (default 1000)")
    g.add_argument("--e2e-connections", type=int, default=32,
                   help="e2e: HTTP connections of the maximum phase (default 32; the fixed-rate phase opens "
                        "up to 256 as needed)")
    g.add_argument("--e2e-drain", type=float, default=30,
                   help="e2e: seconds after each window for the backlog to be confirmed (default 30)")
    g.add_argument("--e2e-skip-max", action="store_true",
                   help="e2e: skip the maximum phase (needs --e2e-rate)")
    g.add_argument("--e2e-env", action="append", default=[], metavar="[SERVICE:]NAME=VALUE",
                   help="e2e: one more environment variable for every service, or for one (e.g. "
                        "orchestrator:CONSUMER_MAX_RECORDS=1000); repeatable; recorded in the figures")
    g.add_argument("--e2e-pg", action="append", default=[], metavar="NAME=VALUE",
                   help="e2e: a PostgreSQL setting for the bench databases (ALTER DATABASE ... SET), for "
                        "experiments (e.g. synchronous_commit=off); repeatable; recorded in the figures")
    g.add_argument("--e2e-replicas", action="append", default=[], metavar="SERVICE=N",
                   help="e2e: run N processes (1 to 3, one consumer group: the topics have 3 partitions) of "
                        "orchestrator, inventory or fulfilment; repeatable")
    g.add_argument("--e2e-no-analyze", action="store_true",
                   help="e2e: do not ANALYZE the bench databases after each warm-up (measure a fresh database, "
                        "with the plans cached before autovacuum first analyzes it)")
    g.add_argument("--e2e-profile", choices=SERVICES, default=None,
                   help="e2e: run this service under cProfile and print where its time goes (slows it down)")
    g.add_argument("--e2e-allow-shared-topics", action="store_true",
                   help="e2e: run even when other consumers read the benchmark's topics (another run: their "
                        "answers can reject or double-process its orders: figures are then unreliable)")


def check_arguments(args: Any, parser: Any) -> None:
    """Called by __main__ after parsing: a wrong e2e option is a usage error (exit status 2)."""
    try:
        Plan.from_args(args)
    except ValueError as exc:
        parser.error(str(exc))


# --- settings of a run ----------------------------------------------------------------------------


@dataclass
class Plan:
    duration: float
    warmup: float
    latency_duration: float
    rate: float | None
    window: int
    connections: int
    drain: float
    skip_max: bool
    env_all: dict[str, str]
    env_by_service: dict[str, dict[str, str]]
    profile: str | None
    allow_shared: bool
    pg_settings: dict[str, str]
    analyze: bool = True
    replicas: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: Any) -> "Plan":
        env_all: dict[str, str] = {}
        env_by: dict[str, dict[str, str]] = {s: {} for s in SERVICES}
        for item in args.e2e_env:
            target, name, value = _parse_env(item)
            (env_by[target] if target else env_all)[name] = value
        plan = cls(args.e2e_duration, args.e2e_warmup, args.e2e_latency_duration, args.e2e_rate, args.e2e_window,
                   args.e2e_connections, args.e2e_drain, args.e2e_skip_max, env_all, env_by, args.e2e_profile,
                   args.e2e_allow_shared_topics, {}, not args.e2e_no_analyze)
        for item in args.e2e_pg:
            name, sep, value = item.partition("=")
            if not sep or not re.fullmatch(r"[a-z_][a-z0-9_.]*", name) or not re.fullmatch(r"[A-Za-z0-9_.]+", value):
                raise ValueError(f"--e2e-pg wants name=value (a PostgreSQL setting), not {item!r}")
            plan.pg_settings[name] = value
        for item in args.e2e_replicas:
            name, sep, value = item.partition("=")
            if name not in SERVICES[1:] or not sep or value not in ("1", "2", "3"):
                raise ValueError(f"--e2e-replicas wants SERVICE=N (SERVICE one of {', '.join(SERVICES[1:])}, "
                                 f"N 1 to 3), not {item!r}")
            plan.replicas[name] = int(value)
        problems = []
        if plan.duration < 1 or plan.latency_duration < 1:
            problems.append("--e2e-duration and --e2e-latency-duration must be >= 1")
        if plan.warmup < 0 or plan.drain < 1:
            problems.append("--e2e-warmup must be >= 0 and --e2e-drain >= 1")
        if plan.window < 1 or plan.connections < 1 or plan.connections > 1024:
            problems.append("--e2e-window must be >= 1 and --e2e-connections between 1 and 1024")
        if plan.rate is not None and not 0 < plan.rate <= 20_000:
            problems.append("--e2e-rate must be in (0, 20000]")
        if plan.skip_max and plan.rate is None:
            problems.append("--e2e-skip-max needs --e2e-rate")
        if problems:
            raise ValueError("; ".join(problems))
        return plan

    def max_seconds(self) -> float:
        """An upper bound of the measuring part (everything after the processes are ready)."""
        phase1 = 0 if self.skip_max else self.warmup + self.duration + self.drain
        phase2 = self.warmup + self.latency_duration + self.drain
        return 120 + phase1 + phase2 + 60


def _parse_env(item: str) -> tuple[str | None, str, str]:
    pair, target = item, None
    head, colon, rest = item.partition(":")
    if colon and head in SERVICES:
        target, pair = head, rest
    name, sep, value = pair.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"--e2e-env wants [SERVICE:]NAME=VALUE (SERVICE one of {', '.join(SERVICES)}), "
                         f"not {item!r}")
    return target, name, value


def service_table() -> dict[str, tuple[str, str]]:
    """name -> (Python module, database) from deploy/services.conf."""
    table = {}
    for line in CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, module, _port, db = line.split()
            table[name] = (module, db)
    missing = set(SERVICES) - set(table)
    if missing:
        raise RuntimeError(f"{CONF.relative_to(ROOT)} does not list {sorted(missing)}")
    return table


# --- the run --------------------------------------------------------------------------------------


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
    for name in SERVICES:
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
                **plan.env_all, **plan.env_by_service[name],
            }
            servers[key] = Server(key.replace("#", "-"), argv, env, port,
                                  stop_signal=signal.SIGINT if profiled else signal.SIGTERM)

    with ExitStack() as stack:
        stack.callback(stop_all, list(servers.values()))
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready("/readyz", timeout=120)
        api_key = set_up(servers, admin_token)
        pids = {name: s.pid for name, s in servers.items()}
        kafka_pid = dev_kafka_pid()
        if kafka_pid is not None:
            pids["kafka"] = kafka_pid
        pg_aux = postgres_aux_pids(ctx.pg_admin_dsn)
        pids.update({f"pg-aux:{pid}": pid for pid in pg_aux})
        load = Load(ctx, plan, servers, api_key, pids, list(databases.values()))
        try:
            results = asyncio_run(load.run(), timeout=plan.max_seconds())
        except TimeoutError as exc:
            raise RuntimeError(f"the measurement did not finish within {plan.max_seconds():.0f}s") from exc
        tails = {name: s.tail(5) for name, s in servers.items() if _has_errors(s)}
        stack.close()
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
            "replicas": plan.replicas,
            "group_suffix": group_suffix, "profiled": plan.profile,
            "load_generator": "python asyncio streams + uvloop, HTTP/1.1 keep-alive, prebuilt requests",
            "confirmed_time": "Kafka record timestamp of OrderStatusChanged(confirmed) on oms.orders.status",
            "shared_topic_consumers": shared,
        },
        "machine": {**machine, "loadavg_at_end": list(os.getloadavg())},
        "code": revision,
        **results,
        "service_log_errors": tails,
    }
    figures["goals"] = goals(figures)
    print_table(figures)
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


def skus() -> list[str]:
    return [f"BENCH-SKU-{i}" for i in range(1, SKU_COUNT + 1)]


# --- the infrastructure around the services ---------------------------------------------------------


def dev_kafka_pid() -> int | None:
    try:
        pid = int(KAFKA_PID_FILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_cpu_seconds(pid) is not None else None


def postgres_aux_pids(pg_admin_dsn: str) -> list[int]:
    """PostgreSQL's own processes (WAL writer, checkpointer, background writer, ...): they work for
    every database, and the commits of the benchmark are most of their work."""
    rows = fetch(pg_admin_dsn, "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'")
    return [r["pid"] for r in rows if process_cpu_seconds(r["pid"]) is not None]


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


def process_table() -> dict[int, tuple[str, float]]:
    """Every live process of the machine: pid -> (a short label, user + system CPU seconds)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        cpu = process_cpu_seconds(pid)
        if cpu is None:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        found[pid] = (_label([a.decode(errors="replace") for a in argv if a]), cpu)
    return found


def context_switches(pid: int) -> tuple[int, int] | None:
    """(voluntary, involuntary) context switches of a live process so far (all its threads): a
    voluntary one is a wait (for a socket, a lock, a timer), an involuntary one a preemption."""
    vol = inv = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                inv += int(line.split()[1])
    return vol, inv


_TICK = os.sysconf("SC_CLK_TCK")


def user_system(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """name -> (user, system) CPU seconds so far of live processes."""
    out = {}
    for name, pid in pids.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        out[name] = (int(fields[11]) / _TICK, int(fields[12]) / _TICK)
    return out


def switches_of(groups: dict[str, list[int]]) -> dict[str, dict[int, tuple[int, int]]]:
    return {name: {pid: cs for pid in pids if (cs := context_switches(pid)) is not None}
            for name, pids in groups.items()}


def switch_delta(before: dict[str, dict[int, tuple[int, int]]],
                 after: dict[str, dict[int, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    out = {}
    for name, pids in after.items():
        vol = inv = 0
        for pid, (v, i) in pids.items():
            v0, i0 = before.get(name, {}).get(pid, (0, 0))
            vol, inv = vol + v - v0, inv + i - i0
        out[name] = (vol, inv)
    return out


def _label(argv: list[str]) -> str:
    if not argv:
        return "[kernel]"
    if argv[0].startswith("postgres:"):  # "postgres: <user> <database> <client> <state>"
        return " ".join(argv[0].split()[:3])
    if argv[0].endswith("java"):
        main = next((a for a in argv if a in ("kafka.Kafka", "-jar")), "")
        conf = next((a for a in argv[::-1] if a.endswith((".properties", ".jar"))), "")
        return f"java {main} {conf.replace(str(ROOT) + '/', '')}".strip()
    if len(argv) > 1 and argv[1] == "-m":
        return f"{Path(argv[0]).name} -m {' '.join(argv[2:4])}"
    return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv[:3]))[:70]


PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated",
               "tup_deleted", "blks_read")
WAL_COUNTERS = ("wal_records", "wal_bytes", "wal_write", "wal_sync")


def analyze(ctx: Context, databases: list[str]) -> None:
    """ANALYZE every bench database. Tables created empty by the services' migrations have no
    statistics yet, and the plans the services' prepared statements cache then (e.g. a sequential scan
    of the outbox, every saga id of a type read per batch) stay until autovacuum analyzes them, about a
    minute in: a database that has been running for a while has its statistics."""
    import asyncpg

    async def go() -> None:
        for db in databases:
            conn = await asyncpg.connect(ctx.dsn_for(db), timeout=5)
            try:
                await conn.execute("ANALYZE")
            finally:
                await conn.close()

    run_async(go(), timeout=60)


def pg_table_reads(ctx: Context, databases: list[str]) -> dict[str, float]:
    """Cumulative rows read per table (sequential scans) and per index (index entries read), over the
    bench databases: {'<db> <table or index> seq|idx': rows}."""
    out: dict[str, float] = {}
    for db in databases:
        rows = fetch(ctx.dsn_for(db), """
            SELECT relname AS name, 'seq' AS kind, seq_tup_read AS n FROM pg_stat_user_tables
            UNION ALL
            SELECT indexrelname, 'idx', idx_tup_read FROM pg_stat_user_indexes""")
        for r in rows:
            out[f"{db.removeprefix('bench_')} {r['name']} {r['kind']}"] = float(r["n"] or 0)
    return out


def pg_counters(pg_admin_dsn: str, databases: list[str]) -> dict[str, dict[str, float]]:
    """Cumulative activity counters of the bench databases, and the cluster's WAL counters."""
    rows = fetch(pg_admin_dsn, f"SELECT datname, {', '.join(PG_COUNTERS)} FROM pg_stat_database "
                               f"WHERE datname = ANY($1::text[])", databases)
    out = {r["datname"]: {k: float(r[k]) for k in PG_COUNTERS} for r in rows}
    try:
        wal = fetch(pg_admin_dsn, f"SELECT {', '.join(WAL_COUNTERS)} FROM pg_stat_wal")
        out["(wal)"] = {k: float(wal[0][k]) for k in WAL_COUNTERS}
    except Exception:  # noqa: BLE001 - pg_stat_wal is PostgreSQL 14+
        pass
    return out


# --- the load and the measurements ------------------------------------------------------------------


class Order:
    __slots__ = ("phase", "sent", "post_ms", "done", "seen", "status", "reason", "lag_ms")

    def __init__(self, phase: str, sent: float, post_ms: float, lag_ms: float = 0.0):
        self.phase, self.sent, self.post_ms, self.lag_ms = phase, sent, post_ms, lag_ms
        self.done: float | None = None  # Kafka timestamp of the final status (s since the epoch)
        self.seen: float | None = None  # when this process read it
        self.status: str | None = None
        self.reason: str | None = None


class RequestFactory:
    """The bytes of one POST /v1/orders: a unique external id and Idempotency-Key per order, the SKUs in
    turn, the valid body of tests/support/orders.py otherwise."""

    def __init__(self, host: str, port: int, api_key: str, nonce: str):
        self.head = (f"POST /v1/orders HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {api_key}\r\n"
                     f"Content-Type: application/json\r\n").encode()
        amount = f"{QUANTITY * float(UNIT_PRICE):.2f}"
        self.parts = []
        for sku in skus():
            body = new_order(external_id=_MARK, lines=[{"sku": sku, "quantity": QUANTITY, "unit_price": UNIT_PRICE}])
            body["payment"]["amount"] = amount
            before, _, after = orjson.dumps(body).decode().partition(_MARK)
            self.parts.append((before.encode(), after.encode()))
        self.prefix = f"BENCH-{nonce}-"
        self.count = 0

    def next(self) -> bytes:
        self.count += 1
        ident = f"{self.prefix}{self.count}".encode()
        before, after = self.parts[self.count % len(self.parts)]
        length = len(before) + len(ident) + len(after)
        return b"".join((self.head, b"Idempotency-Key: ", ident, b"\r\nContent-Length: ", str(length).encode(),
                         b"\r\n\r\n", before, ident, after))


class HttpConn:
    """One keep-alive HTTP/1.1 connection: a request, then its response (Content-Length bodies only)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> tuple[float, int, bytes]:
        """(wall time the request was written, status, body). A connection the server closed while idle
        is opened again and the request sent once more: the same Idempotency-Key makes that safe."""
        for attempt in (1, 2):
            if self.writer is None:
                await self.open()
            assert self.reader is not None and self.writer is not None
            sent = time.time()
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                at = head.lower().find(b"\r\ncontent-length:")
                if at < 0:
                    raise ConnectionError(f"response without Content-Length: {head[:200]!r}")
                end = head.find(b"\r\n", at + 2)
                body = await self.reader.readexactly(int(head[at + 17:end]))
                if b"\r\nconnection: close" in head.lower():
                    self.close()
                return sent, status, body
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@dataclass
class PhaseCounters:
    posted: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_sample: str | None = None

    def error(self, key: str, sample: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1
        if self.error_sample is None:
            self.error_sample = sample[:300]


class Load:
    def __init__(self, ctx: Context, plan: Plan, servers: dict[str, Server], api_key: str, pids: dict[str, int],
                 databases: list[str]):
        self.ctx, self.plan, self.servers, self.pids, self.databases = ctx, plan, servers, pids, databases
        capture = servers["order-capture"]
        self.host, self.port = "127.0.0.1", capture.port
        self.requests = RequestFactory(self.host, self.port, api_key, ctx.nonce)
        self.orders: dict[str, Order] = {}
        self.early: dict[str, tuple[float, float, str, str | None]] = {}
        self.window: asyncio.Semaphore | None = None

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

        consumer = AIOKafkaConsumer(bootstrap_servers=self.ctx.kafka_bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=20, max_partition_fetch_bytes=4 * 1024 * 1024,
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
        snap = await self.snapshot()
        await self._sleep(seconds, reader, [])
        cpu = await self.snapshot_delta(snap)
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
            snap = await self.snapshot()
            bounds["start"] = time.time()
            await self._sleep(plan.duration, reader, workers)
            bounds["end"] = time.time()
            stop.set()
            backlog = sum(1 for o in self.orders.values() if o.phase.startswith("max") and o.done is None)
            cpu = await self.snapshot_delta(snap)
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
        result = self.summarise(window_orders, bounds["end"] - bounds["start"], counters, cpu)
        result.update({
            "backlog_at_end": backlog, "drained_in_s": drained_in, "unconfirmed_after_drain": unconfirmed,
            "sustained": unconfirmed == 0,
            # A full window means orders waited for confirmations; otherwise the POSTs themselves (the
            # HTTP connections or order capture) set the pace, and the figure is not the saga's maximum.
            "limited_by": "confirmations (window full)" if backlog >= 0.8 * plan.window
            else "posting (HTTP connections or order capture): raise --e2e-connections",
            "confirmed_per_s": result["confirmed_in_window"] / (bounds["end"] - bounds["start"]),
            "per_second": self.timeline(bounds["start"], bounds["end"], ("max", "max-warmup")),
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
                snap_task = asyncio.create_task(self.snapshot())
                bounds["start"] = t_wall0 + due
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
            snap_task = asyncio.create_task(self.snapshot())
            bounds["start"] = time.time()
        cpu = await self.snapshot_delta(await snap_task)
        if analyze_task is not None:
            await analyze_task
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        for conn in idle:
            conn.close()
        drained_in, unconfirmed = await self.drain(("rate", "rate-warmup"), reader)
        window_orders = [o for o in self.orders.values() if o.phase == "rate"]
        span = bounds["end"] - bounds["start"]
        result = self.summarise(window_orders, span, counters, cpu)
        lags = sorted(o.lag_ms for o in window_orders)
        result.update({
            "rate": round(rate, 1), "sent_per_s": round(len(window_orders) / span, 1) if span else 0.0,
            "backlog_at_end": backlog, "drained_in_s": drained_in, "unconfirmed_after_drain": unconfirmed,
            "connections_opened": opened[0],
            "generator_lag_ms": {"p50": pct(lags, 50), "p99": pct(lags, 99),
                                 "max": round(lags[-1], 1) if lags else None},
            "per_second": self.timeline(bounds["start"], bounds["end"], ("rate", "rate-warmup")),
            "p99_ms_by_second_sent": self.p99_by_second(window_orders, bounds["start"], bounds["end"]),
        })
        lat = result["to_confirmed_ms"]
        say(f"latency: at {rate:.1f}/s POST -> confirmed p50 {lat['p50']} ms, p99 {lat['p99']} ms")
        sent = {oid: o.sent for oid, o in self.orders.items() if o.phase == "rate" and o.status == "confirmed"}
        result["hops_ms"] = hops.hop_table(sent, await hops.read_timestamps(self.ctx.kafka_bootstrap, set(sent)))
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

    async def snapshot(self) -> dict[str, Any]:
        meter = CpuMeter(self.ctx.pg_admin_dsn, self.pids, self.databases)
        metrics = await asyncio.gather(*(asyncio.to_thread(scrape, s.url) for s in self.servers.values()))
        pg = await asyncio.to_thread(pg_counters, self.ctx.pg_admin_dsn, self.databases)
        reads = await asyncio.to_thread(pg_table_reads, self.ctx, self.databases)
        procs = await asyncio.to_thread(process_table)
        switches = switches_of(await asyncio.to_thread(self._switch_groups))
        split = user_system(self._named_pids())
        backends = await asyncio.to_thread(self._backend_cpu)
        await asyncio.to_thread(meter.start)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"meter": meter, "metrics": dict(zip(self.servers, metrics, strict=True)), "wall": time.monotonic(),
                "self_cpu": usage.ru_utime + usage.ru_stime, "machine": machine_cpu(),
                "loadavg": os.getloadavg(), "pg": pg, "procs": procs, "reads": reads, "switches": switches,
                "split": split, "backends": backends}

    async def snapshot_delta(self, snap: dict[str, Any]) -> dict[str, Any]:
        used = await asyncio.to_thread(snap["meter"].stop)
        switches = switch_delta(snap["switches"], switches_of(await asyncio.to_thread(self._switch_groups)))
        split_now = user_system(self._named_pids())
        backends_now = await asyncio.to_thread(self._backend_cpu)
        backend_cpu = {db: round(sum(cpu - snap["backends"].get(db, {}).get(pid, 0.0) for pid, cpu in pids.items()), 3)
                       for db, pids in backends_now.items()}
        system_share = {}
        for name, (u1, s1) in split_now.items():
            u0, s0 = snap["split"].get(name, (u1, s1))
            if (u1 - u0) + (s1 - s0) > 0:
                system_share[name] = round((s1 - s0) / ((u1 - u0) + (s1 - s0)), 2)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy, total = machine_cpu()
        wall = time.monotonic() - snap["wall"]
        procs = await asyncio.to_thread(process_table)
        metrics = await asyncio.gather(*(asyncio.to_thread(scrape, s.url) for s in self.servers.values()))
        pg = await asyncio.to_thread(pg_counters, self.ctx.pg_admin_dsn, self.databases)
        reads = await asyncio.to_thread(pg_table_reads, self.ctx, self.databases)
        read_delta = {k: v - snap["reads"].get(k, 0.0) for k, v in reads.items()}
        top_reads = dict(sorted(((k, v) for k, v in read_delta.items() if v > 0), key=lambda kv: -kv[1])[:8])
        ours = set(self.pids.values()) | {os.getpid()} | set(await asyncio.to_thread(self._backend_pids))
        after = dict(zip(self.servers, metrics, strict=True))
        cpu = {name: round(sum(v for k, v in used.items() if k.split("#")[0] == name), 3) for name in SERVICES}
        if "kafka" in used:
            cpu["kafka"] = used["kafka"]
        cpu["postgres_backends"] = used["postgres_backends"]
        cpu["postgres_aux"] = round(sum(v for k, v in used.items() if k.startswith("pg-aux:")), 3)
        cpu["bench_client"] = round(usage.ru_utime + usage.ru_stime - snap["self_cpu"], 3)
        machine_busy = busy - snap["machine"][0]
        others: dict[str, float] = {}
        for pid, (label, cpu_now) in procs.items():
            if pid in ours:
                continue
            before = snap["procs"].get(pid)
            delta = cpu_now - (before[1] if before and before[0] == label else 0.0)
            if delta > 0:
                others[label] = others.get(label, 0.0) + delta
        top_others = dict(sorted(((k, round(v, 2)) for k, v in others.items()), key=lambda kv: -kv[1])[:6])
        return {
            "wall_s": round(wall, 2), "cpu_s": cpu, "machine_busy_s": round(machine_busy, 2),
            "machine_busy_fraction": round(machine_busy / (total - snap["machine"][1]), 3)
            if total > snap["machine"][1] else 0.0,
            "loadavg_at_start": [round(v, 2) for v in snap["loadavg"]],
            "loadavg_at_end": [round(v, 2) for v in os.getloadavg()],
            "consumers": {name: consumer_delta(snap["metrics"][name], after[name], wall) for name in self.servers},
            "other_processes_cpu_s": top_others,
            "context_switches": switches,
            "system_time_share": system_share,
            "postgres_backend_cpu_s": backend_cpu,
            "postgres_rows_read": top_reads,
            "postgres": {db: {k: v - snap["pg"].get(db, {}).get(k, 0.0) for k, v in counters.items()}
                         for db, counters in pg.items()},
        }

    def _named_pids(self) -> dict[str, int]:
        return {name: pid for name, pid in self.pids.items() if not name.startswith("pg-aux:")}

    def _switch_groups(self) -> dict[str, list[int]]:
        groups = {name: [pid] for name, pid in self.pids.items() if not name.startswith("pg-aux:")}
        groups["postgres_backends"] = self._backend_pids()
        return groups

    def _backend_cpu(self) -> dict[str, dict[int, float]]:
        """database -> {backend pid: CPU seconds so far}."""
        rows = fetch(self.ctx.pg_admin_dsn,
                     "SELECT pid, datname FROM pg_stat_activity WHERE datname = ANY($1::text[])", self.databases)
        out: dict[str, dict[int, float]] = {db: {} for db in self.databases}
        for r in rows:
            cpu = process_cpu_seconds(r["pid"])
            if cpu is not None:
                out[r["datname"]][r["pid"]] = cpu
        return out

    def _backend_pids(self) -> list[int]:
        rows = fetch(self.ctx.pg_admin_dsn, "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])",
                     self.databases)
        return [r["pid"] for r in rows]

    def summarise(self, orders: list[Order], span: float, counters: PhaseCounters,
                  cpu: dict[str, Any]) -> dict[str, Any]:
        confirmed = [o for o in orders if o.status == "confirmed" and o.done is not None]
        failed: dict[str, int] = {}
        for o in orders:
            if o.status and o.status != "confirmed":
                key = f"{o.status}:{o.reason}"
                failed[key] = failed.get(key, 0) + 1
        to_confirmed = sorted((o.done - o.sent) * 1000 for o in confirmed)  # type: ignore[operator]
        to_seen = sorted((o.seen - o.sent) * 1000 for o in confirmed)  # type: ignore[operator]
        post = sorted(o.post_ms for o in orders)
        n = max(len(confirmed), 1)
        per_order = {k: round(v * 1000 / n, 3) for k, v in cpu["cpu_s"].items()}
        core_share = {k: round(v / cpu["wall_s"], 3) if cpu["wall_s"] else 0.0 for k, v in cpu["cpu_s"].items()}
        return {
            "window_s": round(span, 2), "posted": counters.posted, "http_errors": counters.errors,
            "http_error_sample": counters.error_sample, "accepted_in_window": len(orders),
            "confirmed_in_window": len(confirmed), "not_confirmed_final": failed,
            "to_confirmed_ms": dist(to_confirmed), "to_confirmed_seen_by_bench_ms": dist(to_seen),
            "post_ms": dist(post), "cpu": cpu, "cpu_ms_per_order": per_order, "cpu_share_of_core": core_share,
            "cpu_accounted_ms_per_order": round(sum(per_order.values()), 3),
            "postgres_per_order": {db: {k: round(v / n, 2) for k, v in c.items()}
                                   for db, c in cpu["postgres"].items()},
            "postgres_rows_read_per_order": {k: round(v / n, 1) for k, v in cpu["postgres_rows_read"].items()},
            "postgres_backend_cpu_ms_per_order": {db: round(v * 1000 / n, 3)
                                                  for db, v in cpu["postgres_backend_cpu_s"].items()},
            "context_switches_per_order": {k: [round(v / n, 1), round(i / n, 1)]
                                           for k, (v, i) in cpu["context_switches"].items()},
            "machine_busy_ms_per_order": round(cpu["machine_busy_s"] * 1000 / n, 3),
        }

    @staticmethod
    def p99_by_second(orders: list[Order], start: float, end: float) -> list[float | None]:
        """p99 of POST -> confirmed of the orders sent in each second of the window: a stall shows as
        a few bad seconds, steady queueing as every second being high."""
        seconds: list[list[float]] = [[] for _ in range(max(1, int(end - start)))]
        for o in orders:
            i = int(o.sent - start)
            if o.status == "confirmed" and o.done is not None and 0 <= i < len(seconds):
                seconds[i].append((o.done - o.sent) * 1000)
        return [pct(sorted(v), 99) for v in seconds]

    def timeline(self, start: float, end: float, phases: tuple[str, ...]) -> list[int]:
        """Confirmations per second of the window, by their Kafka time."""
        seconds = max(1, int(end - start))
        counts = [0] * seconds
        for o in self.orders.values():
            if o.phase in phases and o.status == "confirmed" and o.done is not None and start <= o.done < end:
                i = int(o.done - start)
                if i < seconds:
                    counts[i] += 1
        return counts


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    k = max(0, min(len(values) - 1, int(-(-len(values) * p // 100)) - 1))
    return round(values[k], 1)


def dist(values: list[float]) -> dict[str, float | None]:
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90), "p99": pct(values, 99),
            "max": round(values[-1], 1) if values else None,
            "mean": round(sum(values) / len(values), 1) if values else None}


# --- /metrics -----------------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^(oms_consumer_batch_seconds_(?:count|sum)|oms_consumer_messages_total)\{([^}]*)\}\s+(\S+)$')


def scrape(base_url: str) -> dict[str, float]:
    """The consumer samples of a service's /metrics: {'<metric>|<labels>': value}."""
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            found[f"{m.group(1)}|{m.group(2)}"] = float(m.group(3))
    return found


def consumer_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    """Per consumer of a service over the window: batches, messages applied, mean batch size and time,
    and the share of the window its (serial) consumer loop spent applying batches."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        metric, labels = key.split("|", 1)
        name = re.search(r'consumer="([^"]*)"', labels)
        if not name:
            continue
        c = out.setdefault(name.group(1), {"batches": 0.0, "batch_s": 0.0, "applied": 0.0, "other": 0.0})
        delta = value - before.get(key, 0.0)
        if metric.endswith("_count"):
            c["batches"] += delta
        elif metric.endswith("_sum"):
            c["batch_s"] += delta
        elif 'outcome="applied"' in labels:
            c["applied"] += delta
        else:
            c["other"] += delta
    for c in out.values():
        b = c["batches"]
        c["mean_batch_size"] = round((c["applied"] + c["other"]) / b, 1) if b else None
        c["mean_batch_ms"] = round(c["batch_s"] * 1000 / b, 1) if b else None
        c["busy_fraction"] = round(c["batch_s"] / wall, 3) if wall else None
        c["batch_s"] = round(c["batch_s"], 2)
        for k in ("batches", "applied", "other"):
            c[k] = int(c[k])
    return out


# --- the report ---------------------------------------------------------------------------------------


def goals(f: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"rate_goal": GOAL_RATE, "p99_goal_ms": GOAL_P99_MS}
    if "max" in f:
        m = f["max"]
        out["rate"] = m["confirmed_per_s"]
        out["rate_met"] = m["confirmed_per_s"] >= GOAL_RATE and m["sustained"]
    lat = f["latency"]
    out["p99_ms"] = lat["to_confirmed_ms"]["p99"]
    out["p99_at_half_max"] = lat["rate_source"] == "half the max"
    out["p99_met"] = (lat["to_confirmed_ms"]["p99"] is not None and lat["to_confirmed_ms"]["p99"] < GOAL_P99_MS
                      and lat["unconfirmed_after_drain"] == 0)
    return out


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _row(label: str, d: dict[str, Any]) -> str:
    return (f"  {label:<34}{_fmt(d['p50']):>9}{_fmt(d['p90']):>9}{_fmt(d['p99']):>9}{_fmt(d['max']):>9}"
            f"{d['n']:>9}")


CPU_ROWS = (("order-capture", "order-capture"), ("orchestrator", "orchestrator"), ("inventory", "inventory"),
            ("fulfilment", "fulfilment"), ("kafka", "Kafka broker (dev)"),
            ("postgres_backends", "PostgreSQL backends (bench dbs)"),
            ("postgres_aux", "PostgreSQL WAL writer etc."), ("bench_client", "bench load generator"))


def print_table(f: dict[str, Any]) -> None:
    s, m, g = f["settings"], f["machine"], f["goals"]
    print()
    extra = ""
    if s["profiled"]:
        extra += f"  [PROFILED: {s['profiled']} slowed down]"
    env = {**{f"*:{k}": v for k, v in s["service_env_all"].items()},
           **{f"{svc}:{k}": v for svc, e in s["service_env"].items() for k, v in e.items()}}
    if env:
        extra += "  [env: " + " ".join(f"{k}={v}" for k, v in env.items()) + "]"
    if not s["analyze_after_warmup"]:
        extra += "  [no ANALYZE: fresh-database plans]"
    if s["replicas"]:
        extra += "  [processes: " + " ".join(f"{k}x{v}" for k, v in s["replicas"].items()) + "]"
    if s["postgres_settings"]:
        extra += "  [PostgreSQL: " + " ".join(f"{k}={v}" for k, v in s["postgres_settings"].items()) + "]"
    if s["shared_topic_consumers"]:
        extra += "  [SHARED TOPICS: other consumers were active]"
    print(f"Order saga end to end: POST /v1/orders -> OrderStatusChanged(confirmed) on {STATUS_TOPIC}{extra}")
    print(f"machine: nproc {m['nproc']}, {m['cpu_model']}; load average at start "
          f"{' '.join(f'{v:.2f}' for v in m['loadavg_at_start'])}, at end "
          f"{' '.join(f'{v:.2f}' for v in m['loadavg_at_end'])}")
    phases = [(k, f[k]) for k in ("max", "latency") if k in f]
    if "max" in f:
        x = f["max"]
        print()
        print(f"1. Maximum: closed loop, {s['connections']} connections, at most {s['unconfirmed_cap']} orders "
              f"unconfirmed; {x['window_s']:g}s measured after {s['warmup_s']:g}s warm-up "
              f"(load average {' '.join(map(str, x['cpu']['loadavg_at_start']))} -> "
              f"{' '.join(map(str, x['cpu']['loadavg_at_end']))})")
        drained = (f"drained in {x['drained_in_s']:.1f}s" if x["drained_in_s"] is not None
                   else f"NOT drained: {x['unconfirmed_after_drain']} unconfirmed {s['drain_s']:g}s after the window")
        print(f"  confirmed orders/s (POST sent in the window): {x['confirmed_per_s']:.1f}  "
              f"[{x['confirmed_in_window']} of {x['accepted_in_window']} accepted; per 5 s "
              f"{_fmt(x['per_5s_min'])}..{_fmt(x['per_5s_max'])}/s]")
        print(f"  backlog when posting stopped: {x['backlog_at_end']} (pace set by {x['limited_by']}), {drained}; "
              f"HTTP errors: "
              f"{sum(x['http_errors'].values())}; not confirmed (final): {x['not_confirmed_final'] or 0}")
        print(f"  {'':<34}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'n':>9}")
        print(_row("POST -> confirmed (ms, saturated)", x["to_confirmed_ms"]))
        print(_row("POST 201 (ms)", x["post_ms"]))
    if "latency" in f:
        y = f["latency"]
        print()
        print(f"2. Latency: open loop at {y['rate']:.1f} orders/s ({y['rate_source']}); {y['window_s']:g}s measured "
              f"after {s['warmup_s']:g}s warm-up (load average {' '.join(map(str, y['cpu']['loadavg_at_start']))} -> "
              f"{' '.join(map(str, y['cpu']['loadavg_at_end']))})")
        drained = (f"drained in {y['drained_in_s']:.1f}s" if y["drained_in_s"] is not None
                   else f"NOT drained: {y['unconfirmed_after_drain']} unconfirmed")
        print(f"  sent {y['accepted_in_window']} ({y['sent_per_s']:.1f}/s), confirmed {y['confirmed_in_window']}; "
              f"backlog at the end {y['backlog_at_end']}, {drained}; HTTP errors {sum(y['http_errors'].values())}; "
              f"generator lag p99 {_fmt(y['generator_lag_ms']['p99'])} ms")
        print(f"  {'':<34}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'n':>9}")
        print(_row("POST -> confirmed (ms)", y["to_confirmed_ms"]))
        print(_row("POST -> confirmed seen here (ms)", y["to_confirmed_seen_by_bench_ms"]))
        print(_row("POST 201 (ms)", y["post_ms"]))
        if y.get("hops_ms"):
            print("  where the time goes (Kafka timestamps of the messages on the way):")
            for label, d in y["hops_ms"].items():
                print(_row(f"  {label}", d) + f"  {d['service']}")
        if y.get("p99_ms_by_second_sent"):
            print("  p99 (ms) of the orders sent in each second: "
                  + " ".join("-" if v is None else f"{v:.0f}" for v in y["p99_ms_by_second_sent"]))

    print()
    idle = f.get("idle")
    head = f"  {'CPU per confirmed order':<34}"
    sub = f"  {'':<34}"
    for name, _ in phases:
        head += f"{'max' if name == 'max' else 'latency':>22}"
        sub += f"{'ms/order':>11}{'% core':>11}"
    if idle:
        head += f"{'idle':>11}"
        sub += f"{'% core':>11}"
    print(head)
    print(sub)
    for key, label in CPU_ROWS:
        if not any(key in p["cpu_ms_per_order"] for _, p in phases):
            continue
        line = f"  {label:<34}"
        for _, p in phases:
            share = _pct(p["cpu_share_of_core"].get(key))
            line += f"{_fmt(p['cpu_ms_per_order'].get(key), '.3f'):>11}{_fmt(share):>11}"
        if idle:
            line += f"{_fmt(_pct(idle['cpu_share_of_core'].get(key))):>11}"
        print(line)
    for label, fn in (
        ("all of the above", lambda p: (p["cpu_accounted_ms_per_order"],
                                        sum(p["cpu_share_of_core"].values()))),
        ("machine busy (every process)", lambda p: (p["machine_busy_ms_per_order"],
                                                    p["cpu"]["machine_busy_s"] / p["cpu"]["wall_s"])),
    ):
        line = f"  {label:<34}"
        for _, p in phases:
            ms, share = fn(p)
            line += f"{ms:>11.3f}{share * 100:>11.1f}"
        print(line)
    for name, p in phases:
        print(f"  {name}: context switches per order (waits/preemptions): " + "; ".join(
            f"{k} {v:g}/{i:g}" for k, (v, i) in p["context_switches_per_order"].items()))
        print(f"  {name}: share of CPU in the kernel: " + "; ".join(
            f"{k} {v * 100:.0f}%" for k, v in p["cpu"]["system_time_share"].items()))
    for name, p in phases:
        wall = p["cpu"]["wall_s"]
        other = p["cpu"]["machine_busy_s"] - sum(p["cpu"]["cpu_s"].values())
        print(f"  {name}: other work on the machine {other:.1f} CPU-s in {wall:.0f}s "
              f"({other / wall * 100:.0f}% of a core); busiest: "
              + ", ".join(f"{k} {v * 100:.0f}%" for k, v in sorted(p["cpu_share_of_core"].items(),
                                                                   key=lambda kv: -kv[1])[:3]))
        if p["cpu"]["other_processes_cpu_s"]:
            print("    other processes: " + "; ".join(f"{k} {v / wall * 100:.0f}%"
                                                     for k, v in p["cpu"]["other_processes_cpu_s"].items()))

    print()
    print(f"  {'PostgreSQL per confirmed order':<34}" + "".join(
        f"{'max' if n == 'max' else 'latency':>40}" for n, _ in phases))
    print(f"  {'':<34}" + "".join(f"{'CPU ms':>8}{'commits':>8}{'ins':>8}{'upd':>8}{'read':>8}" for _ in phases))
    dbs = sorted({db for _, p in phases for db in p["postgres_per_order"] if db != "(wal)"})
    for db in dbs:
        line = f"  {db:<34}"
        for _, p in phases:
            c = p["postgres_per_order"].get(db, {})
            read = c.get("tup_fetched", 0) + c.get("tup_returned", 0)
            line += f"{_fmt(p['postgres_backend_cpu_ms_per_order'].get(db), '.2f'):>8}"
            line += "".join(f"{_fmt(c.get(k)):>8}" for k in ("xact_commit", "tup_inserted", "tup_updated"))
            line += f"{read:>8.0f}"
        print(line)
    if any("(wal)" in p["postgres_per_order"] for _, p in phases):
        line = f"  {'WAL (cluster): records, kB, syncs':<34}"
        for _, p in phases:
            w = p["postgres_per_order"].get("(wal)", {})
            line += (f"{_fmt(w.get('wal_records')):>16}{_fmt((w.get('wal_bytes') or 0) / 1024, '.1f'):>12}"
                     f"{_fmt(w.get('wal_sync'), '.2f'):>12}")
        print(line)
    for name, p in phases:
        print(f"  {name}: most rows read per order: " + "; ".join(
            f"{k} {v:g}" for k, v in list(p["postgres_rows_read_per_order"].items())[:5]))

    print()
    print(f"  {'consumer loops (window)':<34}"
          + "".join(f"{'max' if n == 'max' else 'latency':>30}" for n, _ in phases))
    print(f"  {'':<34}" + "".join(f"{'batch':>10}{'ms/batch':>10}{'busy':>10}" for _ in phases))
    names = sorted({(svc, c) for _, p in phases for svc, cs in p["cpu"]["consumers"].items() for c in cs})
    for svc, c in names:
        line = f"  {svc + ' ' + c:<34}"
        for _, p in phases:
            d = p["cpu"]["consumers"].get(svc, {}).get(c)
            if d:
                busy = _pct(d["busy_fraction"])
                line += f"{_fmt(d['mean_batch_size']):>10}{_fmt(d['mean_batch_ms']):>10}{_fmt(busy):>9}%"
            else:
                line += f"{'-':>30}"
        print(line)

    print()
    if "rate" in g:
        verdict = "met" if g["rate_met"] else "NOT met"
        print(f"goal: >= {GOAL_RATE:.0f} orders/s end to end, sustained: {g['rate']:.1f}/s -> {verdict}")
    at = "at half the maximum" if g["p99_at_half_max"] else "at the given rate (not half the measured maximum)"
    verdict = "met" if g["p99_met"] else "NOT met"
    print(f"goal: p99 POST -> confirmed < {GOAL_P99_MS:.0f} ms {at}: {_fmt(g['p99_ms'])} ms -> {verdict}")
    if f["service_log_errors"]:
        print(f"services that logged errors (see .local/bench/logs): {', '.join(f['service_log_errors'])}")
    print()


def _pct(v: float | None) -> float | None:
    return None if v is None else v * 100


def print_profile(path: Path, service: str, top: int = 40) -> None:
    if not path.exists():
        say(f"no profile at {path} (the service did not exit cleanly)")
        return
    print(f"\ncProfile of {service} ({path.relative_to(ROOT)}), top {top} by own time:")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(f"top {top} by cumulative time:")
    stats.sort_stats("cumulative").print_stats(top)
