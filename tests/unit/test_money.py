"""Money is a decimal string beside a currency code, never a float (CONTRACT.md, Kafka)."""

from decimal import Decimal
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from oms_contracts import EVENT_MODELS
from oms_contracts.billing import RefundRequestedV1
from oms_contracts.orders import OrderLine


def _line(price: Any) -> OrderLine:
    return OrderLine(sku="TSHIRT-RED-M", quantity=2, unit_price=price)


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list | tuple):
        return [f for v in value for f in _floats(v)]
    return []


@pytest.mark.parametrize("mode", ["json", "python"])
def test_money_dumps_as_a_decimal_string(mode: str) -> None:
    dumped = _line(Decimal("19.90")).model_dump(mode=mode)
    assert dumped["unit_price"] == "19.90"
    assert _floats(dumped) == []


def test_money_on_the_wire_is_a_json_string() -> None:
    line = _line("19.90")
    assert b'"unit_price":"19.90"' in line.model_dump_json().encode()
    assert b'"unit_price":"19.90"' in orjson.dumps(line.model_dump())
    assert b'"unit_price":"19.90"' in orjson.dumps(line.model_dump(mode="json"))


@pytest.mark.parametrize(("given", "wire"), [
    ("19.90", "19.90"),
    ("0.10", "0.10"),
    ("39.8", "39.80"),  # always two decimals out
    ("40", "40.00"),
    (19, "19.00"),
    (Decimal("1E+2"), "100.00"),  # never in exponent notation
    ("12345678901234567890.12", "12345678901234567890.12"),  # no precision lost
    ("-5.00", "-5.00"),
])
def test_money_is_parsed_exactly_and_serialised_without_exponent(given: Any, wire: str) -> None:
    line = _line(given)
    assert line.unit_price == Decimal(wire)
    assert line.model_dump()["unit_price"] == wire
    assert line.model_dump(mode="json")["unit_price"] == wire
    assert OrderLine.model_validate_json(line.model_dump_json()) == line


@pytest.mark.parametrize("bad", [19.9, 0.1, "NaN", "Infinity", "-inf", "nineteen", True, "1e2", "1E+2", " 19.90 ",
                                 "19.999", "39.", ".5", "+5", "1,000.00", "1_000", "٣٩.٨٠"])
def test_money_refuses_floats_and_non_numbers(bad: Any) -> None:
    with pytest.raises(ValidationError):
        _line(bad)


def test_money_refuses_a_json_number_with_a_fraction() -> None:
    with pytest.raises(ValidationError):
        OrderLine.model_validate_json('{"sku": "A", "quantity": 1, "unit_price": 19.9}')


def test_money_is_a_string_in_every_published_schema() -> None:
    schema = RefundRequestedV1.model_json_schema(mode="serialization")
    assert schema["properties"]["amount"]["type"] == "string"
    for model in EVENT_MODELS.values():
        for name, field in model.model_fields.items():
            if field.annotation is Decimal:
                prop = model.model_json_schema(mode="serialization")["properties"][name]
                assert prop.get("type") == "string", f"{model.__name__}.{name} is published as {prop}"
