"""The e2e benchmark's options, the settings of a run (Plan) and its constants."""

import re
from dataclasses import dataclass, field
from typing import Any

from bench.env import ROOT, TOPIC_PREFIX

NAME = "e2e"
DESCRIPTION = ("order saga end to end (POST /v1/orders -> confirmed on oms.orders.status): max orders/s "
               "sustained, then p50/p99 latency at half that rate")
GOAL_RATE = 300.0  # orders/s end to end
GOAL_P99_MS = 250.0  # POST -> confirmed at half the maximum

SERVICES = ("order-capture", "orchestrator", "inventory", "fulfilment")
# With --e2e-edges: the services that consume the saga's events without taking part in it.
EDGES = ("tracking", "notification", "returns")
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
                        "orchestrator, inventory or fulfilment (or, with --e2e-edges, of an edge service); "
                        "repeatable")
    g.add_argument("--e2e-edges", action="store_true",
                   help="e2e: also run tracking, notification (with a local aiosmtpd mail sink) and returns, "
                        "which consume the saga's events: their CPU per confirmed order is measured too "
                        "(off by default, so the figures stay comparable with earlier runs)")
    g.add_argument("--e2e-no-analyze", action="store_true",
                   help="e2e: do not ANALYZE the bench databases after each warm-up (measure a fresh database, "
                        "with the plans cached before autovacuum first analyzes it)")
    g.add_argument("--e2e-no-vacuum", action="store_true",
                   help="e2e: do not VACUUM (ANALYZE) the bench databases before each fixed-rate phase (then "
                        "autovacuum of the phase before may run in the window)")
    g.add_argument("--e2e-profile", choices=SERVICES + EDGES, default=None,
                   help="e2e: run this service under cProfile and print where its time goes (slows it down)")
    g.add_argument("--e2e-curve", default="10,100", metavar="RATES",
                   help="e2e: the cost curve: more fixed-rate phases at these orders/s (comma-separated; '' for "
                        "none), printed with the maximum and the half-maximum phase as CPU per order and p50/p99 "
                        "against the rate, and plotted to bench/results/ (default 10,100)")
    g.add_argument("--e2e-flame", action="store_true",
                   help="e2e: py-spy flame graphs of every service in the cost curve's fixed-rate phases, written "
                        "beside the results (py-spy is a dev dependency; it needs ptrace, and its sampling "
                        "costs some CPU of its own)")
    g.add_argument("--e2e-no-raw", action="store_true",
                   help="e2e: skip the raw baseline (bench/raw.py: the same hops as the smallest aiokafka + asyncpg "
                        "pipeline, measured after the OMS with the same phases)")
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
    vacuum: bool = True
    replicas: dict[str, int] = field(default_factory=dict)
    curve: list[float] = field(default_factory=list)
    raw: bool = True
    flame: bool = False
    edges: bool = False

    @property
    def services(self) -> tuple[str, ...]:
        """The services this run starts: the saga's four, and the edge services with --e2e-edges."""
        return SERVICES + EDGES if self.edges else SERVICES

    @classmethod
    def from_args(cls, args: Any) -> "Plan":
        env_all: dict[str, str] = {}
        env_by: dict[str, dict[str, str]] = {s: {} for s in SERVICES + EDGES}
        for item in args.e2e_env:
            target, name, value = _parse_env(item, SERVICES + EDGES if args.e2e_edges else SERVICES)
            (env_by[target] if target else env_all)[name] = value
        plan = cls(args.e2e_duration, args.e2e_warmup, args.e2e_latency_duration, args.e2e_rate, args.e2e_window,
                   args.e2e_connections, args.e2e_drain, args.e2e_skip_max, env_all, env_by, args.e2e_profile,
                   args.e2e_allow_shared_topics, {}, not args.e2e_no_analyze, not args.e2e_no_vacuum)
        for item in args.e2e_pg:
            name, sep, value = item.partition("=")
            if not sep or not re.fullmatch(r"[a-z_][a-z0-9_.]*", name) or not re.fullmatch(r"[A-Za-z0-9_.]+", value):
                raise ValueError(f"--e2e-pg wants name=value (a PostgreSQL setting), not {item!r}")
            plan.pg_settings[name] = value
        try:
            plan.curve = [float(r) for r in args.e2e_curve.split(",") if r.strip()]
        except ValueError:
            raise ValueError(f"--e2e-curve wants rates separated by commas, not {args.e2e_curve!r}") from None
        plan.raw = not args.e2e_no_raw
        plan.flame = args.e2e_flame
        plan.edges = args.e2e_edges
        replicable = plan.services[1:]
        for item in args.e2e_replicas:
            name, sep, value = item.partition("=")
            if name not in replicable or not sep or value not in ("1", "2", "3"):
                raise ValueError(f"--e2e-replicas wants SERVICE=N (SERVICE one of {', '.join(replicable)}, "
                                 f"N 1 to 3), not {item!r}")
            plan.replicas[name] = int(value)
        problems = []
        if plan.profile is not None and plan.profile not in plan.services:
            problems.append(f"--e2e-profile {plan.profile} needs --e2e-edges")
        if plan.duration < 1 or plan.latency_duration < 1:
            problems.append("--e2e-duration and --e2e-latency-duration must be >= 1")
        if plan.warmup < 0 or plan.drain < 1:
            problems.append("--e2e-warmup must be >= 0 and --e2e-drain >= 1")
        if plan.window < 1 or plan.connections < 1 or plan.connections > 1024:
            problems.append("--e2e-window must be >= 1 and --e2e-connections between 1 and 1024")
        if any(not 0 < r <= 20_000 for r in plan.curve):
            problems.append("--e2e-curve rates must be in (0, 20000]")
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
        phase2 = (1 + len(self.curve)) * (self.warmup + self.latency_duration + self.drain)
        return 120 + phase1 + phase2 + 60


def _parse_env(item: str, services: tuple[str, ...] = SERVICES) -> tuple[str | None, str, str]:
    pair, target = item, None
    head, colon, rest = item.partition(":")
    if colon and head in services:
        target, pair = head, rest
    name, sep, value = pair.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"--e2e-env wants [SERVICE:]NAME=VALUE (SERVICE one of {', '.join(services)}), "
                         f"not {item!r}")
    return target, name, value


def service_table() -> dict[str, tuple[str, str]]:
    """name -> (Python module, database) from deploy/services.conf."""
    table = {}
    for line in CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, module, _port, db = line.split()
            table[name] = (module, db)
    missing = set(SERVICES + EDGES) - set(table)
    if missing:
        raise RuntimeError(f"{CONF.relative_to(ROOT)} does not list {sorted(missing)}")
    return table


# --- the run --------------------------------------------------------------------------------------



def skus() -> list[str]:
    return [f"BENCH-SKU-{i}" for i in range(1, SKU_COUNT + 1)]
