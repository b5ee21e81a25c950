"""One warning when Kafka becomes unreachable and one when it is back, instead of the Kafka client's
reconnect noise (about 800 error lines per service in a 15 s outage).

`KafkaOutageLog` is a logging filter on the service's log handlers: the first connection error the
Kafka client (aiokafka) logs while Kafka was reachable becomes one warning ("Kafka unreachable"), and
every connection error after it is counted, not written. While Kafka is down a probe opens a TCP
connection to the bootstrap servers every second; once one answers and the client has been quiet for
a moment, one warning says Kafka is back, with the outage's length and how many lines were held back.
Kafka client records that are not about connections (a rebalance under way among them) pass as they are."""

import asyncio
import logging
import re
import time

log = logging.getLogger(__name__)

_CONNECTION_TROUBLE = re.compile(
    r"unable (to )?connect|unable to update metadata|failed fetch|heartbeat|coordinator|connection|"
    r"could not send|cannot send|nodenotready|requesttimedout|timed out|broken pipe|reset by peer",
    re.IGNORECASE,
)
# The group protocol at work, not Kafka out of reach: "Heartbeat failed for group X because it is
# rebalancing", "OffsetCommit failed ... RebalanceInProgressError" (they passed for outages at every rebalance).
_REBALANCING = re.compile(r"rebalanc", re.IGNORECASE)


class KafkaOutageLog(logging.Filter):
    def __init__(self, bootstrap_servers: str, *, probe_interval: float = 1.0, quiet_for: float = 2.0):
        super().__init__()
        self.servers = [s.strip().rpartition(":") for s in bootstrap_servers.split(",") if s.strip()]
        self.probe_interval, self.quiet_for = probe_interval, quiet_for
        self.down_since: float | None = None
        self.last_trouble = 0.0
        self.suppressed = 0
        self._probe: asyncio.Task | None = None
        self.handlers: list[logging.Handler] = []  # where install() put it

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka") or record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if not _CONNECTION_TROUBLE.search(message) or _REBALANCING.search(message):
            return True
        self.last_trouble = time.monotonic()
        if self.down_since is not None:
            self.suppressed += 1
            return False
        self.down_since = self.last_trouble
        self.suppressed = 0
        log.warning("Kafka unreachable (%s); further Kafka client connection errors are held back until it is back",
                    message[:300])
        self._start_probe()
        return False

    def _start_probe(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # logged outside the event loop: the next record in it starts the probe
        if self._probe is None or self._probe.done():
            self._probe = loop.create_task(self._watch(), name="kafka-outage-probe")

    async def _reachable(self) -> bool:
        for host, _, port in self.servers:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), 1.0)
            except (OSError, TimeoutError, ValueError):
                continue
            writer.close()
            return True
        return False

    async def _watch(self) -> None:
        while self.down_since is not None:
            await asyncio.sleep(self.probe_interval)
            quiet = time.monotonic() - self.last_trouble >= self.quiet_for
            if quiet and await self._reachable():
                log.warning("Kafka reachable again after %.1fs (%d Kafka client error lines held back)",
                            time.monotonic() - self.down_since, self.suppressed)
                self.down_since = None

    async def stop(self) -> None:
        for handler in self.handlers:  # a stopped service's filter must not act on later records
            handler.removeFilter(self)
        self.handlers = []
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)


def install(bootstrap_servers: str) -> KafkaOutageLog:
    """Puts the filter on every handler of the root logger (set up by oms_platform.telemetry)."""
    outage = KafkaOutageLog(bootstrap_servers)
    for handler in logging.getLogger().handlers:
        handler.addFilter(outage)
        outage.handlers.append(handler)
    return outage
