"""The faults of a run, spread over the load window: SIGKILLs of random service processes (each started
again at once), a rolling restart of one service's replicas (SIGTERM, start, ready, next), one Kafka
restart and one PostgreSQL restart. Each recovery is timed: a killed process until its replacement
answers /readyz; Kafka and PostgreSQL until they are back and every service answers /readyz again."""

import asyncio
import os
import random
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

from tools.chaos.stack import Instance, Stack


@dataclass
class Faults:
    stack: Stack
    kills: int
    rolling: str | None = "orchestrator"
    targets: tuple[str, ...] | None = None  # the services whose processes may be killed (None: any)
    log: list[str] = field(default_factory=list)
    recovery: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)
    killed: int = 0
    _busy: set[str] = field(default_factory=set)
    # Cleared while Kafka or PostgreSQL restarts: a killed process is started again once they are back
    # (a start before would fail at once and only burn CPU, as a supervisor's backoff avoids).
    _infra_up: asyncio.Event = field(default_factory=asyncio.Event)
    _restarting: int = 0

    def __post_init__(self) -> None:
        self._infra_up.set()

    def say(self, text: str) -> None:
        line = f"[chaos {time.strftime('%H:%M:%S')}] {text}"
        self.log.append(line)
        print(line, flush=True)

    async def _start_again(self, inst: Instance, since: float, give_up_after: float = 300) -> None:
        """Starts it until it is ready: a start fails while Kafka or PostgreSQL is restarting (an operator,
        or Kubernetes, would start it again too)."""
        attempt = 0
        while True:
            attempt += 1
            await self._infra_up.wait()
            try:
                await asyncio.to_thread(self.stack.start, inst)
                self.recovery[inst.service].append(time.monotonic() - since)
                return
            except RuntimeError as exc:
                self.say(f"{inst.name} did not start (attempt {attempt}): {str(exc).strip()[-160:]!r}")
                if time.monotonic() - since > give_up_after:
                    self.failures.append(f"{inst.name} never came back")
                    return
                await asyncio.sleep(2)

    async def kill_one(self, rnd: random.Random) -> asyncio.Task | None:
        candidates = [i for i in self.stack.instances if i.name not in self._busy and self.stack.pid(i)
                      and (self.targets is None or i.service in self.targets)]
        if not candidates:
            return None
        inst = rnd.choice(candidates)
        pid = self.stack.pid(inst)
        if pid is None:
            return None
        self._busy.add(inst.name)
        os.kill(pid, signal.SIGKILL)
        self.killed += 1
        self.say(f"SIGKILL {inst.name} (pid {pid})")
        since = time.monotonic()

        async def back() -> None:
            try:
                while self.stack.pid(inst):  # gone before services.sh looks (else: "already running")
                    await asyncio.sleep(0.05)
                await self._start_again(inst, since)
            finally:
                self._busy.discard(inst.name)
        return asyncio.create_task(back())

    async def rolling_restart(self, service: str) -> None:
        self.say(f"rolling restart of {service}")
        for inst in self.stack.of(service):
            while inst.name in self._busy:
                await asyncio.sleep(0.2)
            self._busy.add(inst.name)
            try:
                pid = self.stack.pid(inst)
                since = time.monotonic()
                if pid:
                    os.kill(pid, signal.SIGTERM)
                    while self.stack.pid(inst):
                        await asyncio.sleep(0.1)
                await self._start_again(inst, since)
            finally:
                self._busy.discard(inst.name)

    async def all_ready(self, http: httpx.AsyncClient, timeout: float = 300) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = 0
            for inst in self.stack.instances:
                try:
                    resp = await http.get(f"{inst.url}/readyz", timeout=2)
                    # Back means consuming again too (order capture is ready without its consumers).
                    ok += resp.status_code == 200 and all(v == "ok" for v in resp.json().get("details", {}).values())
                except httpx.HTTPError:
                    pass
            if ok == len(self.stack.instances):
                return True
            await asyncio.sleep(0.5)
        return False

    async def restart_infra(self, http: httpx.AsyncClient, what: str) -> None:
        self.say(f"restarting {what}")
        since = time.monotonic()
        self._restarting += 1
        self._infra_up.clear()
        try:
            await asyncio.to_thread(self.stack.infra, f"restart-{what}")
        except RuntimeError as exc:
            self.failures.append(str(exc)[-500:])
            return
        finally:
            self._restarting -= 1
            if not self._restarting:  # Kafka's and PostgreSQL's restarts may overlap
                self._infra_up.set()
        self.recovery[what].append(time.monotonic() - since)
        await asyncio.sleep(1)  # let /readyz notice it was gone before asking whether all are back
        if await self.all_ready(http):
            self.recovery[f"services after {what}"].append(time.monotonic() - since)
        else:
            self.failures.append(f"services not all ready 300 s after the {what} restart")

    async def run(self, http: httpx.AsyncClient, seconds: float, seed: int) -> None:
        rnd = random.Random(seed)
        events: list[tuple[float, str]] = [(seconds * (k + 1) / (self.kills + 1), "kill") for k in range(self.kills)]
        if self.stack.infra_profile:
            events += [(seconds * 0.3, "kafka"), (seconds * 0.65, "postgres")]
        if self.rolling and self.stack.of(self.rolling):
            events.append((seconds * 0.45, "rolling"))
        start, pending = time.monotonic(), []
        for at, what in sorted(events):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            if what == "kill":
                task = await self.kill_one(rnd)
                if task:
                    pending.append(task)
            elif what == "rolling":
                pending.append(asyncio.create_task(self.rolling_restart(self.rolling or "")))
            else:  # in the background: the kills keep their schedule however long a broker takes to start
                pending.append(asyncio.create_task(self.restart_infra(http, what)))
        await asyncio.gather(*pending)
