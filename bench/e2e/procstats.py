"""CPU time and context switches of processes, from /proc."""

import os
from pathlib import Path

from bench.env import ROOT, process_cpu_seconds


def kafka_pid(bootstrap: str) -> int | None:
    """The local Kafka broker serving `bootstrap` (dev or test profile of deploy/local/infra.sh): the
    profile whose broker listens on that port (its run/kafka.pid, checked against its config)."""
    port = bootstrap.rsplit(":", 1)[-1]
    for run in sorted((ROOT / ".local").glob("*/run")):
        try:
            pid = int((run / "kafka.pid").read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        config = next((Path(a.decode()) for a in argv if a.endswith(b".properties")), None)
        try:
            listens = config is not None and f":{port}" in config.read_text()
        except OSError:
            listens = False
        if listens and process_cpu_seconds(pid) is not None:
            return pid
    return None


def process_table() -> dict[int, tuple[str, float]]:
    """Every live process of the machine: pid -> (a short label, user + system CPU seconds)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        cpu = process_cpu_seconds(pid)
        if cpu is None:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        found[pid] = (_label([a.decode(errors="replace") for a in argv if a]), cpu)
    return found


def context_switches(pid: int) -> tuple[int, int] | None:
    """(voluntary, involuntary) context switches of a live process so far (all its threads): a
    voluntary one is a wait (for a socket, a lock, a timer), an involuntary one a preemption."""
    vol = inv = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                inv += int(line.split()[1])
    return vol, inv


_TICK = os.sysconf("SC_CLK_TCK")


def user_system(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """name -> (user, system) CPU seconds so far of live processes."""
    out = {}
    for name, pid in pids.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        out[name] = (int(fields[11]) / _TICK, int(fields[12]) / _TICK)
    return out


def switches_of(groups: dict[str, list[int]]) -> dict[str, dict[int, tuple[int, int]]]:
    return {name: {pid: cs for pid in pids if (cs := context_switches(pid)) is not None}
            for name, pids in groups.items()}


def switch_delta(before: dict[str, dict[int, tuple[int, int]]],
                 after: dict[str, dict[int, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    out = {}
    for name, pids in after.items():
        vol = inv = 0
        for pid, (v, i) in pids.items():
            v0, i0 = before.get(name, {}).get(pid, (0, 0))
            vol, inv = vol + v - v0, inv + i - i0
        out[name] = (vol, inv)
    return out


def _label(argv: list[str]) -> str:
    if not argv:
        return "[kernel]"
    if argv[0].startswith("postgres:"):  # "postgres: <user> <database> <client> <state>"
        return " ".join(argv[0].split()[:3])
    if argv[0].endswith("java"):
        main = next((a for a in argv if a in ("kafka.Kafka", "-jar")), "")
        conf = next((a for a in argv[::-1] if a.endswith((".properties", ".jar"))), "")
        return f"java {main} {conf.replace(str(ROOT) + '/', '')}".strip()
    if len(argv) > 1 and argv[1] == "-m":
        return f"{Path(argv[0]).name} -m {' '.join(argv[2:4])}"
    return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv[:3]))[:70]
