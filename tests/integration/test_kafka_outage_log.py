"""A Kafka outage logs one warning when it starts and one when it ends, not the client's reconnect
noise: a real aiokafka client retrying against a port where nothing listens, then a listener there."""

import asyncio
import contextlib
import logging
import socket

from aiokafka import AIOKafkaProducer

from oms_platform.kafka_outages import KafkaOutageLog


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.getMessage()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends() -> None:
    port = _free_port()
    outage = KafkaOutageLog(f"127.0.0.1:{port}", probe_interval=0.2, quiet_for=0.5)
    collect = _Collect()
    collect.addFilter(outage)
    root = logging.getLogger()
    # Filters of services started in this process earlier would report the same outage too.
    others = [(h, f) for h in root.handlers for f in h.filters if isinstance(f, KafkaOutageLog)]
    for h, f in others:
        h.removeFilter(f)
    root.addHandler(collect)
    old_level = root.level
    root.setLevel(logging.INFO)
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=300,
                                retry_backoff_ms=20, metadata_max_age_ms=100)
    try:
        for _ in range(5):  # every start attempt logs connection errors from the client
            with contextlib.suppress(Exception):
                await producer.start()
        with contextlib.suppress(Exception):
            await producer.stop()
        assert outage.down_since is not None and outage.suppressed >= 1
        client_lines = [m for name, m in collect.lines if name.startswith("aiokafka")]
        assert client_lines == [], client_lines  # the client's errors are held back
        ours = [m for name, m in collect.lines if name == "oms_platform.kafka_outages"]
        assert len(ours) == 1 and ours[0].startswith("Kafka unreachable")

        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)  # "Kafka" is back
        async with server:
            for _ in range(50):
                if outage.down_since is None:
                    break
                await asyncio.sleep(0.1)
        ours = [m for name, m in collect.lines if name == "oms_platform.kafka_outages"]
        assert len(ours) == 2 and ours[1].startswith("Kafka reachable again after"), ours
        # Other Kafka client records still pass.
        logging.getLogger("aiokafka.consumer").warning("Topic x not authorized")
        assert ("aiokafka.consumer", "Topic x not authorized") in collect.lines
    finally:
        await outage.stop()
        root.removeHandler(collect)
        root.setLevel(old_level)
        for h, f in others:
            h.addFilter(f)


async def test_a_stopped_filter_leaves_the_handlers() -> None:
    from oms_platform.kafka_outages import install

    outage = install("127.0.0.1:1")
    handlers = list(outage.handlers)
    assert all(outage in h.filters for h in handlers)
    await outage.stop()
    assert not any(outage in h.filters for h in handlers)
