"""`make topics`, `make tail` and the Apache Kafka command-line tools of deploy/local/bin/, against the
test Kafka: partitions and a consumer group's lag as Kafka reports them, envelopes as they arrive."""

import asyncio
import json
import os
import re
import subprocess
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from oms_platform.kafka import ensure_topics
from tests.deploy.support import ROOT
from tests.support.infra import Infra

pytestmark = pytest.mark.infra
BIN = ROOT / "deploy" / "local" / "bin"


def envelope(order_id: str, n: int) -> dict:
    return {"event_id": str(uuid.uuid4()), "event_type": "OrderPlaced", "event_version": 1,
            "occurred_at": "2026-12-04T10:00:00Z", "producer": "test", "order_id": order_id,
            "correlation_id": order_id, "causation_id": None, "payload": {"n": n, "total": "19.90"}}


async def produce(bootstrap: str, topic: str, messages: list[dict], partition: int | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for m in messages:
            await producer.send_and_wait(topic, json.dumps(m).encode(), key=m["order_id"].encode(),
                                         partition=partition, headers=[("event_type", b"OrderPlaced"),
                                                                       ("traceparent", b"00-abc-def-01")])
    finally:
        await producer.stop()


def make(*args: str, bootstrap: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", *args], cwd=ROOT, env={**os.environ, "KAFKA_BOOTSTRAP": bootstrap},
                          capture_output=True, text=True, timeout=timeout)


async def test_make_topics_shows_partitions_and_group_lag(infra: Infra):
    topic, group = f"ops.topics.{uuid.uuid4().hex[:8]}", f"ops-lag-{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra.kafka_bootstrap, [topic], partitions=4)
    await produce(infra.kafka_bootstrap, topic, [envelope(str(uuid.uuid4()), n) for n in range(7)], partition=1)
    # The group has read and committed 2 of partition 1's 7 messages, and partition 0's (empty) end.
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.commit({TopicPartition(topic, 1): 2, TopicPartition(topic, 0): 0})
    finally:
        await consumer.stop()

    done = await asyncio.to_thread(make, "topics", bootstrap=infra.kafka_bootstrap)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^{re.escape(topic)}\s+4\s+1$", done.stdout, re.M), done.stdout
    row = re.search(rf"^{re.escape(group)}\s+{re.escape(topic)}\s+(\d+)\s+(\S+)\s+(\d+)$", done.stdout, re.M)
    assert row, done.stdout
    assert row.groups() == ("2", "5", "0")  # two partitions committed, 7 - 2 behind, nobody consuming


async def test_make_tail_prints_key_headers_and_indented_envelope(infra: Infra):
    topic = f"ops.tail.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra.kafka_bootstrap, [topic])
    old = envelope(str(uuid.uuid4()), 0)
    await produce(infra.kafka_bootstrap, topic, [old])
    proc = await asyncio.create_subprocess_exec(
        "make", "-s", "tail", f"TOPIC={topic}", "MAX=2", cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP": infra.kafka_bootstrap},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        # It follows from now on: wait until it says so, then send two.
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"following" in line, line
        new = [envelope(str(uuid.uuid4()), n) for n in (1, 2)]
        await produce(infra.kafka_bootstrap, topic, new)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 0, err
    assert old["order_id"] not in text, "an earlier message was printed without FROM=beginning"
    for m in new:
        assert f"key: {m['order_id']}" in text
        assert f'  "event_id": "{m["event_id"]}",' in text  # the envelope, indented
    assert text.count("headers: event_type=OrderPlaced  traceparent=00-abc-def-01") == 2
    assert re.search(rf"^--- {re.escape(topic)} \[\d\] @\d+  2\d{{3}}-", text, re.M)

    done = await asyncio.to_thread(make, "tail", f"TOPIC={topic}", "FROM=beginning", "MAX=3",
                                   bootstrap=infra.kafka_bootstrap)
    assert done.returncode == 0, done.stderr
    assert f"key: {old['order_id']}" in done.stdout and done.stdout.count("--- ") == 3


def kafka_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=120)


async def test_kafka_cli_tools_run_from_the_installed_jars(infra: Infra):
    topic = f"ops.cli.{uuid.uuid4().hex[:8]}"
    boot = ["--bootstrap-server", infra.kafka_bootstrap]
    created = await asyncio.to_thread(kafka_tool, "kafka-topics", *boot, "--create", "--topic", topic,
                                      "--partitions", "2", "--replication-factor", "1")
    assert created.returncode == 0, created.stderr
    described = await asyncio.to_thread(kafka_tool, "kafka-topics", *boot, "--describe", "--topic", topic)
    assert "PartitionCount: 2" in described.stdout, described.stderr
    sent = [envelope(str(uuid.uuid4()), n) for n in range(3)]
    await produce(infra.kafka_bootstrap, topic, sent)
    group = f"ops-cli-{uuid.uuid4().hex[:8]}"
    consumed = await asyncio.to_thread(kafka_tool, "kafka-console-consumer", *boot, "--topic", topic, "--group", group,
                                       "--from-beginning", "--max-messages", "3",
                                       "--property", "print.key=true", "--property", "print.headers=true")
    assert consumed.returncode == 0, consumed.stderr
    for m in sent:
        assert m["order_id"] in consumed.stdout and m["event_id"] in consumed.stdout
    assert "event_type:OrderPlaced" in consumed.stdout
    groups = await asyncio.to_thread(kafka_tool, "kafka-consumer-groups", *boot, "--describe", "--group", group)
    assert groups.returncode == 0, groups.stderr
    rows = [line.split() for line in groups.stdout.splitlines() if line.startswith(group)]
    assert len(rows) == 2 and sum(int(r[3]) for r in rows) == 3 and all(r[5] == "0" for r in rows), groups.stdout
