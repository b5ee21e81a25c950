"""Serving the backorder queue: oldest first, whole orders only, and no order jumps an older one."""

from uuid import UUID

from inventory.domain import Location, Waiting, serve_queue


def order(n: int, country: str = "PT", **lines: int) -> Waiting:
    return Waiting(UUID(int=n), dict(lines), country)


def served_ids(result) -> list[int]:
    return [w.order_id.int for w, _ in result]


def test_oldest_first_while_stock_lasts():
    queue = [order(1, A=2), order(2, A=2), order(3, A=2)]
    result = served_ids(serve_queue(queue, [Location("L1", "PT", {"A": 4})]))
    assert result == [1, 2]


def test_an_order_is_served_only_whole():
    queue = [order(1, A=1, B=2)]
    assert serve_queue(queue, [Location("L1", "PT", {"A": 5, "B": 1})]) == []


def test_a_newer_smaller_order_does_not_jump_an_older_one_for_the_same_sku():
    queue = [order(1, A=5), order(2, A=1)]
    assert serve_queue(queue, [Location("L1", "PT", {"A": 3})]) == []


def test_orders_waiting_for_other_skus_do_not_block():
    queue = [order(1, B=5), order(2, A=1)]
    assert served_ids(serve_queue(queue, [Location("L1", "PT", {"A": 3, "B": 1})])) == [2]


def test_an_unserved_older_order_still_holds_back_its_other_skus():
    # Order 1 waits for B but also needs 2 A: order 2 gets the 2 A order 1 does not need, and order 3
    # then finds none that order 1 could not claim.
    queue = [order(1, A=2, B=5), order(2, A=2), order(3, A=1)]
    assert served_ids(serve_queue(queue, [Location("L1", "PT", {"A": 4, "B": 0})])) == [2]


def test_served_orders_are_sourced_from_what_is_left():
    queue = [order(1, "ES", A=3), order(2, "PT", A=3)]
    stock = [Location("PT1", "PT", {"A": 3}), Location("ES1", "ES", {"A": 3})]
    result = serve_queue(queue, stock)
    assert [(w.order_id.int, [a.location_id for a in s.allocations]) for w, s in result] == [(1, ["ES1"]), (2, ["PT1"])]
