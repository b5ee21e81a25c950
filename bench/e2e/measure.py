"""The snapshots around a measured window: CPU of every process (the services, Kafka, PostgreSQL's
backends and background processes, the benchmark, the rest of the machine), context switches, the
services' consumer metrics and PostgreSQL's counters, and their difference over the window."""

import asyncio
import os
import resource
import time
from typing import Any

from bench.e2e.edges import MAIL_SINK
from bench.e2e.metrics import consumer_delta, scrape
from bench.e2e.pgstats import pg_counters, pg_table_reads
from bench.e2e.procstats import process_table, switch_delta, switches_of, user_system
from bench.env import Context, CpuMeter, Server, fetch, machine_cpu, process_cpu_seconds


class Meter:
    def __init__(self, ctx: Context, servers: dict[str, Server], pids: dict[str, int], databases: list[str]):
        self.ctx, self.servers, self.pids, self.databases = ctx, servers, pids, databases

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

    async def delta(self, snap: dict[str, Any]) -> dict[str, Any]:
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
        names = dict.fromkeys(k.split("#")[0] for k in self.servers)  # the services (or the raw pipeline's)
        cpu = {name: round(sum(v for k, v in used.items() if k.split("#")[0] == name), 3) for name in names}
        for name in ("kafka", MAIL_SINK):
            if name in used:
                cpu[name] = used[name]
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
