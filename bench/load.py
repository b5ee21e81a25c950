"""The load generator: wrk (C, one thread, little CPU taken from the servers), installed with apt-get
when missing, driven by a Lua script, its text output parsed into figures."""

import os
import re
import resource
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.env import say
from bench.orders import order_body_parts

ORDERS_LUA = Path(__file__).with_name("orders.lua")


def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is not installed: apt-get install -y wrk")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if _run_apt(["apt-get", "install", "-y", "wrk"], env) != 0:
        say("install failed: apt-get update, then apt-get install -y wrk again")
        _run_apt(["apt-get", "update"], env)
        if _run_apt(["apt-get", "install", "-y", "wrk"], env) != 0:
            raise SystemExit("could not install wrk with apt-get; install it (https://github.com/wg/wrk) and rerun")
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still not on PATH after apt-get install")
    return found


def _run_apt(cmd: list[str], env: dict[str, str]) -> int:
    try:
        return subprocess.run(cmd, env={**os.environ, **env}, check=False).returncode
    except OSError as exc:
        say(f"{cmd[0]} failed: {exc}")
        return 1


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "unknown"


@dataclass
class WrkResult:
    duration_s: float
    requests: int
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    requests_per_s: float
    latency_ms: dict[str, float]  # p50, p75, p90, p99 from --latency, and mean
    wrk_cpu_s: float

    @property
    def accepted(self) -> int:
        return self.requests - self.non_2xx_3xx

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accepted": self.accepted, "accepted_per_s": round(self.accepted_per_s, 1),
                "errors": self.errors}


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION_UNITS = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    """Figures from wrk's report (run with --latency)."""
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.M)
    if not m:
        raise ValueError(f"wrk printed no request count:\n{text}")
    requests, duration_s = int(m.group(1)), float(m.group(2)) * _DURATION_UNITS[m.group(3)]
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    non2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", text, re.M)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    latency = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M):
        latency[f"p{pct}"] = round(_ms(value, unit), 3)
    mean = re.search(r"^\s+Latency\s+([\d.]+)(us|ms|s|m|h)", text, re.M)
    if mean:
        latency["mean"] = round(_ms(mean.group(1), mean.group(2)), 3)
    if "p50" not in latency or "p99" not in latency:
        raise ValueError(f"wrk printed no latency distribution (is --latency given?):\n{text}")
    return {
        "requests": requests, "duration_s": duration_s,
        "requests_per_s": float(rps.group(1)) if rps else requests / duration_s,
        "non_2xx_3xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                  (int(v) for v in sock.groups()), strict=True)) if sock else {},
        "latency_ms": latency,
    }


def run_wrk(wrk: str, url: str, *, token: str, nonce: str, duration: float, connections: int,
            threads: int = 1, timeout_s: int = 10, echo: bool = True) -> WrkResult:
    """One wrk run against `url`: every request a new order with a unique Idempotency-Key and
    external_id (`nonce` must differ between runs against the same database)."""
    prefix, suffix = order_body_parts()
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", f"--timeout={timeout_s}s",
           "--latency", "-s", str(ORDERS_LUA), url, "--", token, nonce, prefix, suffix]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=duration + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    if echo:
        for line in out.stdout.rstrip().splitlines():
            print(f"    | {line}")
    figures = parse_wrk(out.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkResult(wrk_cpu_s=round(cpu, 3), **figures)
