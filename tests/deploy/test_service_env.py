"""`make up` on a running stack restarts a service whose settings changed (deploy/local/services.sh
with the fingerprints of deploy/local/service_env.py), and leaves alone one whose settings did not."""

import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.deploy.support import ROOT, load_script
from tests.support.infra import Infra
from tests.support.services import free_port, spaced_free_ports

service_env = load_script("local/service_env.py")
SERVICES_SH = ROOT / "deploy" / "local" / "services.sh"


def test_fingerprint_keeps_the_service_settings_only_and_hashes_values():
    names = service_env.setting_names("order_capture")
    assert {"OMS_ADMIN_TOKEN", "DATABASE_URL", "API_KEY_CACHE_SECONDS", "LOG_LEVEL"} <= names
    env = {"OMS_ADMIN_TOKEN": "s3cret", "PWD": "/somewhere", "SHLVL": "2", "log_level": "DEBUG",
           "OTEL_RESOURCE_ATTRIBUTES": "a=b"}
    fp = service_env.fingerprint(env, names)
    assert set(fp) == {"OMS_ADMIN_TOKEN", "LOG_LEVEL", "OTEL_RESOURCE_ATTRIBUTES"}
    assert "s3cret" not in "".join(fp.values()), "the recorded file must not hold secrets"


def test_changed_names_set_unset_and_changed_values():
    names = {"OMS_ADMIN_TOKEN", "SMTP_HOST", "LOG_LEVEL"}
    before = service_env.fingerprint({"OMS_ADMIN_TOKEN": "a", "SMTP_HOST": "mail", "SHLVL": "1"}, names)
    assert service_env.changed(before, service_env.fingerprint(
        {"OMS_ADMIN_TOKEN": "a", "SMTP_HOST": "mail", "SHLVL": "3", "TERM": "xterm"}, names)) == []
    after = service_env.fingerprint({"OMS_ADMIN_TOKEN": "b", "LOG_LEVEL": "DEBUG"}, names)
    assert service_env.changed(before, after) == ["LOG_LEVEL", "OMS_ADMIN_TOKEN", "SMTP_HOST"]
    # The file format services.sh stores and compares.
    text = "\n".join(f"{k} {v}" for k, v in before.items())
    assert service_env.parse(text) == before


def _status(url: str, token: str) -> int:
    return httpx.post(f"{url}/v1/admin/api-keys", json={"channel": "web"},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


@pytest.mark.infra
def test_make_up_restarts_a_running_service_whose_token_changed(infra: Infra, tmp_path: Path):
    port, db = free_port(), f"svcsh_{uuid.uuid4().hex[:8]}"
    conf = tmp_path / "services.conf"
    conf.write_text(f"order-capture  order_capture  {port}  {db}\n")
    base = {k: v for k, v in os.environ.items() if k != "OMS_ADMIN_TOKEN"}
    base.update(SERVICES_CONF=str(conf), OMS_STATE_DIR=str(tmp_path / "state"), OMS_SERVICES_INFRA="external",
                KAFKA_BOOTSTRAP=infra.kafka_bootstrap, PG_ADMIN_DSN=infra.pg_admin_dsn,
                KAFKA_GROUP_SUFFIX=f".{db}", KAFKA_AUTO_OFFSET_RESET="latest", LOG_LEVEL="WARNING")
    url = f"http://127.0.0.1:{port}"
    pid_file = tmp_path / "state" / "run" / "order-capture.pid"

    def up(**env: str) -> str:
        done = subprocess.run([str(SERVICES_SH), "up"], env={**base, **env}, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    try:
        out = up(OMS_ADMIN_TOKEN="first")
        assert "starting order-capture" in out
        pid = pid_file.read_text()
        assert _status(url, "first") == 201

        out = up(OMS_ADMIN_TOKEN="first", SHLVL="7")  # an unrelated variable changes nothing
        assert "order-capture already running" in out and pid_file.read_text() == pid

        out = up(OMS_ADMIN_TOKEN="second")
        assert "settings changed since it started (OMS_ADMIN_TOKEN): restarting" in out
        assert pid_file.read_text() != pid
        assert _status(url, "second") == 201
        assert _status(url, "first") == 401
        assert "second" not in (tmp_path / "state" / "run" / "order-capture.env").read_text()

        # No token given: a dev token is generated once, kept in the state folder, and used again.
        out = up()
        token_file = tmp_path / "state" / "admin-token"
        assert "no OMS_ADMIN_TOKEN given: using the dev one kept in" in out and "restarting" in out
        token = token_file.read_text().strip()
        assert len(token) > 30 and token_file.stat().st_mode & 0o077 == 0
        assert _status(url, token) == 201
        pid = pid_file.read_text()
        out = up()
        assert "order-capture already running" in out and pid_file.read_text() == pid
        assert token_file.read_text().strip() == token
    finally:
        subprocess.run([str(SERVICES_SH), "down"], env=base, capture_output=True, timeout=60)
    assert not pid_file.exists()


@pytest.mark.infra
def test_make_up_runs_replicas_each_on_its_port_and_stops_the_extra_ones(infra: Infra, tmp_path: Path):
    step = 7  # replicas on port, port+7, port+14, all checked free below the ephemeral range
    [port], db = spaced_free_ports(1, 3, step), f"svcsh_{uuid.uuid4().hex[:8]}"
    conf = tmp_path / "services.conf"
    conf.write_text(f"order-capture  order_capture  {port}  {db}\n")
    run = tmp_path / "state" / "run"
    base = {**os.environ, "SERVICES_CONF": str(conf), "OMS_STATE_DIR": str(tmp_path / "state"),
            "OMS_SERVICES_INFRA": "external", "KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
            "PG_ADMIN_DSN": infra.pg_admin_dsn, "KAFKA_GROUP_SUFFIX": f".{db}", "KAFKA_AUTO_OFFSET_RESET": "latest",
            "LOG_LEVEL": "WARNING", "OMS_ADMIN_TOKEN": "tok", "REPLICA_PORT_STEP": str(step)}

    def sh(cmd: str, **env: str) -> str:
        done = subprocess.run([str(SERVICES_SH), cmd], env={**base, **env}, capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    try:
        out = sh("up", REPLICAS="order-capture=3,inventory=2")  # inventory is not in this conf: ignored
        for k, p in enumerate((port, port + step, port + 2 * step)):
            inst = "order-capture" if k == 0 else f"order-capture.{k}"
            assert f"{inst} ready: http://127.0.0.1:{p}" in out
            assert (run / f"{inst}.pid").exists()
        # One database for all: a key created through one replica works through another.
        key = httpx.post(f"http://127.0.0.1:{port + step}/v1/admin/api-keys", json={"channel": "web"},
                         headers={"Authorization": "Bearer tok"}, timeout=30).json()["key"]
        assert httpx.get(f"http://127.0.0.1:{port + 2 * step}/v1/orders", headers={"Authorization": f"Bearer {key}"},
                         timeout=30).status_code == 200
        # Each its own static member id: the settings fingerprints differ only there and in the port.
        fp = {k: service_env.parse((run / f"{inst}.env").read_text())
              for k, inst in enumerate(("order-capture", "order-capture.1"))}
        assert service_env.changed(fp[0], fp[1]) == ["HTTP_PORT", "KAFKA_GROUP_INSTANCE_ID"]

        out = sh("up", REPLICAS="1")
        assert "stopping order-capture.1" in out and "stopping order-capture.2" in out
        assert "order-capture already running" in out
        assert not (run / "order-capture.1.pid").exists()
        status = sh("status")
        assert "order-capture: running" in status and "order-capture.1" not in status
    finally:
        sh("down", REPLICAS="3")
    assert not list(run.glob("*.pid"))
