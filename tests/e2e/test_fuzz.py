"""schemathesis against every service's own OpenAPI (README, Input rules): generated requests, valid
and invalid, as the operator and as a channel; none may answer 5xx, and every answer must be one the
document states (its status, content type and schema: oms_platform.openapi). `make test` runs a few
examples per operation with a fixed seed (fast and repeatable); `make fuzz` runs the exhaustive one
(OMS_FUZZ_EXAMPLES, OMS_FUZZ_PHASES, OMS_FUZZ_SEED: a new seed each run unless given)."""

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.services import ADMIN_TOKEN, service_table
from tests.support.system import System

pytestmark = pytest.mark.infra

FUZZED = tuple(service_table())  # every service of deploy/services.conf
EXAMPLES = os.environ.get("OMS_FUZZ_EXAMPLES", "3")
PHASES = os.environ.get("OMS_FUZZ_PHASES", "examples,fuzzing")
SEED = os.environ.get("OMS_FUZZ_SEED", "13")
ST = str(Path(sys.executable).with_name("st"))
# A live stream answers for as long as the client listens; /readyz is 503 by design while a consumer
# group rebalances: neither is a bug schemathesis could find.
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXCLUDE_PATHS = r"(/stream$)|(^/readyz$)"


@pytest.fixture(scope="module")
async def system(infra, log_dir) -> AsyncIterator[System]:
    system = await System.start(infra, log_dir, services=FUZZED)
    yield system
    await system.stop()


async def schemathesis(url: str, token: str, log: Path) -> tuple[int, str]:
    args = [ST, "run", f"{url}/openapi.json", "--checks", CHECKS, "--max-examples", EXAMPLES,
            "--phases", PHASES, "--workers", "2", "--request-timeout", "20", "--exclude-path-regex", EXCLUDE_PATHS,
            "-H", f"Authorization: Bearer {token}", "--no-color"]
    if SEED:
        args += ["--seed", SEED]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    await asyncio.to_thread(log.write_text, text)
    return proc.returncode or 0, text


@pytest.mark.parametrize("service", FUZZED)
@pytest.mark.parametrize("caller", ["operator", "channel"])
async def test_generated_requests_get_documented_answers(system: System, log_dir: Path, service: str, caller: str):
    token = ADMIN_TOKEN if caller == "operator" else system.channel_key
    assert token
    log = log_dir / f"schemathesis-{service}-{caller}.log"
    code, out = await schemathesis(system.url(service), token, log)
    assert code == 0, f"schemathesis found problems in {service} as {caller} (whole output: {log}):\n{out[-6000:]}"
