"""Kafka administration the services need at start: their topics (and DLQs) exist."""

import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


def topic_settings(brokers: int, replication_factor: int | None, min_insync_replicas: int | None) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for new topics: as configured, else what the cluster can
    hold (3 copies with 2 in sync on three brokers or more; a single broker holds one copy)."""
    rf = replication_factor or min(3, max(1, brokers))
    if rf > brokers:
        raise RuntimeError(f"replication factor {rf} needs {rf} brokers; the cluster has {brokers}")
    isr = min_insync_replicas or (2 if rf >= 3 else 1)
    if isr > rf:
        raise RuntimeError(f"min.insync.replicas {isr} is more than the replication factor {rf}")
    return rf, isr


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], *, partitions: int = 3,
    replication_factor: int | None = None, min_insync_replicas: int | None = None,
) -> None:
    """Creates the missing topics, all with the same partition count (co-partitioned by order id). A
    topic that exists is left as it is (a different partition count is logged: changing it would move
    keys between partitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="oms-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = sorted(set(topics) - existing)
        if missing:
            cluster = await admin.describe_cluster()
            rf, isr = topic_settings(len(cluster.get("brokers", [])) or 1, replication_factor, min_insync_replicas)
            resp = await admin.create_topics([
                NewTopic(t, num_partitions=partitions, replication_factor=rf,
                         topic_configs={"min.insync.replicas": str(isr)})
                for t in missing
            ])
            for name, code, *_ in getattr(resp, "topic_errors", []):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"could not create topic {name}: error code {code}")
            log.info("created topics %s (%d partitions, replication factor %d, min.insync.replicas %d)",
                     missing, partitions, rf, isr)
    finally:
        await admin.close()
