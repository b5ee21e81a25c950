"""The co-partitioned sticky assignor's sharing rule (oms_platform.assignor.share): balanced, and a
member keeps what it had whenever the balance allows."""

from oms_platform.assignor import share


def moved(before: dict[str, list[int]], after: dict[str, list[int]]) -> int:
    return sum(1 for m, ps in after.items() for p in ps if p not in before.get(m, []))


def test_first_share_is_balanced_and_covers_every_partition() -> None:
    got = share(12, {"a": [], "b": [], "c": []})
    assert sorted(p for ps in got.values() for p in ps) == list(range(12))
    assert {len(ps) for ps in got.values()} == {4}


def test_a_member_joining_takes_only_its_share_from_the_others() -> None:
    before = share(12, {"a": [], "b": [], "c": []})
    after = share(12, {**before, "d": []})
    assert {len(ps) for ps in after.values()} == {3}
    assert moved(before, after) == 3  # only d's three; a, b and c keep three of their four each
    assert all(set(after[m]) <= set(before[m]) for m in before)


def test_a_member_leaving_hands_over_only_its_own() -> None:
    before = share(12, {"a": [], "b": [], "c": [], "d": []})
    survivors = {m: ps for m, ps in before.items() if m != "b"}
    after = share(12, survivors)
    assert moved(survivors, after) == 3
    assert all(set(survivors[m]) <= set(after[m]) for m in survivors)


def test_uneven_counts_differ_by_one_and_stale_or_foreign_claims_are_ignored() -> None:
    got = share(3, {"a": [0, 1, 2, 7], "b": [0], "c": [-1]})
    assert sorted(p for ps in got.values() for p in ps) == [0, 1, 2]
    assert {len(ps) for ps in got.values()} == {1}
    assert share(0, {"a": []}) == {"a": []}


class _Cluster:
    def __init__(self, partitions: dict[str, int]):
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.partitions[topic])) if topic in self.partitions else None


def _numbers(assignment: object) -> list[int]:
    return sorted({p for _, ps in assignment.assignment for p in ps})  # type: ignore[attr-defined]


def test_join_metadata_stays_the_same_whatever_the_member_was_given() -> None:
    """The broker rebalances whenever a member rejoins with other metadata: it must not carry the share."""
    from oms_platform.assignor import CoPartitionedStickyAssignor

    member = CoPartitionedStickyAssignor("orchestrator-8000")
    before = member.metadata(["t"])
    plan = member.assign(_Cluster({"t": 3}), {"m1": before})
    member.on_assignment(plan["m1"])
    assert member.metadata(["t"]) == before
    assert CoPartitionedStickyAssignor().key != CoPartitionedStickyAssignor().key  # no instance id: one per process


def test_the_leader_keeps_shares_by_member_key_across_member_ids() -> None:
    """A restarted static member has a new member id but the same key: it gets its numbers back."""
    from oms_platform.assignor import CoPartitionedStickyAssignor

    leader = CoPartitionedStickyAssignor("a")
    meta = {k: CoPartitionedStickyAssignor(k).metadata(["x", "y"]) for k in ("a", "b", "c")}
    cluster = _Cluster({"x": 6, "y": 6})
    first = leader.assign(cluster, {f"{k}-1": m for k, m in meta.items()})
    back = leader.assign(cluster, {"a-1": meta["a"], "b-2": meta["b"], "c-1": meta["c"]})
    assert _numbers(back["b-2"]) == _numbers(first["b-1"])
    gone = leader.assign(cluster, {"a-1": meta["a"], "c-1": meta["c"]})
    assert set(_numbers(first["a-1"])) <= set(_numbers(gone["a-1"]))  # kept its own, took some of b's
    for plan in (first, gone, back):  # co-partitioned: the same numbers of both topics
        for a in plan.values():
            x, y = ([ps for t, ps in a.assignment if t == name] for name in ("x", "y"))
            assert x == y


def test_a_member_of_an_older_build_is_shared_by_its_member_id() -> None:
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

    from oms_platform.assignor import CoPartitionedStickyAssignor

    old = ConsumerProtocolMemberMetadata(0, ["t"], b"[0, 1]")
    plan = CoPartitionedStickyAssignor("new").assign(
        _Cluster({"t": 2}), {"old-1": old, "new-1": CoPartitionedStickyAssignor("new").metadata(["t"])})
    assert sorted(_numbers(plan["old-1"]) + _numbers(plan["new-1"])) == [0, 1]
