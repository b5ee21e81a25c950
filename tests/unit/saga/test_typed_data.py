"""The saga's data is a pydantic model and its handlers are keyed by contract classes: what a saga
author writes is typed, while what the engine stores stays the JSON it always was (rows written
before the data was typed load as they are)."""

from decimal import Decimal
from typing import ClassVar
from uuid import UUID, uuid4

import pytest
from pydantic import BaseModel

from oms_contracts import inventory
from oms_saga import engine
from oms_saga.definition import Command, Step, event_key, success
from orchestrator.domain import INVENTORY, OrderData, initial_data, order_saga
from tests.unit.saga.factory import DEADLINES, NOW, placed, reserved, saga_test, shipment_ids, to_dispatch

SHIPMENT_A, SHIPMENT_B = "0193a6f1-7d1c-7b3e-9a55-1c2d3e4f5a6b", "0193a6f1-7d1c-7b3e-9a55-1c2d3e4f5a6c"

# saga_instances.data of an order saga at await_dispatch as the untyped saga wrote it (one shipment
# dispatched): the persisted shape the model must keep reading and writing.
LEGACY = {
    "lines": [{"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": "19.90"},
              {"sku": "MUG-1", "quantity": 1, "unit_price": "7.50"}],
    "currency": "EUR",
    "payment_status": "authorized",
    "shipping_method": "standard",
    "shipping_address": {"name": "Ana Lima", "line1": "Rua Augusta 1", "line2": None, "city": "Lisboa",
                         "postal_code": "1100-048", "country": "PT"},
    "allocations": [{"location_id": "LIS", "sku": "TSHIRT-RED-M", "quantity": 2},
                    {"location_id": "OPO", "sku": "MUG-1", "quantity": 1}],
    "shipments": [{"shipment_id": SHIPMENT_A, "location_id": "LIS"},
                  {"shipment_id": SHIPMENT_B, "location_id": "OPO"}],
    "dispatched": [SHIPMENT_A],
    "delivered": [],
}


def test_data_stored_before_it_was_typed_loads_and_is_written_back_the_same() -> None:
    data = OrderData.model_validate(LEGACY)
    assert data.shipments[0].shipment_id == UUID(SHIPMENT_A) and data.lines[0].unit_price == Decimal("19.90")
    # Fields added since (the order's total, issue 13) load as None and are the only difference.
    assert data.model_dump(mode="json") == LEGACY | {"total": None}


def test_a_new_saga_stores_the_same_shape() -> None:
    order_id = uuid4()
    t = saga_test()
    stored = t.state.data if t.state else {}
    assert set(stored) == set(LEGACY) | {"total"} and stored["total"] == "47.30"
    assert stored["lines"] == LEGACY["lines"] and stored["shipping_address"] == LEGACY["shipping_address"]
    assert initial_data(placed(order_id)).model_dump(mode="json") == {
        **LEGACY, "allocations": [], "shipments": [], "dispatched": [], "delivered": [], "total": "47.30"}


def test_handlers_see_the_model_and_their_changes_are_stored() -> None:
    t = to_dispatch(saga_test())
    assert isinstance(t.data, OrderData)
    assert [a.location_id for a in t.data.allocations] == ["LIS", "OPO"]
    assert t.state is not None and t.state.data["shipments"][0]["shipment_id"] == str(shipment_ids(t)[0])


def test_a_saga_is_started_with_its_own_data_model() -> None:
    saga = order_saga(DEADLINES)
    with pytest.raises(TypeError, match="keeps OrderData"):
        engine.start(saga, None, uuid4(), LEGACY, None, NOW)  # type: ignore[arg-type]


def test_handlers_are_keyed_by_contract_classes() -> None:
    class NotAnEvent(BaseModel):
        x: int

    with pytest.raises(TypeError, match="not a contract event"):
        Step("s", command=Command(INVENTORY, lambda v: NotAnEvent(x=1)), replies={NotAnEvent: lambda v, e: success()})
    assert event_key(inventory.StockReservedV1) == ("StockReserved", 1)
    assert "StockReserved" in order_saga(DEADLINES).event_types()


class StockReservedV2(inventory.StockReservedV1):
    EVENT_VERSION: ClassVar[int] = 2


def test_another_version_of_an_awaited_event_is_not_taken_for_it() -> None:
    t = saga_test()
    v2 = StockReservedV2(**reserved(t).model_dump())
    t.reply(v2).expect_unchanged().expect_note("stale")
    t.reply(reserved(t)).expect_sent("CreateShipments")
