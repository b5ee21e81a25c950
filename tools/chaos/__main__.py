"""python -m tools.chaos [options]: the fault-injection run of `make chaos` (see tools/chaos/__init__.py)."""

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tools.chaos.checks import FAILING, run_checks, settle
from tools.chaos.effects import check_effects
from tools.chaos.faults import Faults
from tools.chaos.journeys import Journeys
from tools.chaos.load import Load
from tools.chaos.parties import Billing, MailLog, Webhooks
from tools.chaos.stack import INFRA_SH, ROOT, Stack


@dataclass
class Report:
    checks: dict[str, tuple[int, list[str]]]
    recovery: dict[str, list[float]]
    kills: int
    orders: int
    failures: list[str]

    @property
    def failed(self) -> list[str]:
        return [name for name in FAILING if self.checks.get(name, (0,))[0]] + (["faults"] if self.failures else [])

    def text(self) -> str:
        lines = [f"orders accepted: {self.orders}; processes SIGKILLed: {self.kills}"]
        for name, (figure, details) in self.checks.items():
            lines.append(f"{name:<42} {figure}")
            lines += [f"    {d}" for d in details]
        for component, times in sorted(self.recovery.items()):
            lines.append(f"recovery {component:<33} median {statistics.median(times):.1f} s, max {max(times):.1f} s "
                         f"({len(times)}x)")
        lines += [f"FAULT: {f}" for f in self.failures]
        lines.append("FAILED: " + ", ".join(self.failed) if self.failed else "PASSED: nothing lost, nothing doubled")
        return "\n".join(lines)


async def chaos(stack: Stack, *, rate: float, seconds: float, kills: int, settle_seconds: float, seed: int,
                skus: int = 5, on_hand: int = 200, rolling: str | None = "orchestrator",
                targets: tuple[str, ...] | None = None) -> Report:
    load = Load(stack, rate, [f"CHAOS-{i}" for i in range(skus)])
    load.journeys = Journeys(stack)
    faults = Faults(stack, kills, rolling, targets)
    billing, webhooks, mail = Billing(stack), Webhooks(), MailLog(stack.state_dir / "logs" / "mail.log")
    webhooks.start()
    await billing.start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await load.setup(http, on_hand)
            await webhooks.subscribe(http, stack)
            faults.say(f"load: {rate}/s for {seconds:.0f} s over {len(stack.of('order-capture'))} order-capture "
                       f"replica(s); {kills} SIGKILLs of {', '.join(targets) if targets else 'any service'}, "
                       f"a rolling restart of {rolling}"
                       + (", a Kafka and a PostgreSQL restart" if stack.infra_profile else "")
                       + (f"; one order in {load.journeys.every} shipped, delivered, returned and refunded"
                          if load.journeys.enabled() else "; no returns (needs fulfilment, tracking, returns and "
                          "CARRIER_WEBHOOK_SECRET)"))
            await asyncio.gather(load.run(http, seconds), faults.run(http, seconds, seed))
            faults.say(f"load done: {len(load.placed)} orders accepted, {load.retries} retries; "
                       "waiting for them to settle")
            statuses = await settle(stack, load, settle_seconds)
        checks = await run_checks(stack, load, statuses)
        dups, more = await check_effects(stack, load, statuses, billing, webhooks, mail)
    finally:
        await billing.stop()
        webhooks.stop()
    figure, details = checks["duplicated effects"]
    checks["duplicated effects"] = (figure + len(dups), (details + dups)[:10])
    checks.update(more)
    if load.gave_up:
        checks["orders refused after 120 s of retries"] = (len(load.gave_up), load.gave_up[:10])
    return Report(checks, dict(faults.recovery), faults.killed, len(load.placed), faults.failures)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__)
    p.add_argument("--seconds", type=float, default=120, help="length of the load and fault window (default 120)")
    p.add_argument("--rate", type=float, default=10, help="orders per second (default 10)")
    p.add_argument("--kills", type=int, default=24, help="SIGKILLs of random service processes (default 24)")
    p.add_argument("--settle", type=float, default=180, help="seconds the orders get to settle afterwards")
    p.add_argument("--seed", type=int, default=int(time.time()), help="seed of the random choices")
    p.add_argument("--infra-profile", default="dev", choices=("dev", "test", "none"),
                   help="whose Kafka and PostgreSQL infra.sh restarts (none: no infrastructure restarts)")
    args = p.parse_args()
    # The run's own Kafka clients (billing, the status reader) log every refused connection while
    # Kafka restarts on purpose: that is expected here, not news.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    env = dict(os.environ)
    kept = Path(env.get("OMS_STATE_DIR") or ROOT / ".local" / "dev") / "admin-token"  # make up's, when none was given
    if not env.get("OMS_ADMIN_TOKEN") and kept.is_file():
        env["OMS_ADMIN_TOKEN"] = kept.read_text().strip()
    if not env.get("OMS_ADMIN_TOKEN"):
        print("make chaos needs the OMS_ADMIN_TOKEN `make up` was given (it creates channel keys and stock)",
              file=sys.stderr)
        return 2
    profile = None if args.infra_profile == "none" else args.infra_profile
    if not (env.get("KAFKA_BOOTSTRAP") and env.get("PG_ADMIN_DSN")):
        out = subprocess.run([str(INFRA_SH), args.infra_profile if profile else "dev", "env"], capture_output=True,
                             text=True, check=True).stdout
        env.update(line.split("=", 1) for line in out.splitlines() if "=" in line)
    stack = Stack.from_env(env, env["KAFKA_BOOTSTRAP"], env["PG_ADMIN_DSN"], profile)
    print(f"[chaos] seed {args.seed}")
    report = asyncio.run(chaos(stack, rate=args.rate, seconds=args.seconds, kills=args.kills,
                               settle_seconds=args.settle, seed=args.seed))
    print(report.text())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
