"""Crash points for failure tests: with OMS_FAULT=<point> the process SIGKILLs itself at that point,
exactly as a power cut would stop it. Unset in production; costs one dict lookup."""

import os
import signal

_ACTIVE = frozenset(filter(None, os.environ.get("OMS_FAULT", "").split(",")))


def crash_point(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
