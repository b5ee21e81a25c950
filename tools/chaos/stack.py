"""The stack under test as services.sh runs it: the same reading of services.conf, REPLICAS and
REPLICA_PORT_STEP, so an instance's port, pid file and database are found as services.sh made them."""

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES_SH = ROOT / "deploy" / "local" / "services.sh"
INFRA_SH = ROOT / "deploy" / "local" / "infra.sh"


@dataclass(frozen=True)
class Instance:
    name: str  # file name: <service> for replica 0, <service>.<k> after
    service: str
    port: int
    database: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def replicas(spec: str, service: str) -> int:
    if spec.isdigit():
        return int(spec)
    counts = dict(item.split("=", 1) for item in spec.replace(",", " ").split() if "=" in item)
    return int(counts.get(service, "1"))


@dataclass
class Stack:
    env: dict[str, str]  # what services.sh gets (SERVICES_CONF, OMS_STATE_DIR, REPLICAS, KAFKA_TOPIC_PREFIX...)
    kafka_bootstrap: str
    pg_admin_dsn: str
    infra_profile: str | None  # dev|test: Kafka and PostgreSQL can be restarted through infra.sh; None: not
    instances: list[Instance] = field(default_factory=list)

    @classmethod
    def from_env(cls, env: dict[str, str], kafka_bootstrap: str, pg_admin_dsn: str,
                 infra_profile: str | None) -> "Stack":
        conf = Path(env.get("SERVICES_CONF") or ROOT / "deploy" / "services.conf")
        step = int(env.get("REPLICA_PORT_STEP") or 100)
        spec = env.get("REPLICAS") or "1"
        instances = []
        for line in conf.read_text().splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            service, _module, port, db = line.split()
            for k in range(replicas(spec, service)):
                instances.append(Instance(service if k == 0 else f"{service}.{k}", service, int(port) + k * step, db))
        return cls(env, kafka_bootstrap, pg_admin_dsn, infra_profile, instances)

    @property
    def state_dir(self) -> Path:
        return Path(self.env.get("OMS_STATE_DIR") or ROOT / ".local" / "dev")

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def topic_prefix(self) -> str:
        return self.env.get("KAFKA_TOPIC_PREFIX", "")

    @property
    def admin_token(self) -> str:
        return self.env.get("OMS_ADMIN_TOKEN", "")

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances if i.service == service]

    def database(self, service: str) -> str | None:
        found = self.of(service)
        return found[0].database if found else None

    def dsn(self, database: str) -> str:
        base, _, _ = self.pg_admin_dsn.rpartition("/")
        return f"{base}/{database}"

    def pid(self, inst: Instance) -> int | None:
        """The instance's live process, if any (a SIGKILLed one not yet reaped is a zombie: not alive)."""
        try:
            pid = int((self.run_dir / f"{inst.name}.pid").read_text())
            stat = Path(f"/proc/{pid}/stat").read_text() if Path("/proc").is_dir() else ""
            if stat.rpartition(")")[2].split()[:1] == ["Z"]:
                return None
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self, inst: Instance) -> None:
        """services.sh up for that instance alone: returns once it answers /readyz."""
        try:
            done = subprocess.run([str(SERVICES_SH), "up"], env={**self.env, "ONLY": inst.name},
                                  capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired as exc:  # a start that hangs is one more failed attempt
            raise RuntimeError(f"restarting {inst.name}: no answer in 300 s") from exc
        if done.returncode != 0:
            raise RuntimeError(f"restarting {inst.name} failed: {done.stdout}{done.stderr}")

    def infra(self, command: str) -> None:
        assert self.infra_profile
        # A JVM starting on a machine busy with the run's own processes may need more than a minute.
        done = subprocess.run([str(INFRA_SH), self.infra_profile, command], capture_output=True, text=True,
                              env={"KAFKA_START_SECONDS": "240", **self.env}, timeout=360)
        if done.returncode != 0:
            raise RuntimeError(f"infra.sh {self.infra_profile} {command} failed: {done.stdout}{done.stderr}")
