"""The benchmark's p99 per second sent (bench/e2e/figures.py): tells a stall (a few bad seconds) from queueing."""

from bench.e2e.client import Order
from bench.e2e.figures import p99_by_second


def _order(sent: float, latency_ms: float | None, status: str = "confirmed") -> Order:
    o = Order("rate", sent, post_ms=1.0)
    if latency_ms is not None:
        o.done, o.status = sent + latency_ms / 1000, status
    return o


def test_each_second_holds_the_p99_of_the_orders_sent_in_it() -> None:
    orders = [_order(100.0 + i / 100, 20.0) for i in range(100)]  # second 0: all 20 ms
    orders += [_order(101.0 + i / 100, 20.0) for i in range(98)] + [_order(101.99, 900.0), _order(101.995, 900.0)]
    orders += [_order(102.5, None), _order(102.6, 5000.0, status="rejected")]  # second 2: nothing confirmed
    orders += [_order(99.5, 50.0), _order(103.2, 50.0)]  # outside the window
    by_second = p99_by_second(orders, 100.0, 103.0)
    assert len(by_second) == 3
    assert by_second[0] == 20.0
    assert by_second[1] == 900.0  # 2 in 100 stalled: the p99 is theirs
    assert by_second[2] is None
