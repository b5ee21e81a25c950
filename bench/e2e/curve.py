"""The raw baseline's run (bench/raw.py, after the OMS, with the same phases) and the cost curve: CPU
per confirmed order and p50/p99 against the rate (10/s, 100/s, half the maximum, the maximum), for the
OMS and the raw pipeline side by side, printed as a table and plotted to bench/results/."""

import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.e2e.edges import MAIL_SINK
from bench.e2e.load import Load
from bench.e2e.pgstats import postgres_aux_pids
from bench.e2e.plan import Plan
from bench.e2e.procstats import kafka_pid
from bench.env import RESULTS_DIR, TOPIC_PREFIX, Context, Server, free_port, recreate_database, say

RAW_ROLES = ("capture", "start", "reserve", "confirm")
# Not the OMS's own processes: the mail sink (with --e2e-edges) stands for an SMTP server outside it.
_NOT_SERVICES = ("kafka", "postgres_backends", "postgres_aux", "bench_client", MAIL_SINK)


def run_raw(ctx: Context, plan: Plan, stop_all: Any, timeout_run: Any) -> dict[str, Any]:
    """The raw pipeline's processes on a fresh database bench_raw, measured like the OMS."""
    dsn = recreate_database(ctx, "bench_raw")
    servers: dict[str, Server] = {}
    for role in RAW_ROLES:
        port = free_port()
        env = {"SERVICE_NAME": f"raw-{role}", "HTTP_PORT": str(port), "DATABASE_URL": dsn,
               "KAFKA_BOOTSTRAP_SERVERS": ctx.kafka_bootstrap, "KAFKA_TOPIC_PREFIX": TOPIC_PREFIX,
               "KAFKA_GROUP_SUFFIX": f".bench-{ctx.nonce}", "LOG_LEVEL": "WARNING"}
        servers[f"raw-{role}"] = Server(f"raw-{role}", ["-m", "bench.raw", role], env, port,
                                        stop_signal=signal.SIGTERM)
    with ExitStack() as stack:
        stack.callback(stop_all, list(servers.values()))
        servers["raw-capture"].start().wait_ready("/readyz", timeout=60)  # it creates the raw topics
        for server in list(servers.values())[1:]:
            server.start()
        for server in servers.values():
            server.wait_ready("/readyz", timeout=120)
        pids = {name: s.pid for name, s in servers.items()}
        broker = kafka_pid(ctx.kafka_bootstrap)
        if broker is not None:
            pids["kafka"] = broker
        pids.update({f"pg-aux:{pid}": pid for pid in postgres_aux_pids(ctx.pg_admin_dsn)})
        say("raw baseline: the same phases against bench/raw.py")
        load = Load(ctx, plan, servers, "raw", pids, ["bench_raw"], entry="raw-capture", hops=False)
        return timeout_run(load.run(), timeout=plan.max_seconds())


def points(f: dict[str, Any]) -> list[dict[str, Any]]:
    """The cost curve of one run's figures, lowest rate first."""
    phases = [("max", f["max"])] if "max" in f else []
    phases += [("latency", f["latency"])] + [("rate", p) for p in f.get("rates", [])]
    out = []
    for name, p in phases:
        per = p["cpu_ms_per_order"]
        rate = p["confirmed_per_s"] if name == "max" else p["rate"]
        out.append({
            "phase": "max" if name == "max" else f"{rate:g}/s", "rate": rate,
            "p50_ms": p["to_confirmed_ms"]["p50"], "p99_ms": p["to_confirmed_ms"]["p99"],
            "services_ms": round(sum(v for k, v in per.items() if k not in _NOT_SERVICES), 3),
            "services": [k for k in per if k not in _NOT_SERVICES],  # summed in services_ms
            "kafka_ms": per.get("kafka"),
            "postgres_ms": round(per.get("postgres_backends", 0.0) + per.get("postgres_aux", 0.0), 3),
            "accounted_ms": round(p["cpu_accounted_ms_per_order"] - per.get("bench_client", 0.0)
                                  - per.get(MAIL_SINK, 0.0), 3),
            "machine_ms": p["machine_busy_ms_per_order"],
        })
    return sorted(out, key=lambda r: r["rate"])


def print_curve(f: dict[str, Any]) -> None:
    runs = [("OMS", points(f))] + ([("raw", points(f["raw"]))] if f.get("raw") else [])
    print()
    print("Cost curve: CPU ms per confirmed order (services, Kafka, PostgreSQL; 'system' is their sum, without "
          "the load generator) and POST -> confirmed")
    for label, rows in runs:
        if rows:
            print(f"  services ({label}): {', '.join(rows[0]['services'])}")
    print(f"  {'':<5}{'rate':>9}{'p50 ms':>9}{'p99 ms':>9}{'services':>10}{'Kafka':>8}{'PG':>8}{'system':>8}"
          f"{'machine':>9}")
    for label, rows in runs:
        for r in rows:
            print(f"  {label:<5}{r['phase']:>9}{_f(r['p50_ms'], '.0f'):>9}{_f(r['p99_ms'], '.0f'):>9}"
                  f"{_f(r['services_ms']):>10}{_f(r['kafka_ms']):>8}{_f(r['postgres_ms']):>8}"
                  f"{_f(r['accounted_ms']):>8}{_f(r['machine_ms']):>9}")
    oms = {r["phase"]: r for r in runs[0][1]}
    if "max" in oms:
        low = min((r for r in runs[0][1] if r["phase"] != "max"), key=lambda r: abs(r["rate"] - 100), default=None)
        if low is not None:
            print(f"  OMS: CPU per order at {low['phase']} is {low['accounted_ms'] / oms['max']['accounted_ms']:.2f}x "
                  f"the CPU per order at the maximum (goal at 100/s: <= 1.5x; at the maximum <= 2.5 ms)")
    if len(runs) == 2:
        raw = {r["phase"]: r for r in runs[1][1]}
        if "max" in oms and "max" in raw and raw["max"]["rate"]:
            print(f"  OMS / raw pipeline: throughput {oms['max']['rate'] / raw['max']['rate']:.2f}x (goal >= 0.6), "
                  f"CPU per order at the maximum {oms['max']['accounted_ms'] / raw['max']['accounted_ms']:.2f}x")


def plot_curve(f: dict[str, Any], path: Path) -> Path | None:
    """The curve as a PNG (matplotlib is a dev dependency; None without it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no plot of the cost curve")
        return None
    runs = [("OMS", points(f))] + ([("raw pipeline", points(f["raw"]))] if f.get("raw") else [])
    fig, (cpu, lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, rows in runs:
        rates = [r["rate"] for r in rows]
        cpu.plot(rates, [r["accounted_ms"] for r in rows], "o-", label=f"{label}: services+Kafka+PG")
        cpu.plot(rates, [r["machine_ms"] for r in rows], "x:", label=f"{label}: whole machine")
        lat.plot(rates, [r["p50_ms"] for r in rows], "o-", label=f"{label} p50")
        lat.plot(rates, [r["p99_ms"] for r in rows], "s--", label=f"{label} p99")
    for ax, title, unit in ((cpu, "CPU per confirmed order", "ms of CPU"), (lat, "POST -> confirmed", "ms")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("orders/s (the maximum: closed loop)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"OMS cost curve, {f['started_at'][:16]}Z", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curve_path(stamp: str) -> Path:
    return RESULTS_DIR / f"e2e-{stamp}-curve.png"


def _f(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)
