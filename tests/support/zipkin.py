"""A real Zipkin server (the jar `make up` runs, fetched by deploy/local/infra.sh) on a free port, in
memory, for tests that read back the traces the services export."""

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.infra import ROOT
from tests.support.services import free_port


class Zipkin:
    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"{self.url}/api/v2/spans"  # what the services get as ZIPKIN_ENDPOINT
        self.log_path = log_dir / "zipkin.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Zipkin":
        jar = subprocess.run([str(ROOT / "deploy" / "local" / "infra.sh"), "test", "zipkin-jar"], check=True,
                             capture_output=True, text=True).stdout.strip()
        env = {**os.environ, "QUERY_PORT": str(self.port), "STORAGE_TYPE": "mem", "MEM_MAX_SPANS": "200000"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["java", "-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                 "-Darmeria.ports[0].ip=127.0.0.1", f"-Darmeria.ports[0].port={self.port}",
                 "-Darmeria.ports[0].protocols[0]=http", "-jar", jar], env=env, stdout=log, stderr=log)
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()[-2000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"Zipkin not ready in {timeout}s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    async def trace(self, http: httpx.AsyncClient, trace_id: str) -> list[dict[str, Any]]:
        resp = await http.get(f"{self.url}/api/v2/trace/{trace_id}")
        return resp.json() if resp.status_code == 200 else []

    async def traces_tagged(self, http: httpx.AsyncClient, tag: str, value: str) -> list[list[dict[str, Any]]]:
        """Every trace with a span tagged `tag`=`value` (Zipkin's search by annotationQuery)."""
        resp = await http.get(f"{self.url}/api/v2/traces",
                              params={"annotationQuery": f"{tag}={value}", "limit": 1000, "lookback": 3_600_000})
        resp.raise_for_status()
        return resp.json()
