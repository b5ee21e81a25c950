"""docker-compose.yml, deploy/docker/Dockerfile and the PostgreSQL init script agree with
deploy/services.conf: every service listed there is built, published, wired to Kafka and given its
own database. Static checks, plus `docker compose config` where a Docker engine answers."""

import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
INIT_SCRIPT = ROOT / "deploy" / "docker" / "postgres-init.sh"
SERVICES_CONF = ROOT / "deploy" / "services.conf"
DOCKERFILE_REL = "deploy/docker/Dockerfile"


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port: int
    database: str


def read_services(path: Path = SERVICES_CONF) -> list[Service]:
    """The same reading as deploy/local/services.sh: blank lines and `#` comments skipped."""
    services = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, module, port, database = line.split()[:4]
        services.append(Service(name, module, int(port), database))
    return services


SERVICES = read_services()
SERVICE_IDS = [s.name for s in SERVICES]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_of(entry: dict) -> dict[str, str | None]:
    """A compose `environment` (map or list form) as a map of strings (None: passed through)."""
    env = entry.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: (None if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}


def published_ports(entry: dict) -> set[tuple[int, int]]:
    """(published, target) pairs of a compose `ports` list, short or long syntax."""
    pairs = set()
    for port in entry.get("ports") or []:
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
            continue
        spec = str(port).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            continue  # a container port only: nothing published at a fixed port
        pairs.add((int(parts[-2]), int(parts[-1])))
    return pairs


def mounts_of(entry: dict) -> dict[str, str]:
    """container path -> host source of a compose `volumes` list (short or long syntax)."""
    mounts = {}
    for volume in entry.get("volumes") or []:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, target = str(volume).split(":")[:2]
            mounts[target] = source
    return mounts


def depends_on(entry: dict) -> dict[str, str]:
    deps = entry.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def test_services_conf_lists_services():
    assert SERVICES, "deploy/services.conf lists no service"
    assert len({s.name for s in SERVICES}) == len(SERVICES)
    assert len({s.port for s in SERVICES}) == len(SERVICES)
    assert len({s.database for s in SERVICES}) == len(SERVICES)


def test_compose_has_infrastructure_and_every_service(compose):
    entries = compose["services"]
    for infra in ("kafka", "postgres", "zipkin"):
        assert infra in entries, f"docker-compose.yml has no {infra}"
    missing = [s.name for s in SERVICES if s.name not in entries]
    assert not missing, f"services of deploy/services.conf without a compose entry: {missing}"
    # And the other way round: every image built from the Dockerfile is a listed service.
    built = {name for name, e in entries.items() if isinstance(e.get("build"), dict)}
    assert built == {s.name for s in SERVICES}, "compose builds services that deploy/services.conf does not list"


@pytest.mark.parametrize("svc", SERVICES, ids=SERVICE_IDS)
def test_service_is_a_workspace_package_with_its_module(svc: Service):
    # The Dockerfile installs the package oms-<SERVICE> and runs `python -m <MODULE>`.
    project = tomllib.loads((ROOT / "services" / svc.name / "pyproject.toml").read_text())["project"]
    assert project["name"] == f"oms-{svc.name}"
    assert (ROOT / "services" / svc.name / "src" / svc.module / "__main__.py").is_file()


@pytest.mark.parametrize("svc", SERVICES, ids=SERVICE_IDS)
def test_service_entry_builds_the_service(compose, svc: Service):
    build = compose["services"][svc.name]["build"]
    assert Path(build.get("context", ".")) == Path("."), "the build context must be the repository root"
    assert build["dockerfile"] == DOCKERFILE_REL
    args = {k: str(v) for k, v in build["args"].items()}
    assert args["SERVICE"] == svc.name
    assert args["MODULE"] == svc.module
    assert args.get("PORT", str(svc.port)) == str(svc.port)


@pytest.mark.parametrize("svc", SERVICES, ids=SERVICE_IDS)
def test_service_entry_publishes_its_port(compose, svc: Service):
    entry = compose["services"][svc.name]
    assert (svc.port, svc.port) in published_ports(entry)
    assert env_of(entry)["HTTP_PORT"] == str(svc.port)
    assert env_of(entry)["HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("svc", SERVICES, ids=SERVICE_IDS)
def test_service_entry_environment(compose, svc: Service):
    env = env_of(compose["services"][svc.name])
    assert env["SERVICE_NAME"] == svc.name
    url = urlsplit(env["DATABASE_URL"])
    assert url.scheme in ("postgresql", "postgres")
    assert url.hostname == "postgres" and url.port == 5432
    assert url.path == f"/{svc.database}", "each service uses its own database"
    assert url.username == svc.database and url.password == svc.database, "the init script's role and password"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["ZIPKIN_ENDPOINT"] == "http://zipkin:9411/api/v2/spans"
    assert env["OMS_ADMIN_TOKEN"] == "${OMS_ADMIN_TOKEN:-}"
    for passed in ("SMTP_HOST", "SMTP_PORT", "CARRIER_WEBHOOK_SECRET"):
        assert passed in env, f"{passed} is not passed to {svc.name}"


@pytest.mark.parametrize("svc", SERVICES, ids=SERVICE_IDS)
def test_service_entry_waits_for_infrastructure_and_checks_readyz(compose, svc: Service):
    entry = compose["services"][svc.name]
    deps = depends_on(entry)
    assert deps.get("kafka") == "service_healthy"
    assert deps.get("postgres") == "service_healthy"
    if "db-init" in deps:
        assert deps["db-init"] == "service_completed_successfully"
    assert "/readyz" in " ".join(map(str, entry["healthcheck"]["test"]))


def test_kafka_is_a_single_kraft_node(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    # The services' bootstrap address is advertised on the compose network.
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert any(a.endswith("://kafka:9092") for a in advertised)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "true"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
    ):
        assert env[key] == "1", key
    assert kafka.get("healthcheck"), "services wait for kafka to be healthy"


def test_postgres_runs_the_init_script_on_services_conf(compose):
    postgres = compose["services"]["postgres"]
    assert str(postgres["image"]).startswith("postgres:16")
    assert postgres.get("healthcheck"), "services wait for postgres to be healthy"
    mounts = mounts_of(postgres)
    init = [t for t, s in mounts.items() if t.startswith("/docker-entrypoint-initdb.d/")]
    assert len(init) == 1 and Path(mounts[init[0]]) == Path("./deploy/docker/postgres-init.sh")
    assert init[0].endswith(".sh")
    conf_path = env_of(postgres).get("OMS_SERVICES_CONF") or "/etc/oms/services.conf"
    assert Path(mounts[conf_path]) == Path("./deploy/services.conf")


def test_db_init_reruns_the_script_against_the_server(compose):
    # Init scripts run only on an empty volume: this one-shot covers services added afterwards.
    db_init = compose["services"]["db-init"]
    mounts = mounts_of(db_init)
    assert "./deploy/docker/postgres-init.sh" in mounts.values()
    assert Path(mounts[env_of(db_init)["OMS_SERVICES_CONF"]]) == Path("./deploy/services.conf")
    assert env_of(db_init)["PGHOST"] == "postgres"
    assert depends_on(db_init) == {"postgres": "service_healthy"}


def run_init_script(conf: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMS_INIT_DRY_RUN": "1", "OMS_SERVICES_CONF": str(conf)}
    return subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def test_init_script_creates_a_role_and_database_per_service():
    result = run_init_script(SERVICES_CONF)
    assert result.returncode == 0, result.stderr
    for svc in SERVICES:
        db = svc.database
        assert f"CREATE ROLE {db} LOGIN PASSWORD ''{db}''" in result.stdout
        assert f"CREATE DATABASE {db} OWNER {db}" in result.stdout


def test_init_script_follows_services_conf(tmp_path: Path):
    conf = tmp_path / "services.conf"
    conf.write_text(SERVICES_CONF.read_text().rstrip("\n") + "\n\n# added later\nreturns  returns  8005  returns")
    result = run_init_script(conf)
    assert result.returncode == 0, result.stderr
    assert "CREATE DATABASE returns OWNER returns" in result.stdout
    assert result.stdout.count("CREATE DATABASE") == len(SERVICES) + 1


def test_init_script_refuses_an_unsafe_database_name(tmp_path: Path):
    conf = tmp_path / "services.conf"
    conf.write_text("evil  evil  8009  x;DROP_DATABASE\n")
    result = run_init_script(conf)
    assert result.returncode != 0
    assert "CREATE" not in result.stdout


def test_dockerfile_builds_any_service_from_the_lock_file():
    text = DOCKERFILE.read_text()
    assert "python:3.11-slim" in text
    assert "uv==0.13.9" in text
    assert "uv sync --frozen" in text
    assert '--package "oms-${SERVICE}"' in text
    for arg in ("ARG SERVICE", "ARG MODULE"):
        assert arg in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "HTTP_HOST=0.0.0.0" in text
    assert "EXPOSE" in text
    assert "\nUSER " in text
    assert "python -m" in text


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for pattern in (".venv", ".cache", ".local", ".git"):
        assert pattern in patterns
    assert "__pycache__" in patterns or "**/__pycache__" in patterns


def test_docker_compose_config_is_valid():
    docker = shutil.which("docker")

    def ok(*args: str) -> bool:
        try:
            return subprocess.run([docker, *args], capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if docker is None or not ok("info"):
        pytest.skip("no Docker engine answers here: `docker compose config` not run")
    if not ok("compose", "version"):
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
