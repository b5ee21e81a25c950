"""Runs a real service process (python -m <module>) against the test infrastructure, so tests can
talk to it over HTTP and Kafka and kill it with SIGKILL mid-flight."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.infra import ROOT

CONF = ROOT / "deploy" / "services.conf"
# The operator token the tests give every service process (OMS_ADMIN_TOKEN).
ADMIN_TOKEN = "test-admin-token"


def service_table() -> dict[str, tuple[str, int, str]]:
    """name -> (module, default port, database) from deploy/services.conf."""
    table = {}
    for line in CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, module, port, db = line.split()
            table[name] = (module, int(port), db)
    return table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spaced_free_ports(n: int, replicas: int, step: int) -> list[int]:
    """n base ports p, each with p + step*k free for every replica k < replicas, from below the
    ephemeral range (32768+ on Linux), so no client's outgoing connection takes one before the service
    binds it (a port from free_port() is ephemeral: its neighbours can be taken at any moment)."""
    found: list[int] = []
    p = random.randrange(20000, 30000)
    while len(found) < n:
        p = p + 1 if p < 32000 else 20000
        if all(_bindable(p + step * k) for k in range(replicas)) and all(abs(p - q) % step for q in found):
            found.append(p)
    return found


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class ServiceProcess:
    def __init__(self, name: str, *, database_url: str, kafka_bootstrap: str, log_dir: Path,
                 env: dict[str, str] | None = None):
        self.name = name
        self.module = service_table()[name][0]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SERVICE_NAME": name,
            "HTTP_PORT": str(self.port),
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "OUTBOX_POLL_INTERVAL": "0.2",
            # Each test's consumer groups are new: start at the end, not at other tests' history.
            "KAFKA_AUTO_OFFSET_RESET": "latest",
            # The broker's minimum: a test that SIGKILLs a service gets its partitions back sooner.
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            # Static membership: a process restarted by a test (same name and port) rejoins at once.
            "KAFKA_GROUP_INSTANCE_ID": f"{name}-{self.port}",
            "LOG_LEVEL": "WARNING",
            # Tests send everything with one or two keys, fast; test_capture_rate_limit sets its own.
            "RATE_LIMIT_PER_KEY_PER_SECOND": "0",
            **(env or {}),
        }
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, *, wait: bool = True, **extra_env: str) -> "ServiceProcess":
        env = {**self.env, **extra_env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], env=env, stdout=log, stderr=log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); log:\n{self.tail()}")
            try:
                resp = httpx.get(f"{self.url}/readyz", timeout=1)
                # Also what readiness reports without requiring it (order capture's consumers joined):
                # the tests read what its consumers write.
                if resp.status_code == 200 and all(v == "ok" for v in resp.json().get("details", {}).values()):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready in {timeout}s; log:\n{self.tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""
