"""Sourcing a reservation: one location that ships the whole order (destination country first), else
the fewest locations that cover it together, with deterministic tie-breaks."""

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from inventory.domain import (
    IN_COUNTRY,
    SINGLE,
    SPLIT,
    Allocation,
    Location,
    decide,
    merge_lines,
    source,
)


def loc(location_id: str, country: str, **free: int) -> Location:
    return Location(location_id, country, {sku.replace("_", "-"): q for sku, q in free.items()})


def locations_used(sourcing) -> list[str]:
    return sorted({a.location_id for a in sourcing.allocations})


def test_a_location_in_the_destination_country_that_holds_everything_wins():
    stock = [loc("ES1", "ES", A=10, B=10), loc("PT1", "PT", A=2, B=1), loc("PT2", "PT", A=5, B=5)]
    s = source({"A": 2, "B": 1}, "PT", stock)
    assert s.strategy == IN_COUNTRY
    # PT1 and PT2 both hold the order: the lowest id wins the tie, even though PT2 has more.
    assert s.allocations == (Allocation("PT1", "A", 2), Allocation("PT1", "B", 1))
    assert "PT1" in s.reason and "destination country" in s.reason


def test_without_a_whole_order_in_country_a_single_location_elsewhere_beats_a_split_at_home():
    stock = [loc("PT1", "PT", A=2), loc("PT2", "PT", A=2), loc("FR1", "FR", A=1), loc("ES1", "ES", A=4)]
    s = source({"A": 4}, "PT", stock)
    assert s.strategy == SINGLE
    assert s.allocations == (Allocation("ES1", "A", 4),)
    assert "no location in PT" in s.reason and "ES1" in s.reason


def test_single_location_ties_go_to_the_lowest_location_id():
    stock = [loc("ZZ", "DE", A=9), loc("MM", "FR", A=9), loc("AA", "ES", A=9)]
    assert source({"A": 3}, "PT", stock).allocations == (Allocation("AA", "A", 3),)


def test_split_over_the_fewest_locations_not_the_first_ones():
    # Greedy by id would take L1+L2+L3; L4 and L5 cover the order with two.
    stock = [loc("L1", "PT", A=2), loc("L2", "PT", B=2), loc("L3", "PT", C=1, D=1),
             loc("L4", "ES", A=2, B=2), loc("L5", "ES", C=2)]
    s = source({"A": 2, "B": 2, "C": 2}, "PT", stock)
    assert s.strategy == SPLIT
    assert locations_used(s) == ["L4", "L5"]
    assert "2 locations" in s.reason


def test_split_prefers_the_set_with_more_locations_in_the_destination_country():
    stock = [loc("A1", "ES", A=3), loc("B1", "ES", B=3), loc("C1", "PT", A=3), loc("D1", "PT", B=3)]
    s = source({"A": 3, "B": 3}, "PT", stock)
    assert locations_used(s) == ["C1", "D1"]


def test_split_ties_of_the_same_size_and_country_go_to_the_lowest_ids():
    stock = [loc("L3", "PT", A=5), loc("L1", "PT", A=5), loc("L2", "PT", A=5)]
    s = source({"A": 8}, "PT", stock)
    assert locations_used(s) == ["L1", "L2"]
    assert sum(a.quantity for a in s.allocations) == 8


def test_split_fills_each_line_in_country_first_then_from_the_largest_holder():
    stock = [loc("ES2", "ES", A=1), loc("ES1", "ES", A=4), loc("PT1", "PT", A=3)]
    s = source({"A": 5}, "PT", stock)
    assert s.allocations == (Allocation("ES1", "A", 2), Allocation("PT1", "A", 3))


def test_many_locations_use_the_greedy_split_and_still_cover_the_order():
    stock = [loc(f"L{i:02d}", "PT", A=1) for i in range(20)] + [loc("BIG", "ES", A=7)]
    s = source({"A": 10}, "PT", stock)
    assert s.strategy == SPLIT
    assert sum(a.quantity for a in s.allocations) == 10
    assert "BIG" in locations_used(s) and len(locations_used(s)) == 4  # 7 from BIG, then three singles


def test_nothing_when_all_locations_together_are_short():
    assert source({"A": 5}, "PT", [loc("L1", "PT", A=2), loc("L2", "ES", A=2)]) is None
    assert source({"A": 1}, "PT", []) is None


def test_allocations_never_exceed_what_a_location_has_free():
    stock = [loc("L1", "PT", A=3, B=1), loc("L2", "ES", A=1, B=4), loc("L3", "FR", A=2, B=0)]
    s = source({"A": 6, "B": 5}, "PT", stock)
    free = {(x.location_id, sku): q for x in stock for sku, q in x.available.items()}
    for a in s.allocations:
        assert 0 < a.quantity <= free[(a.location_id, a.sku)]
    assert sum(a.quantity for a in s.allocations if a.sku == "A") == 6
    assert sum(a.quantity for a in s.allocations if a.sku == "B") == 5


def test_negative_free_counts_are_treated_as_none():
    s = source({"A": 1}, "PT", [loc("L1", "PT", A=-3), loc("L2", "ES", A=1)])
    assert s.allocations == (Allocation("L2", "A", 1),)


def test_repeated_skus_are_merged():
    assert merge_lines([("A", 1), ("B", 2), ("A", 3)]) == {"A": 4, "B": 2}


def test_decide_reserves_backorders_or_fails():
    stock = [loc("L1", "PT", A=2, B=1)]
    assert decide({"A": 2}, "PT", stock).outcome == "reserved"
    short = decide({"A": 3, "B": 1}, "PT", stock, backorderable=["A"])
    assert short.outcome == "backordered" and [(s.sku, s.requested, s.available) for s in short.short] == [("A", 3, 2)]
    # One short SKU without backorders (here: unknown anywhere) fails the whole order.
    failed = decide({"A": 3, "X": 1}, "PT", stock, backorderable=["A"])
    assert failed.outcome == "failed" and {s.sku for s in failed.short} == {"A", "X"}


def test_decide_keeps_units_the_backorder_queue_waits_for():
    stock = [loc("L1", "PT", A=5)]
    assert decide({"A": 2}, "PT", stock, queued={"A": 3}).outcome == "reserved"
    blocked = decide({"A": 3}, "PT", stock, backorderable=["A"], queued={"A": 3})
    assert blocked.outcome == "backordered" and blocked.short[0].available == 2


# --- properties over random stock ----------------------------------------------------------------
SKUS = ["A", "B", "C"]
stock_strategy = st.lists(
    st.builds(lambda i, c, free: loc(f"L{i}", c, **dict(zip(SKUS, free, strict=True))),
              st.integers(0, 30), st.sampled_from(["PT", "ES"]), st.lists(st.integers(0, 4), min_size=3, max_size=3)),
    max_size=8, unique_by=lambda x: x.location_id,
)
lines_strategy = st.dictionaries(st.sampled_from(SKUS), st.integers(1, 8), min_size=1)


@settings(max_examples=300, deadline=None)
@given(stock_strategy, lines_strategy, st.sampled_from(["PT", "ES", "FR"]))
def test_sourcing_covers_exactly_within_stock_with_no_more_locations_than_needed(stock, lines, country):
    s = source(lines, country, stock)
    totals = {sku: sum(x.available.get(sku, 0) for x in stock) for sku in lines}
    if any(totals[sku] < q for sku, q in lines.items()):
        assert s is None
        return
    assert s is not None
    free = {(x.location_id, sku): q for x in stock for sku, q in x.available.items()}
    for a in s.allocations:
        assert 0 < a.quantity <= free[(a.location_id, a.sku)]
    assert {sku: sum(a.quantity for a in s.allocations if a.sku == sku) for sku in lines} == lines
    used = locations_used(s)
    assert (len(used) == 1) == (s.strategy in (IN_COUNTRY, SINGLE))
    if s.strategy == SPLIT:  # with at most 8 locations the split is exact: no smaller set covers the order
        smaller = [c for n in range(1, len(used)) for c in combinations(stock, n)
                   if all(sum(x.available.get(sku, 0) for x in c) >= q for sku, q in lines.items())]
        assert smaller == []
