"""py-spy flame graphs of the services during a measured window (--e2e-flame), beside the results."""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.env import RESULTS_DIR, Context, Server, say


def flame_graphs(ctx: Context, servers: dict[str, Server], rate: float, seconds: float) -> list[tuple[Any, Path]]:
    """Starts `py-spy record` on every server for the window: [(its process, the SVG it writes)]. Samples
    at 50 Hz, idle frames left out, so a graph shows where the CPU goes, not where the loop waits."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        say("py-spy is not installed (uv sync: it is a dev dependency): no flame graphs")
        return []
    started = []
    for name, server in servers.items():
        path = RESULTS_DIR / f"e2e-{ctx.stamp}-{name.replace('#', '-')}-{rate:g}per_s.svg"
        path.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds)), "--rate", "50",
             "--nonblocking", "--format", "flamegraph", "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        started.append((proc, path))
    return started
