"""The goals and the printed table of the figures, and a profiled service's top functions."""

import pstats
import sys
from pathlib import Path
from typing import Any

from bench.e2e.edges import MAIL_SINK
from bench.e2e.plan import GOAL_P99_MS, GOAL_RATE, STATUS_TOPIC
from bench.env import ROOT, say


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
            ("fulfilment", "fulfilment"), ("tracking", "tracking"), ("notification", "notification"),
            ("returns", "returns"), (MAIL_SINK, "mail sink (aiosmtpd, not the OMS)"),
            ("kafka", "Kafka broker (dev)"),
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
    if not s.get("vacuum_before_rate_phases", True):
        extra += "  [no VACUUM before the fixed-rate phases]"
    if s.get("edges"):
        extra += "  [edges: tracking, notification, returns measured too]"
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
