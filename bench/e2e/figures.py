"""Percentiles and the figures of one phase from the orders it placed."""

from collections.abc import Iterable
from typing import Any

from bench.e2e.client import Order, PhaseCounters


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


def summarise(orders: list[Order], span: float, counters: PhaseCounters, cpu: dict[str, Any]) -> dict[str, Any]:
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


def p99_by_second(orders: list[Order], start: float, end: float) -> list[float | None]:
    """p99 of POST -> confirmed of the orders sent in each second of the window: a stall shows as
    a few bad seconds, steady queueing as every second being high."""
    seconds: list[list[float]] = [[] for _ in range(max(1, int(end - start)))]
    for o in orders:
        i = int(o.sent - start)
        if o.status == "confirmed" and o.done is not None and 0 <= i < len(seconds):
            seconds[i].append((o.done - o.sent) * 1000)
    return [pct(sorted(v), 99) for v in seconds]


def timeline(orders: Iterable[Order], start: float, end: float, phases: tuple[str, ...]) -> list[int]:
    """Confirmations per second of the window, by their Kafka time."""
    seconds = max(1, int(end - start))
    counts = [0] * seconds
    for o in orders:
        if o.phase in phases and o.status == "confirmed" and o.done is not None and start <= o.done < end:
            i = int(o.done - start)
            if i < seconds:
                counts[i] += 1
    return counts
