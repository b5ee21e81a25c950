"""How a consumer group shares its partitions between replicas: co-partitioned and sticky.

Every topic has the same partition count and key = order id, so partition p of every topic holds the
same orders. The assignor hands out partition *numbers*: the member that owns number p gets partition
p of every topic of the group, so one order's messages from all the topics a group reads are handled by
one replica (its locks and its batch's set-based statements never contend with another replica for
that order). aiokafka's assignors do not: round-robin (faststream's default) lays all topic-partitions
in one row, so partition 1 of one topic and partition 1 of another land on different members.

Sticky without moving metadata: each member joins with a stable key (its group.instance.id, else an id
drawn once per process) and nothing else of its own, and the leader keeps the share it computed last,
so a replica joining or leaving moves only the numbers that must move while the same leader stays
(a new leader, which has no memory, shares by sorted key: the same members always get the same share).
The metadata must not change between joins: the broker starts a rebalance whenever a member rejoins
with other metadata, so when it carried the numbers a member owned, every share changed it and any late
rejoin became one more rebalance. (This assignor is also the only protocol a consumer offers: aiokafka
0.14 sends one JoinGroup per assignor, each listing one more protocol than the last, which the broker
also takes for changed metadata; with a fallback assignor, groups of three replicas rebalanced every
100 ms for minutes.) With static membership (KAFKA_GROUP_INSTANCE_ID) a replica restarted within the
session timeout rejoins with the same metadata and gets its share back with no rebalance at all
(aiokafka's group protocol is eager: every member pauses during a rebalance).

One instance per consumer (the protocol calls metadata/on_assignment on what it is given: an instance
keeps one group's history apart from the other groups of the same process)."""

import logging
import uuid
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

    def __init__(self, member_key: str | None = None) -> None:
        self.key = member_key or uuid.uuid4().hex
        self.last_share: dict[str, list[int]] = {}  # key -> numbers, as this member last shared them as leader

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), orjson.dumps({"key": self.key}))

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass

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
        keys = {m: _key(m, meta) for m, meta in members.items()}
        by_key = share(max(counts.values(), default=0), {k: self.last_share.get(k, []) for k in keys.values()})
        self.last_share = by_key
        owner = {p: m for m, k in keys.items() for p in by_key[k]}
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


def _key(member_id: str, meta: ConsumerProtocolMemberMetadata) -> str:
    """The member's stable key; its member id when it sent none (an older build's list of numbers)."""
    try:
        data = orjson.loads(meta.user_data or b"null")
    except orjson.JSONDecodeError:
        return member_id
    key = data.get("key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and key else member_id
