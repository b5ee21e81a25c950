"""Live tracking over server-sent events, correct with any number of tracking processes: every timeline
insert (whichever process or consumer made it) notifies `tracking_timeline` with its order id at
commit (a trigger, see the migration); each process holds one LISTEN connection and wakes the streams
of that order, which then read what is new from the database."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from prometheus_client import Gauge

log = logging.getLogger(__name__)

CHANNEL = "tracking_timeline"
APPLICATION_NAME = "tracking-timeline-listener"  # how the LISTEN connection shows in pg_stat_activity
STREAMS_OPEN = Gauge("oms_tracking_streams_open", "Live tracking streams open in this process")


class TimelineListener:
    """One LISTEN connection per process; streams subscribe by order id. After a lost connection it
    reconnects and wakes every stream, which reads again what it may have missed."""

    def __init__(self, dsn: str, *, keepalive: float = 10.0):
        self.dsn, self.keepalive = dsn, keepalive
        self._subs: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task | None = None
        self.connected = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tracking-timeline-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def add(self, order_id: UUID) -> asyncio.Event:
        wake = asyncio.Event()
        self._subs.setdefault(str(order_id), set()).add(wake)
        return wake

    def remove(self, order_id: UUID, wake: asyncio.Event) -> None:
        subs = self._subs.get(str(order_id))
        if subs is not None:
            subs.discard(wake)
            if not subs:
                del self._subs[str(order_id)]

    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        for wake in self._subs.get(payload, ()):
            wake.set()

    def _wake_all(self) -> None:
        for subs in self._subs.values():
            for wake in subs:
                wake.set()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn, server_settings={"application_name": APPLICATION_NAME})
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self.connected, backoff = True, 0.5
                self._wake_all()  # entries committed while nobody listened are read again
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), self.keepalive)
                    except TimeoutError:  # a silent dead connection shows only when used
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database went away: listen again soon
                log.warning("timeline listener lost its connection (%s: %s); reconnecting in %.1fs",
                            type(exc).__name__, exc, backoff)
            finally:
                self.connected = False
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10)


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


HEARTBEAT = b": heartbeat\n\n"
# No caching, and no buffering by nginx-like proxies: each event goes out as it happens.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def events(listener: TimelineListener, order_id: UUID, load: Callable[[], Awaitable[dict[str, Any]]],
                 heartbeat: float) -> AsyncIterator[bytes]:
    """The stream of one client: the current state (`state`), then each new timeline entry
    (`timeline`), and `status` / `shipments` when those change; a comment every `heartbeat` seconds
    of silence keeps proxies from closing it. It subscribes before its first read, so nothing
    committed in between is missed. Ends (and drops its subscription) when the client goes: the
    server cancels the response, which cancels the wait here."""
    STREAMS_OPEN.inc()
    wake = listener.add(order_id)
    try:
        first = await load()
        sent = {e["id"] for e in first["timeline"]}
        status = (first["status"], first["status_reason"])
        shipments = first["shipments"]
        yield sse("state", first)
        while True:
            try:
                await asyncio.wait_for(wake.wait(), heartbeat)
            except TimeoutError:
                yield HEARTBEAT
                continue
            wake.clear()  # before reading: a notification during the read wakes us again
            view = await load()
            for entry in view["timeline"]:
                if entry["id"] not in sent:
                    sent.add(entry["id"])
                    yield sse("timeline", entry, entry["id"])
            if (view["status"], view["status_reason"]) != status:
                status = (view["status"], view["status_reason"])
                yield sse("status", {"status": status[0], "status_reason": status[1]})
            if view["shipments"] != shipments:
                shipments = view["shipments"]
                yield sse("shipments", shipments)
    finally:
        listener.remove(order_id, wake)
        STREAMS_OPEN.dec()
