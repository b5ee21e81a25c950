"""`make demo` (deploy/local/demo.py) against every service of deploy/services.conf as real processes:
the whole journey runs, each step prints the order's status, the emails of the delivery log and the
saga's steps, and a second run on the same system works too (fresh ids)."""

import asyncio
import re
import sys
from collections.abc import AsyncIterator

import pytest

from tests.support.infra import ROOT
from tests.support.notification import SmtpSink
from tests.support.services import ADMIN_TOKEN, service_table
from tests.support.system import System

pytestmark = pytest.mark.infra

SECRET = "demo-carrier-secret"
ALL = tuple(service_table())


@pytest.fixture(scope="module")
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
async def system(infra, log_dir, smtp: SmtpSink) -> AsyncIterator[System]:
    env = {"tracking": {"CARRIER_WEBHOOK_SECRET": SECRET},
           "notification": {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SENDER_POLL_SECONDS": "0.2",
                            "RETRY_BASE_SECONDS": "0.3", "RETRY_MAX_SECONDS": "2"}}
    system = await System.start(infra, log_dir, services=ALL, env=env)
    yield system
    await system.stop()


async def run_demo(system: System) -> tuple[int, str, str]:
    urls = [arg for name in ALL for arg in ("--url", f"{name}={system.url(name)}")]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "deploy" / "local" / "demo.py"), *urls, "--kafka", system.infra.kafka_bootstrap,
        "--timeout", "180", env={"PATH": "/usr/bin:/bin", "OMS_ADMIN_TOKEN": ADMIN_TOKEN,
                                "CARRIER_WEBHOOK_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 600)
    return proc.returncode or 0, out.decode(), err.decode()


def statuses(out: str) -> list[str]:
    return re.findall(r"status: (\w+)$", out, flags=re.M)


async def test_the_demo_carries_an_order_from_stock_to_refund(system: System, smtp: SmtpSink):
    code, out, err = await run_demo(system)
    assert code == 0, out + err
    print(out)
    assert statuses(out) == ["pending", "confirmed", "shipped", "delivered", "return_requested",
                             "partially_returned"], out
    order_id = re.search(r"placed order ([0-9a-f-]{36})", out)[1]  # type: ignore[index]
    # every party speaks, in order
    parties = re.findall(r"^\s*\d+\. (\w+)", out, flags=re.M)
    assert parties == ["operator", "operator", "channel", "OMS", "warehouse", "OMS", "carrier", "OMS", "customer",
                       "warehouse", "OMS", "billing"], out
    # the emails, from notification's delivery log, as they happened and all sent in the end (the SMTP
    # server got them)
    assert re.search(r"^ +emails: order_confirmed -> ", out, flags=re.M), out
    summary = re.search(r"^emails: 5 to (\S+@example\.com): (.*)$", out, flags=re.M)
    assert summary, out
    assert summary[2] == ("order_confirmed (sent), shipment_dispatched (sent), order_delivered (sent), "
                          "return_approved (sent), refund_issued (sent)")
    assert any(summary[1] in m["To"] for m in smtp.received)
    # the saga's steps, from the orchestrator
    saga = " ".join(re.findall(r"saga: +(.*)$", out, flags=re.M))
    assert "reserve" in saga and "succeeded" in saga, out
    # the trace: a Zipkin link to the order's trace, or a search for it
    link = re.search(r"trace: +(\S+)", out)[1]  # type: ignore[index]
    assert re.fullmatch(rf"http://127\.0\.0\.1:9411/zipkin/(traces/[0-9a-f]{{32}}|\?annotationQuery=oms\.order_id%3D{order_id})",
                        link), link
    assert out.rstrip().splitlines()[-1].startswith(f"done: order {order_id} went pending -> confirmed")

    # Rerunnable: a second run on the same system makes a new order with new SKUs, location and key.
    code, again, err = await run_demo(system)
    assert code == 0, again + err
    assert statuses(again) == statuses(out)
    second = re.search(r"placed order ([0-9a-f-]{36})", again)[1]  # type: ignore[index]
    assert second != order_id
    assert re.search(r"(DEMO-TEE-\w+)", again)[1] != re.search(r"(DEMO-TEE-\w+)", out)[1]  # type: ignore[index]


async def test_the_demo_says_what_is_missing_without_a_stack(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "deploy" / "local" / "demo.py"), "--url", "inventory=http://127.0.0.1:9",
        "--timeout", "5", env={"PATH": "/usr/bin:/bin", "OMS_ADMIN_TOKEN": "x", "CARRIER_WEBHOOK_SECRET": "y"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 1
    assert "is the stack up? `make up`" in err.decode()


# --- the README: every ```bash block runs, in order, and answers what the README shows ------------------

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
ASSIGNED = re.compile(r"(?:^|;)\s*(?:export\s+)?([A-Za-z_]\w*)=", re.M)


def readme_blocks() -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in FENCE.finditer(README.read_text())]


def chunks(block: str) -> list[tuple[str, list[str]]]:
    """(commands, expected answer lines): a chunk ends at its `# -> ` lines."""
    out: list[tuple[str, list[str]]] = []
    code: list[str] = []
    expected: list[str] = []
    for line in block.splitlines():
        if line.startswith("# -> "):
            expected.append(line[5:].strip())
            continue
        if expected:
            out.append(("\n".join(code), expected))
            code, expected = [], []
        code.append(line)
    if code or expected:
        out.append(("\n".join(code), expected))
    return out


def matches(expected: list[str], got: str) -> bool:
    pattern = "\n".join(".*?".join(re.escape(part) for part in line.split("...")) for line in expected)
    return re.fullmatch(pattern, got.strip(), flags=re.S) is not None


def test_readme_marks_every_curl_block_to_be_run():
    """A block the test does not run (```sh, ```json, indented) holds no HTTP call."""
    blocks = readme_blocks()
    assert sum(lang == "bash" for lang, _ in blocks) >= 10
    for lang, text in blocks:
        assert lang == "bash" or "curl" not in text, f"a {lang or 'plain'} block with curl is not run:\n{text}"


async def test_every_bash_block_of_the_readme_answers_as_shown(system: System, tmp_path):
    ports = {port: system.url(name).removeprefix("http://") for name, (_, port, _) in service_table().items()}
    blocks = [text for lang, text in readme_blocks() if lang == "bash"]
    names = sorted({n for text in blocks for n in ASSIGNED.findall(text)})
    state = tmp_path / "state.sh"
    state.write_text("")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path), "OMS_ADMIN_TOKEN": ADMIN_TOKEN,
           "CARRIER_WEBHOOK_SECRET": SECRET}
    ran = 0
    for text in blocks:
        text = re.sub(r"localhost:(80\d\d)", lambda m: ports[int(m[1])], text)
        for code, expected in chunks(text):
            script = (f"set -eo pipefail\nsource {state}\n{code}\n"
                      f"{{ declare -p {' '.join(names)} 2>/dev/null || true; declare -f; }} > {state}.new\n")
            # What a person does with an answer that is not there yet (the OMS works asynchronously):
            # look again a moment later. A wrong answer stays wrong and fails after the deadline.
            deadline = asyncio.get_running_loop().time() + 120
            while True:
                proc = await asyncio.create_subprocess_exec("bash", "-c", script, cwd=tmp_path, env=env,
                                                            stdout=asyncio.subprocess.PIPE,
                                                            stderr=asyncio.subprocess.PIPE)
                out, err = (b.decode() for b in await proc.communicate())
                if proc.returncode == 0 and (not expected or matches(expected, out)):
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"README command:\n{code}\nexpected:\n{chr(10).join(expected)}\n"
                                         f"got (exit {proc.returncode}):\n{out}{err}")
                await asyncio.sleep(1)
            (tmp_path / "state.sh.new").replace(state)
            ran += 1
    assert ran > 30

    # The answers /docs shows as examples have the shape of the real ones (same fields, all the way down).
    ids = await asyncio.create_subprocess_exec("bash", "-c", f"source {state}; echo $ORDER_ID $RETURN_ID",
                                               stdout=asyncio.subprocess.PIPE)
    order_id, return_id = (await ids.communicate())[0].decode().split()
    from fulfilment.api import SHIPMENTS_EXAMPLE
    from inventory.api import RESERVATION_EXAMPLE, STOCK_EXAMPLE
    from notification.api import DELIVERY_LOG_EXAMPLE
    from orchestrator.api import SAGA_EXAMPLE
    from order_capture.api import ORDER_EXAMPLE
    from returns.api import RETURN_EXAMPLE
    for example, service, path in (
            (ORDER_EXAMPLE, "order-capture", f"/v1/orders/{order_id}"),
            (STOCK_EXAMPLE, "inventory", "/v1/stock/TSHIRT-RED-M"),
            (RESERVATION_EXAMPLE, "inventory", f"/v1/reservations/{order_id}"),
            (SHIPMENTS_EXAMPLE, "fulfilment", f"/v1/shipments?order_id={order_id}"),
            (SAGA_EXAMPLE, "orchestrator", f"/v1/sagas/{order_id}"),
            (DELIVERY_LOG_EXAMPLE, "notification", f"/v1/notifications?order_id={order_id}"),
            (RETURN_EXAMPLE, "returns", f"/v1/returns/{return_id}")):
        assert_same_shape(example, await system.call("GET", service, path), f"{service} {path}")


def assert_same_shape(example: object, real: object, where: str) -> None:
    if isinstance(example, dict) and isinstance(real, dict):
        assert set(example) == set(real), f"{where}: /docs shows {sorted(example)}, the answer has {sorted(real)}"
        for key in example:
            assert_same_shape(example[key], real[key], f"{where}.{key}")
    elif isinstance(example, list) and isinstance(real, list) and example and real:
        assert_same_shape(example[0], real[0], f"{where}[0]")
