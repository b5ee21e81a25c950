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
from tests.support.services import free_port

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
    finally:
        subprocess.run([str(SERVICES_SH), "down"], env=base, capture_output=True, timeout=60)
    assert not pid_file.exists()
