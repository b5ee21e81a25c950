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
