"""Tracking's pure rules: scans and warehouse events never move a shipment backwards, the webhook
signature, and timeline details that never name the customer."""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from tests.unit.saga.factory import placed
from tracking.api import signature_ok
from tracking.domain import entry_for, scan_detail, scan_moves, warehouse_moves

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def later(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_the_first_scan_moves_a_dispatched_or_not_yet_dispatched_shipment():
    assert scan_moves("dispatched", None, "in_transit", T0)
    assert scan_moves("packed", None, "in_transit", T0)  # the dispatch event is still on its way


def test_a_late_older_scan_does_not_move_the_shipment_back():
    assert not scan_moves("out_for_delivery", later(60), "in_transit", later(30))
    assert scan_moves("in_transit", later(30), "out_for_delivery", later(60))


@pytest.mark.parametrize("final", ["delivered", "returned_to_sender", "cancelled"])
def test_nothing_moves_a_shipment_out_of_a_final_status(final: str):
    for status in ("in_transit", "out_for_delivery", "delivery_failed", "delivered"):
        assert not scan_moves(final, T0, status, later(60))


def test_delivered_wins_even_with_an_older_carrier_clock():
    assert scan_moves("out_for_delivery", later(60), "delivered", later(59))


def test_a_new_attempt_after_a_failed_delivery_moves_on():
    assert scan_moves("delivery_failed", later(60), "out_for_delivery", later(24 * 60))


def test_warehouse_events_only_move_forward_inside_the_warehouse():
    assert warehouse_moves("created", "picked") and warehouse_moves("packed", "dispatched")
    assert not warehouse_moves("dispatched", "packed")
    assert not warehouse_moves("in_transit", "dispatched")  # a scan got here first
    assert warehouse_moves("packed", "cancelled") and not warehouse_moves("dispatched", "cancelled")


def test_the_signature_is_hmac_sha256_of_the_raw_body():
    body = b'{"a": 1}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature_ok("s3cret", body, good)
    assert signature_ok("s3cret", body, good.upper().replace("SHA256=", "sha256="))
    assert not signature_ok("s3cret", body + b" ", good)
    assert not signature_ok("other", body, good)
    assert not signature_ok("s3cret", body, good.removeprefix("sha256="))
    assert not signature_ok("s3cret", body, None)
    assert not signature_ok(None, body, good)  # no secret configured: nothing is accepted


def test_timeline_details_are_readable_and_never_name_the_customer():
    order = placed(uuid4())
    entry = entry_for(uuid4(), order.order_id, T0, order)
    assert entry.type == "OrderPlaced"
    assert entry.detail == f"Order {order.external_id} placed through web: 3 items, total {Decimal('47.30')} EUR"
    for private in ("ana@example.com", "Ana Lima", "Rua Augusta", "1100-048"):
        assert private not in entry.detail
    assert scan_detail("delivery_failed", "oms-post", "OMS1PT", "Lisboa", "nobody home") == (
        "Delivery attempt failed at Lisboa: nobody home (oms-post OMS1PT)")
