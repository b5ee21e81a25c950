"""The Kafka outage log's filter: a rebalance is not an outage; a connection error is."""

import logging

from oms_platform.kafka_outages import KafkaOutageLog


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.consumer.group_coordinator", logging.WARNING, __file__, 1, message, None, None)


def test_a_rebalance_passes_and_starts_no_outage() -> None:
    f = KafkaOutageLog("127.0.0.1:9092")
    assert f.filter(record("Heartbeat failed for group g because it is rebalancing"))
    assert f.filter(record("OffsetCommit failed for group g due to group error "
                           "(RebalanceInProgressError), will rejoin"))
    assert f.down_since is None


def test_a_connection_error_is_held_back_as_an_outage() -> None:
    f = KafkaOutageLog("127.0.0.1:9092")
    assert not f.filter(record("Unable connect to node with id 1: [Errno 111] Connect call failed"))
    assert f.down_since is not None
