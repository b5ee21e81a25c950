"""The shipment status machine: created -> picked -> packed -> dispatched, nothing else, and the
shipment plan of a CreateShipments command."""

import pytest

from fulfilment.domain import CANCELLABLE, LEFT_BUILDING, TRANSITIONS, TransitionRefused, next_status, plan_shipments
from oms_contracts.fulfilment import ShipmentRequest, ShipmentStatus
from oms_contracts.inventory import StockLine

STATUSES: tuple[ShipmentStatus, ...] = ("created", "picked", "packed", "dispatched", "delivered", "cancelled")
ALLOWED = {("pick", "created"): "picked", ("pack", "picked"): "packed", ("dispatch", "packed"): "dispatched"}


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
@pytest.mark.parametrize("current", STATUSES)
def test_guard_table(action: str, current: str) -> None:
    if (action, current) in ALLOWED:
        assert next_status(action, current) == ALLOWED[action, current]
    else:
        with pytest.raises(TransitionRefused) as refused:
            next_status(action, current)
        assert refused.value.current == current
        assert current in str(refused.value)  # the 409 names the current status


def test_the_sql_guard_uses_the_same_table() -> None:
    assert {(a, before): after for a, (before, after) in TRANSITIONS.items()} == ALLOWED


def test_cancellation_is_possible_until_the_shipment_leaves_the_building() -> None:
    assert CANCELLABLE == {"created", "picked", "packed"}
    assert LEFT_BUILDING == {"dispatched", "delivered"}
    assert CANCELLABLE | LEFT_BUILDING | {"cancelled"} == set(STATUSES)


def _req(location: str, *lines: tuple[str, int]) -> ShipmentRequest:
    return ShipmentRequest(location_id=location, lines=[StockLine(sku=s, quantity=q) for s, q in lines])


def test_one_shipment_per_location_with_repeated_locations_merged() -> None:
    plan = plan_shipments([_req("LIS", ("A", 1), ("B", 2)), _req("MAD", ("A", 3)), _req("LIS", ("A", 4))])
    assert not isinstance(plan, str)
    assert [p.location_id for p in plan] == ["LIS", "MAD"]
    assert {li.sku: li.quantity for li in plan[0].lines} == {"A": 5, "B": 2}


@pytest.mark.parametrize(("requests", "reason"), [
    ([], "no_shipments"),
    ([_req("LIS")], "invalid_request"),
    ([_req("LIS", ("A", 0))], "invalid_request"),
    ([_req(" ", ("A", 1))], "invalid_request"),
])
def test_unshippable_requests_name_a_reason(requests, reason: str) -> None:
    assert plan_shipments(requests) == reason
