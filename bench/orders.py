"""The order the benchmarks post: a valid POST /v1/orders body, as compact JSON split around the value
of external_id, so the load generators put a unique id between the halves without encoding JSON per
request. The bench keeps its own body (it does not import the tests' helpers)."""

from decimal import Decimal
from typing import Any

import orjson

_MARK = "@EXTERNAL_ID@"


def order_body(external_id: str, sku: str = "TSHIRT-RED-M", quantity: int = 2,
               unit_price: str = "19.90") -> dict[str, Any]:
    """One line of `quantity` x `sku`; the payment amount is the order's total."""
    return {
        "channel": "web", "external_id": external_id, "currency": "EUR",
        "customer": {"id": "c-42", "email": "ana@example.com", "name": "Ana Lima", "phone": "+351912345678"},
        "shipping_address": {"name": "Ana Lima", "line1": "Rua Augusta 1", "line2": None, "city": "Lisboa",
                             "postal_code": "1100-048", "country": "PT"},
        "shipping_method": "standard",
        "lines": [{"sku": sku, "quantity": quantity, "unit_price": unit_price}],
        "payment": {"method": "card", "status": "authorized", "reference": "pay_123",
                    "amount": str(quantity * Decimal(unit_price))},
    }


def order_body_parts(**line: Any) -> tuple[str, str]:
    """order_body(...) as compact JSON without its external_id: (before, after) the id's value."""
    prefix, found, suffix = orjson.dumps(order_body(_MARK, **line)).decode().partition(_MARK)
    if not found or _MARK in suffix:
        raise RuntimeError("the order body template must hold external_id exactly once")
    return prefix, suffix
