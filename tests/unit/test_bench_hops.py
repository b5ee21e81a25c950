"""The benchmark's split of POST -> confirmed into the saga's hops (bench/hops.py)."""

from bench.hops import HOPS, hop_table


def test_each_hop_is_the_time_between_consecutive_messages_of_one_order() -> None:
    sent = {"a": 100.0, "b": 200.0, "c": 300.0}
    stamps = {
        "a": {"OrderPlaced": 100.010, "ReserveStock": 100.030, "StockReserved": 100.035, "OrderStatusChanged": 100.100},
        "b": {"OrderPlaced": 200.020, "ReserveStock": 200.040, "StockReserved": 200.045, "OrderStatusChanged": 200.050},
        "c": {"OrderPlaced": 300.010},  # not all the way: left out
    }
    table = hop_table(sent, stamps)
    assert list(table) == [label for label, _ in HOPS]
    first, start, reserve, confirm = table.values()
    assert first["service"] == "order-capture" and first["n"] == 2
    assert round(first["p50"]) == 20 and round(first["max"]) == 20  # 10 and 20 ms
    assert round(start["max"]) == 20 and round(reserve["max"]) == 5
    assert round(confirm["p50"]) == 65 and round(confirm["max"]) == 65  # 65 and 5 ms: p50 of two is the upper
