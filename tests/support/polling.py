"""The one way the tests wait for something to happen elsewhere (a service, a relay, a consumer)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 60, what: str = "a condition",
                     interval: float = 0.1) -> Any:
    """Awaits `check()` until it returns something truthy (and returns that); fails after `timeout`
    seconds naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {result!r})")
        await asyncio.sleep(interval)
