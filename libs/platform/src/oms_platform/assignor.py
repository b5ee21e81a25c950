"""How a consumer group shares its partitions between replicas: co-partitioned and sticky.

Every topic has the same partition count and key = order id, so partition p of every topic holds the
same orders. The assignor hands out partition *numbers*: the member that owns number p gets partition
p of every topic of the group, so one order's messages from all the topics a group reads are handled by
one replica (its locks and its batch's set-based statements never contend with another replica for
that order). aiokafka's assignors do not: round-robin (faststream's default) lays all topic-partitions
in one row, so partition 1 of one topic and partition 1 of another land on different members.

Sticky: each member tells the group the numbers it owned (in its join metadata) and keeps them when the
new balance allows, so a replica joining, leaving or restarting moves only the numbers that must move
(aiokafka's group protocol is eager: every member stops and resumes at a rebalance, but the partitions
that stay put keep their consumer). With static membership (KAFKA_GROUP_INSTANCE_ID) a replica that
restarts within the session timeout causes no rebalance at all.

One instance per consumer (the protocol calls metadata/on_assignment on what it is given: an instance
keeps one group's history apart from the other groups of the same process)."""

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

log = logging.getLogger(__name__)


def share(partitions: int, previous: Mapping[str, Iterable[int]]) -> dict[str, list[int]]:
    """Partition numbers 0..partitions-1 shared by the members (keys of `previous`, with the numbers each
    owned before): counts differ by at most one, and a member keeps as many of its own as the balance
    allows. Deterministic (every leader computes the same)."""
    members = sorted(previous, key=lambda m: (-len(set(previous[m])), m))
    if not members:
        return {}
    base, extra = divmod(partitions, len(members))
    room = {m: base + (1 if i < extra else 0) for i, m in enumerate(members)}
    owned: dict[str, list[int]] = {m: [] for m in members}
    taken: set[int] = set()
    for m in members:
        for p in sorted(set(previous[m])):
            if len(owned[m]) < room[m] and 0 <= p < partitions and p not in taken:
                owned[m].append(p)
                taken.add(p)
    free = iter(p for p in range(partitions) if p not in taken)
    for m in members:
        while len(owned[m]) < room[m]:
            owned[m].append(next(free))
    return {m: sorted(ps) for m, ps in owned.items()}


class CoPartitionedStickyAssignor:
    """aiokafka partition assignor (duck-typed AbstractPartitionAssignor, used as an instance)."""

    name = "oms-copartitioned-sticky"
    version = 0

    def __init__(self) -> None:
        self.owned: list[int] = []

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), orjson.dumps(self.owned))

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.owned = sorted({tp.partition for tp in assignment.partitions()})

    def assign(self, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]) -> dict[
            str, ConsumerProtocolMemberAssignment]:
        counts: dict[str, int] = {}
        for meta in members.values():
            for topic in meta.subscription:
                found = cluster.partitions_for_topic(topic)
                if found is None:
                    log.warning("no partition metadata for topic %s", topic)
                else:
                    counts[topic] = len(found)
        if len(set(counts.values())) > 1:
            log.warning("topics of one group differ in partition count (%s): not co-partitioned", counts)
        numbers = share(max(counts.values(), default=0), {m: _previous(meta) for m, meta in members.items()})
        owner = {p: m for m, ps in numbers.items() for p in ps}
        plan: dict[str, dict[str, list[int]]] = {m: {} for m in members}
        for topic, count in sorted(counts.items()):
            readers = sorted(m for m, meta in members.items() if topic in meta.subscription)
            for p in range(count):
                # A member not reading this topic (a rolling deploy changing subscriptions): a reader takes it.
                m = owner[p] if owner[p] in readers else readers[p % len(readers)]
                plan[m].setdefault(topic, []).append(p)
        return {
            m: ConsumerProtocolMemberAssignment(
                self.version, [ConsumerProtocolMemberAssignment.Assignment(t, ps) for t, ps in sorted(topics.items())],
                b"")
            for m, topics in plan.items()
        }


def _previous(meta: ConsumerProtocolMemberMetadata) -> list[int]:
    try:
        owned = orjson.loads(meta.user_data or b"[]")
    except orjson.JSONDecodeError:  # a member with another assignor's data: it owned nothing we know of
        return []
    return [p for p in owned if isinstance(p, int)] if isinstance(owned, list) else []
