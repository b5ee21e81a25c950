"""What every benchmark needs around the measurement: the dev infrastructure's addresses and a check
that it answers, scratch databases, server processes of our own (started, awaited, stopped), CPU
accounting from /proc, the machine's description, and the results folder."""

import argparse
import asyncio
import ctypes
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
LOG_DIR = ROOT / ".local" / "bench" / "logs"
DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_PG_ADMIN = "postgresql://oms@127.0.0.1:55432/postgres"
# The benchmarks' services read and write their own topics (KAFKA_TOPIC_PREFIX): the dev services of
# `make up` on the same Kafka never see a benchmark's orders, and a run starts on empty topics.
TOPIC_PREFIX = "bench."


class Unmeasurable(RuntimeError):
    """A benchmark cannot measure meaningfully here; the message says why and what to do (printed
    without a traceback)."""


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


@dataclass
class Context:
    """One `python -m bench` run: its options, the infrastructure and names unique to the run."""

    args: argparse.Namespace
    kafka_bootstrap: str
    pg_admin_dsn: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    nonce: str = field(default_factory=lambda: os.urandom(4).hex())

    @property
    def stamp(self) -> str:
        return self.started_at.strftime("%Y%m%dT%H%M%SZ")

    def dsn_for(self, database: str) -> str:
        base, _, _ = self.pg_admin_dsn.rpartition("/")
        return f"{base}/{database}"


# --- the dev infrastructure -------------------------------------------------------------------


def infra_addresses() -> tuple[str, str]:
    """(Kafka bootstrap, PostgreSQL superuser DSN) of the dev profile, as `infra.sh dev env` prints
    them; KAFKA_BOOTSTRAP and PG_ADMIN_DSN in the environment take precedence."""
    found = {"KAFKA_BOOTSTRAP": DEFAULT_KAFKA, "PG_ADMIN_DSN": DEFAULT_PG_ADMIN}
    try:
        out = subprocess.run([str(ROOT / "deploy/local/infra.sh"), "dev", "env"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep and key in found:
                found[key] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for key in found:
        if os.environ.get(key):
            found[key] = os.environ[key]
    return found["KAFKA_BOOTSTRAP"], found["PG_ADMIN_DSN"]


def _port_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def infra_problems(kafka_bootstrap: str, pg_admin_dsn: str) -> list[str]:
    """What does not answer, empty when both Kafka and PostgreSQL do."""
    problems = []
    first = kafka_bootstrap.split(",")[0]
    host, _, port = first.rpartition(":")
    if not _port_answers(host or "127.0.0.1", int(port)):
        problems.append(f"Kafka does not answer at {first}")
    try:
        version = run_async(_fetchval(pg_admin_dsn, "SHOW server_version"), timeout=10)
        if not version:
            problems.append(f"PostgreSQL at {_safe_dsn(pg_admin_dsn)} gave no version")
    except Exception as exc:  # noqa: BLE001 - any failure means it does not answer
        problems.append(f"PostgreSQL does not answer at {_safe_dsn(pg_admin_dsn)} ({type(exc).__name__}: {exc})")
    return problems


def _safe_dsn(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    return f"{parts.scheme}://{parts.username or ''}@{host}:{parts.port or 5432}{parts.path}"


# --- PostgreSQL ---------------------------------------------------------------------------------


def run_async(coro: Any, timeout: float = 60) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def _fetchval(dsn: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def _fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def fetchval(dsn: str, query: str, *args: Any) -> Any:
    return run_async(_fetchval(dsn, query, *args))


def fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    return run_async(_fetch(dsn, query, *args))


def recreate_database(ctx: Context, name: str) -> str:
    """Drops the database (closing its sessions) and creates it empty; returns its DSN."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")

    async def go() -> None:
        conn = await asyncpg.connect(ctx.pg_admin_dsn, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_async(go())
    return ctx.dsn_for(name)


# --- server processes ---------------------------------------------------------------------------


def reset_bench_topics(kafka_bootstrap: str) -> None:
    """Deletes the topics of earlier benchmark runs (TOPIC_PREFIX); the services create them again."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def go() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="oms-bench")
        await admin.start()
        try:
            old = [t for t in await admin.list_topics() if t.startswith(TOPIC_PREFIX)]
            if old:
                await admin.delete_topics(old)
                for _ in range(100):  # deletion is asynchronous: wait until they are gone
                    if not set(old) & set(await admin.list_topics()):
                        break
                    await asyncio.sleep(0.2)
        finally:
            await admin.close()

    run_async(go(), timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench itself dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Server:
    """A server process of the bench's own: `python <argv>` with `env` added, listening on `port`,
    its output in .local/bench/logs/<name>-<port>.log, in a session of its own (Ctrl-C reaches the
    bench, which stops it with `stop_signal`: uvicorn shuts down gracefully on SIGTERM or SIGINT, and
    then raises the signal again, so only SIGINT lets a wrapper such as cProfile finish its work)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int,
                 stop_signal: int = signal.SIGTERM):
        self.name, self.argv, self.port, self.stop_signal = name, argv, port, stop_signal
        self.env = {**os.environ, **env}
        self.url = f"http://127.0.0.1:{port}"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        say(f"starting {self.name} on {self.url} (log {self.log_path.relative_to(ROOT)})")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.argv], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, path: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); last lines of its log:\n"
                                   f"{self.tail()}")
            status, body = http_json("GET", self.url + path, timeout=3)
            # Details are not required by readiness (order capture's consumers): the bench waits for them.
            if status == 200 and all(v == "ok" for v in (body or {}).get("details", {}).values()):
                say(f"{self.name} ready")
                return
            last = f"{status} {body}"
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s ({last}); last lines of its log:\n"
                           f"{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        say(f"stopping {self.name} (pid {self.proc.pid})")
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
              timeout: float = 10) -> tuple[int, Any]:
    """(status, parsed JSON body or text); status 0 when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


# --- CPU accounting -----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (all its threads), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    idle = values[3] + values[4]
    return (total - idle) / _TICK, total / _TICK


class CpuMeter:
    """CPU used between start() and stop() by given processes, by the PostgreSQL backends serving
    given databases, and by the whole machine."""

    def __init__(self, pg_admin_dsn: str, pids: dict[str, int], databases: list[str]):
        self.pg_admin_dsn, self.pids, self.databases = pg_admin_dsn, pids, databases
        self._before: dict[str, float] = {}
        self._backends_before: dict[int, float] = {}
        self._machine_before = (0.0, 0.0)

    def _backends(self) -> dict[int, float]:
        rows = fetch(self.pg_admin_dsn, "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])",
                     self.databases)
        found = {r["pid"]: process_cpu_seconds(r["pid"]) for r in rows}
        return {pid: cpu for pid, cpu in found.items() if cpu is not None}

    def start(self) -> None:
        self._before = {name: process_cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        self._backends_before = self._backends()
        self._machine_before = machine_cpu()

    def stop(self) -> dict[str, float]:
        busy, total = machine_cpu()
        used = {name: round((process_cpu_seconds(pid) or 0.0) - self._before[name], 3)
                for name, pid in self.pids.items()}
        backends = self._backends()
        used["postgres_backends"] = round(
            sum(cpu - self._backends_before.get(pid, 0.0) for pid, cpu in backends.items()), 3)
        span = total - self._machine_before[1]
        used["machine_busy_fraction"] = round((busy - self._machine_before[0]) / span, 3) if span > 0 else 0.0
        return used


# --- the machine and the results ----------------------------------------------------------------


def machine_info(pg_admin_dsn: str) -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        pg = fetchval(pg_admin_dsn, "SHOW server_version")
    except Exception:  # noqa: BLE001 - informative only
        pg = None
    return {
        "hostname": socket.gethostname(), "nproc": nproc, "cpu_model": model, "mem_gib": mem_gib,
        "loadavg_at_start": list(os.getloadavg()), "python": platform.python_version(),
        "kernel": platform.release(), "postgresql": pg,
    }


def write_results(ctx: Context, name: str, figures: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{ctx.stamp}.json"
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return path
