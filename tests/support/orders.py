"""Order request bodies for tests."""

import copy
import uuid
from typing import Any

_BASE: dict[str, Any] = {
    "channel": "web",
    "external_id": "WEB-1001",
    "currency": "EUR",
    "customer": {"id": "c-42", "email": "ana@example.com", "name": "Ana Lima", "phone": "+351912345678"},
    "shipping_address": {"name": "Ana Lima", "line1": "Rua Augusta 1", "line2": None, "city": "Lisboa",
                         "postal_code": "1100-048", "country": "PT"},
    "shipping_method": "standard",
    "lines": [{"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": "19.90"}],
    "payment": {"method": "card", "status": "authorized", "reference": "pay_123", "amount": "39.80"},
}


def new_order(**overrides: Any) -> dict[str, Any]:
    """A valid order body with a unique external_id; keyword arguments replace top-level fields."""
    body = copy.deepcopy(_BASE)
    body["external_id"] = f"WEB-{uuid.uuid4().hex[:12]}"
    body.update(overrides)
    return body
