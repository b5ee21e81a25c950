"""Eligibility rules, receipts, refund amounts and the order's status because of its returns (pure)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from returns import domain

T0 = datetime(2026, 12, 1, tzinfo=UTC)
ORDER = [{"sku": "A", "quantity": 2, "unit_price": "19.90"}, {"sku": "B", "quantity": 1, "unit_price": "5.00"}]
SHIPMENTS = [{"shipment_id": "s1", "location_id": "L1", "lines": [{"sku": "A", "quantity": 2}]},
             {"shipment_id": "s2", "location_id": "L2", "lines": [{"sku": "B", "quantity": 1}]}]


def lines(**units: int) -> list[domain.ReturnLineIn]:
    return [domain.ReturnLineIn(sku=sku, quantity=q, reason="too_small") for sku, q in units.items()]


def check(req: list[domain.ReturnLineIn], deliveries: dict, *, requested: dict | None = None,
          returnable: dict | None = None, now: datetime = T0 + timedelta(days=1)) -> list[tuple[str, str]]:
    got = domain.delivered(ORDER, SHIPMENTS, deliveries)
    errors = domain.eligibility_errors(req, ORDER, got, requested or {}, returnable or {}, now, 30)
    return [(e.field, e.rule) for e in errors]


def test_only_the_units_of_delivered_shipments_can_come_back():
    assert check(lines(A=2, B=1), {"s1": T0}) == [("lines[1].sku", "delivered")]
    assert check(lines(A=2, B=1), {"s1": T0, "s2": T0}) == []
    assert check(lines(A=2, B=1), {None: T0}) == []  # the whole order reported delivered


def test_the_window_runs_from_the_delivery_that_carried_the_sku():
    late = T0 + timedelta(days=30, seconds=1)
    assert check(lines(A=1), {"s1": T0}, now=late) == [("lines[0].sku", "return_window")]
    assert check(lines(A=1), {"s1": T0 + timedelta(days=5)}, now=late) == []


def test_no_more_than_delivered_minus_already_requested():
    assert check(lines(A=3), {"s1": T0}) == [("lines[0].quantity", "returnable_quantity")]
    assert check(lines(A=1), {"s1": T0}, requested={"A": 1}) == []
    assert check(lines(A=2), {"s1": T0}, requested={"A": 1}) == [("lines[0].quantity", "returnable_quantity")]


def test_non_returnable_unknown_and_repeated_skus_are_refused():
    assert check(lines(A=1), {"s1": T0}, returnable={"A": False}) == [("lines[0].sku", "returnable")]
    assert check(lines(Z=1), {"s1": T0}) == [("lines[0].sku", "in_order")]
    twice = lines(A=1) + lines(A=1)
    assert check(twice, {"s1": T0}) == [("lines[1].sku", "unique_sku")]


def test_receipts_name_only_the_returns_skus_and_units():
    ret = [{"sku": "A", "quantity": 2}]
    body = domain.ReceiveIn(lines=[domain.ReceivedLineIn(sku="A", quantity=1, condition="resellable"),
                                   domain.ReceivedLineIn(sku="A", quantity=1, condition="damaged")])
    assert domain.receipt_errors(body, ret) == []
    body = domain.ReceiveIn(lines=[domain.ReceivedLineIn(sku="A", quantity=3, condition="resellable"),
                                   domain.ReceivedLineIn(sku="B", quantity=1, condition="damaged")])
    assert [e.rule for e in domain.receipt_errors(body, ret)] == ["returned_quantity", "in_return"]


def test_refunds_are_the_orders_own_prices_per_received_unit():
    prices = {"A": Decimal("19.90"), "B": Decimal("0.333")}
    assert domain.refund_amount([{"sku": "A", "quantity": 1}], prices) == Decimal("19.90")
    assert domain.refund_amount([{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 3}], prices) == Decimal("40.80")


def test_the_orders_status_because_of_its_returns():
    assert domain.order_status_after(3, 0, 1) == "return_requested"
    assert domain.order_status_after(3, 1, 1) == "partially_returned"
    assert domain.order_status_after(3, 3, 0) == "returned"
    assert domain.order_status_after(3, 0, 0) == "delivered"
