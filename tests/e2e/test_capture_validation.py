"""Order capture refuses bad input with a 422 naming each failing field and rule (413 for a body over
the size limit), and stores and publishes nothing for a refused request."""

import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from tests.support.capture import (
    assert_refused_left_no_trace,
    error_fields,
    records_for,
)
from tests.support.orders import new_order

MAX_BODY = 256 * 1024  # the default limit


Mutation = Callable[[dict[str, Any]], None]


def put(path: str, value: Any) -> Mutation:
    """Sets a value at a dotted path ("lines.0.quantity")."""

    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def drop(path: str) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for p in parents:
            node = node[p]
        del node[last]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        for m in mutations:
            m(body)

    return mutate


def lines(n: int) -> Mutation:
    """n distinct lines of 1 x 1.00, with the payment amount matching."""

    def mutate(body: dict[str, Any]) -> None:
        body["lines"] = [{"sku": f"SKU-{i}", "quantity": 1, "unit_price": "1.00"} for i in range(n)]
        body["payment"]["amount"] = f"{n}.00"

    return mutate


ADDRESS_FIELDS = ("name", "line1", "city", "postal_code", "country")

CASES = [
    pytest.param(put("lines.0.quantity", 0), ("lines[0].quantity", "greater_than_equal"), id="quantity-0"),
    pytest.param(put("lines.0.quantity", 10001), ("lines[0].quantity", "less_than_equal"), id="quantity-10001"),
    pytest.param(put("lines.0.quantity", 1.5), ("lines[0].quantity", "int_type"), id="quantity-fraction"),
    pytest.param(put("lines.0.quantity", 2.0), ("lines[0].quantity", "int_type"), id="quantity-float"),
    pytest.param(put("lines.0.quantity", "2"), ("lines[0].quantity", "int_type"), id="quantity-string"),
    pytest.param(put("lines.0.quantity", True), ("lines[0].quantity", "int_type"), id="quantity-bool"),
    pytest.param(lines(501), ("lines", "too_long"), id="501-lines"),
    pytest.param(lines(0), ("lines", "too_short"), id="0-lines"),
    pytest.param(
        both(put("lines", [{"sku": "A-1", "quantity": 1, "unit_price": "1.00"},
                           {"sku": "A-1", "quantity": 2, "unit_price": "1.00"}]), put("payment.amount", "3.00")),
        ("lines[1].sku", "unique_sku"), id="duplicate-sku"),
    pytest.param(put("lines.0.unit_price", "-1.00"), ("lines[0].unit_price", "non_negative"), id="negative-price"),
    pytest.param(put("lines.0.unit_price", "19.901"), ("lines[0].unit_price", "max_two_decimals"),
                 id="price-3-decimals"),
    pytest.param(put("lines.0.unit_price", 19.9), ("lines[0].unit_price", "decimal_string"), id="price-json-float"),
    pytest.param(put("payment.amount", 39.8), ("payment.amount", "decimal_string"), id="amount-json-float"),
    pytest.param(put("lines.0.unit_price", "NaN"), ("lines[0].unit_price", "finite_number"), id="price-nan"),
    pytest.param(put("lines.0.unit_price", "Infinity"), ("lines[0].unit_price", "finite_number"), id="price-infinite"),
    pytest.param(put("lines.0.unit_price", "abc"), ("lines[0].unit_price", "decimal_string"), id="price-not-number"),
    pytest.param(put("lines.0.unit_price", "1e1"), ("lines[0].unit_price", "decimal_string"), id="price-exponent"),
    pytest.param(put("lines.0.unit_price", " 19.90 "), ("lines[0].unit_price", "decimal_string"), id="price-spaces"),
    pytest.param(put("payment.amount", "+39.80"), ("payment.amount", "decimal_string"), id="amount-plus-sign"),
    pytest.param(both(put("lines.0.unit_price", "1000000000000.00"), put("lines.0.quantity", 1),
                      put("payment.amount", "1000000000000.00")),
                 ("lines[0].unit_price", "max_amount"), id="price-over-storable"),
    pytest.param(both(put("lines.0.unit_price", "999999999999.99"), put("payment.amount", "1999999999999.98")),
                 ("payment.amount", "max_amount"), id="total-over-storable"),
    pytest.param(both(put("lines.0.unit_price", "1e400"), put("payment.amount", "1")),
                 ("lines[0].unit_price", "decimal_string"), id="price-huge-exponent"),
    pytest.param(put("currency", "EUX"), ("currency", "iso_4217"), id="currency-EUX"),
    pytest.param(put("currency", "eur"), ("currency", "iso_4217"), id="currency-lowercase"),
    pytest.param(put("currency", "EURO"), ("currency", "string_too_long"), id="currency-4-letters"),
    pytest.param(put("shipping_address.country", "PX"), ("shipping_address.country", "iso_3166_alpha2"),
                 id="country-PX"),
    pytest.param(put("shipping_address.country", "pt"), ("shipping_address.country", "iso_3166_alpha2"),
                 id="country-lowercase"),
    pytest.param(put("customer.email", "ana.example.com"), ("customer.email", "email"), id="email-no-at"),
    pytest.param(put("customer.email", "ana@"), ("customer.email", "email"), id="email-no-domain"),
    pytest.param(drop("customer.email"), ("customer.email", "missing"), id="email-missing"),
    *(pytest.param(drop(f"shipping_address.{f}"), (f"shipping_address.{f}", "missing"), id=f"address-{f}-missing")
      for f in ADDRESS_FIELDS),
    *(pytest.param(put(f"shipping_address.{f}", "   "), (f"shipping_address.{f}", "string_too_short"),
                   id=f"address-{f}-blank")
      for f in ADDRESS_FIELDS),
    pytest.param(put("shipping_address.line1", ""), ("shipping_address.line1", "string_too_short"),
                 id="address-line1-empty"),
    pytest.param(drop("shipping_address"), ("shipping_address", "missing"), id="address-missing"),
    pytest.param(put("shipping_method", "overnight"), ("shipping_method", "literal_error"), id="shipping-method"),
    pytest.param(drop("shipping_method"), ("shipping_method", "missing"), id="shipping-method-missing"),
    pytest.param(put("payment.status", "captured"), ("payment.status", "literal_error"), id="payment-status"),
    pytest.param(put("payment.amount", "39.81"), ("payment.amount", "equals_total"), id="amount-not-total"),
    pytest.param(put("payment.amount", "0.00"), ("payment.amount", "equals_total"), id="amount-zero"),
    pytest.param(put("gift_wrap", True), ("gift_wrap", "extra_forbidden"), id="unknown-field"),
    pytest.param(put("lines.0.colour", "red"), ("lines[0].colour", "extra_forbidden"), id="unknown-line-field"),
    pytest.param(put("customer.name", "Ana\u0000Lima"), ("customer.name", "no_nul"), id="nul-in-name"),
    pytest.param(put("shipping_address.line2", "floor 2\u0000"), ("shipping_address.line2", "no_nul"),
                 id="nul-in-line2"),
    pytest.param(put("payment.reference", "pay\u00001"), ("payment.reference", "no_nul"), id="nul-in-reference"),
    pytest.param(put("customer.name", "Ana\u0007Lima"), ("customer.name", "no_control_characters"),
                 id="bell-in-name"),
    pytest.param(put("customer.phone", "call me"), ("customer.phone", "string_pattern_mismatch"), id="bad-phone"),
    pytest.param(put("lines.0.sku", "bad sku!"), ("lines[0].sku", "string_pattern_mismatch"), id="bad-sku"),
    pytest.param(drop("customer"), ("customer", "missing"), id="customer-missing"),
]


@pytest.mark.parametrize(("mutate", "expected"), CASES)
async def test_invalid_order_is_refused_naming_field_and_rule(cap, web, reader, mutate, expected):
    body = new_order()
    mutate(body)
    before = await cap.snapshot()

    resp = await cap.place(web, body)

    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_failed"
    assert expected in error_fields(resp), resp.text
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


async def test_nul_in_external_id_is_refused(cap, web, reader):
    body = new_order()
    body["external_id"] = f"{body['external_id']}\u0000"
    before = await cap.snapshot()

    resp = await cap.place(web, body)

    assert resp.status_code == 422, resp.text
    assert ("external_id", "no_nul") in error_fields(resp)
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


async def test_every_failing_field_is_named(cap, web, reader):
    body = new_order(currency="EUX", shipping_method="drone")
    body["lines"][0]["quantity"] = 0
    body["shipping_address"]["country"] = "PX"
    before = await cap.snapshot()

    resp = await cap.place(web, body)

    assert resp.status_code == 422, resp.text
    fields = error_fields(resp)
    for expected in [("currency", "iso_4217"), ("shipping_method", "literal_error"),
                     ("lines[0].quantity", "greater_than_equal"), ("shipping_address.country", "iso_3166_alpha2")]:
        assert expected in fields, resp.text
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


async def test_all_business_rules_are_reported_together(cap, web, reader):
    body = new_order(lines=[{"sku": "A-1", "quantity": 1, "unit_price": "1.00"},
                            {"sku": "A-1", "quantity": 1, "unit_price": "1.00"}])
    body["payment"]["amount"] = "5.00"
    before = await cap.snapshot()

    resp = await cap.place(web, body)

    assert resp.status_code == 422, resp.text
    assert {("lines[1].sku", "unique_sku"), ("payment.amount", "equals_total")} <= set(error_fields(resp))
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


async def test_boundary_values_are_accepted(cap, web):
    body = new_order(lines=[{"sku": "BIG-1", "quantity": 10000, "unit_price": "0.01"},
                            {"sku": "FREE-1", "quantity": 1, "unit_price": "0"},
                            {"sku": "INT-1", "quantity": 1, "unit_price": "5"}])
    body["payment"]["amount"] = "105"
    body["shipping_method"] = "express"
    body["payment"]["status"] = "pending"

    order = await cap.place_ok(web, body)

    assert order["total"] == "105.00"
    assert order["shipping_method"] == "express"

    many = new_order()
    lines(500)(many)
    assert (await cap.place_ok(web, many))["total"] == "500.00"


async def test_amounts_leave_with_exactly_two_decimals(cap, web, reader):
    body = new_order(lines=[{"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": "19.9"},
                            {"sku": "CAP-1", "quantity": 1, "unit_price": "7"}])
    body["payment"]["amount"] = "46.8"

    order = await cap.place_ok(web, body)

    assert [(li["unit_price"], li["line_total"]) for li in order["lines"]] == [("19.90", "39.80"), ("7.00", "7.00")]
    assert (order["total"], order["payment"]["amount"]) == ("46.80", "46.80")
    stored = (await cap.http.get(f"{cap.url}/v1/orders/{order['order_id']}", headers=web.auth)).json()
    assert [li["unit_price"] for li in stored["lines"]] == ["19.90", "7.00"]
    assert (stored["total"], stored["payment"]["amount"]) == ("46.80", "46.80")
    await reader.wait_for(lambda _: bool(records_for(reader, order["order_id"])))
    [record] = records_for(reader, order["order_id"])
    payload = orjson.loads(record.value)["payload"]
    assert [li["unit_price"] for li in payload["lines"]] == ["19.90", "7.00"]
    assert (payload["total"], payload["payment"]["amount"]) == ("46.80", "46.80")


def padded(body: dict[str, Any], size: int) -> bytes:
    """The body as JSON, padded with whitespace (still valid JSON) to exactly `size` bytes."""
    raw = orjson.dumps(body)
    assert len(raw) < size
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


async def test_body_at_the_limit_is_accepted(cap, web):
    body = new_order()
    raw = padded(body, MAX_BODY)

    resp = await cap.http.post(f"{cap.url}/v1/orders", content=raw,
                               headers={**web.headers(), "Content-Type": "application/json"})

    assert resp.status_code == 201, resp.text
    assert resp.json()["external_id"] == body["external_id"]


async def test_body_over_the_limit_is_413_and_nothing_stored(cap, web, reader):
    body = new_order()
    before = await cap.snapshot()

    resp = await cap.http.post(f"{cap.url}/v1/orders", content=padded(body, MAX_BODY + 1),
                               headers={**web.headers(), "Content-Type": "application/json"})

    assert resp.status_code == 413, resp.text
    assert resp.json()["error"]["code"] == "payload_too_large"
    assert ("body", "max_bytes") in error_fields(resp)
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


async def test_chunked_body_over_the_limit_is_413_and_nothing_stored(cap, web, reader):
    """Without a Content-Length the limit applies to the bytes as they arrive."""
    body = new_order()
    raw = padded(body, MAX_BODY + 64 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 16 * 1024):
            yield raw[i:i + 16 * 1024]

    before = await cap.snapshot()

    resp = await cap.http.post(f"{cap.url}/v1/orders", content=chunks(),
                               headers={**web.headers(), "Content-Type": "application/json"})

    assert "content-length" not in resp.request.headers
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"]["code"] == "payload_too_large"
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


async def test_malformed_json_is_422_naming_the_body(cap, web, reader):
    body = new_order()
    raw = orjson.dumps(body)[:-20]  # cut off mid-document
    before = await cap.snapshot()

    resp = await cap.http.post(f"{cap.url}/v1/orders", content=raw,
                               headers={**web.headers(), "Content-Type": "application/json"})

    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_failed"
    assert ("body", "json_invalid") in error_fields(resp), resp.text
    await assert_refused_left_no_trace(cap, web, reader, before, body["external_id"])


@pytest.mark.parametrize("raw", [b"[]", b'"order"', b"null", b"{}"], ids=["array", "string", "null", "empty-object"])
async def test_body_that_is_not_an_order_object_is_422(cap, web, reader, raw):
    before = await cap.snapshot()

    resp = await cap.http.post(f"{cap.url}/v1/orders", content=raw,
                               headers={**web.headers(), "Content-Type": "application/json"})

    assert resp.status_code == 422, resp.text
    fields = error_fields(resp)
    assert fields and all(rule for _, rule in fields)
    if raw == b"{}":
        assert ("external_id", "missing") in fields and ("lines", "missing") in fields
    else:
        assert fields[0][0] == "body", resp.text
    await assert_refused_left_no_trace(cap, web, reader, before, None)


async def test_refused_body_is_not_remembered_for_its_idempotency_key(cap, web):
    """A 422 does not claim the key: the corrected request with the same key is then accepted."""
    body = new_order()
    bad = copy.deepcopy(body)
    bad["currency"] = "EUX"
    key = web.headers()["Idempotency-Key"]

    assert (await cap.place(web, bad, key)).status_code == 422
    resp = await cap.place(web, body, key)

    assert resp.status_code == 201, resp.text
    assert resp.json()["currency"] == "EUR"
