"""A database outage seen from HTTP: requests that need PostgreSQL while it is unreachable answer 503
with Retry-After in the contract's error shape (not 500 with a traceback each), and the log gets one
warning when the outage starts and one when a request succeeds again, with its length and how many
requests were refused meanwhile."""

import asyncio
import logging
import time

import asyncpg

log = logging.getLogger(__name__)

# Errors that say PostgreSQL (not the request) is the problem.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
RETRY_AFTER_SECONDS = 1


class DatabaseOutage:
    def __init__(self) -> None:
        self.since: float | None = None
        self.refused = 0

    def failed(self, exc: BaseException) -> None:
        self.refused += 1
        if self.since is None:
            self.since = time.monotonic()
            log.warning("database unavailable (%s: %s); requests that need it answer 503 until it is back",
                        type(exc).__name__, str(exc)[:300])

    def succeeded(self) -> None:
        if self.since is not None:
            log.warning("database reachable again after %.1fs (%d requests answered 503)",
                        time.monotonic() - self.since, self.refused)
            self.since, self.refused = None, 0
