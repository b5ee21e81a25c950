"""__NAME__ (generated): its rule without I/O, and the app it builds."""

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

from __PKG__.bootstrap import build_app
from __PKG__.domain import order_seen
from __PKG__.settings import Settings
from oms_contracts.orders import OrderPlacedV1
from tests.support.orders import new_order


def test_a_placed_order_is_kept_with_its_total() -> None:
    body = new_order()
    event = OrderPlacedV1(order_id=uuid4(), total=Decimal("39.80"), created_at=datetime.now(UTC), **body)
    seen = order_seen(event)
    assert (seen.order_id, seen.channel, seen.total) == (event.order_id, "web", Decimal("39.80"))


def test_the_app_builds_with_its_routes() -> None:
    paths = build_app(Settings()).openapi()["paths"]
    assert {"/v1/__NAME__/orders", "/v1/__NAME__/orders/{order_id}"} <= set(paths)
