"""The operator API of the real inventory process: locations, SKU settings, stock and its audit trail,
with authentication and validation (422 naming field and rule, never 500)."""

import uuid

import pytest

from tests.integration.inventory.support import unique

pytestmark = pytest.mark.infra


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/v1/locations/LIS", {"name": "Lisbon DC", "country": "PT"}),
    ("GET", "/v1/locations", None),
    ("PUT", "/v1/locations/LIS/stock/SKU-1", {"on_hand": 1}),
    ("PUT", "/v1/skus/SKU-1", {"allow_backorder": True}),
    ("GET", "/v1/skus/SKU-1", None),
    ("GET", "/v1/stock/SKU-1", None),
    ("GET", "/v1/stock/SKU-1/movements", None),
    ("GET", f"/v1/reservations/{uuid.uuid4()}", None),
])
async def test_every_endpoint_needs_the_operator_token(http, svc, method, path, body):
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic abc"}):
        resp = await http.request(method, f"{svc.url}{path}", json=body, headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] == "unauthorized"


async def test_locations_are_created_then_updated_and_listed_with_a_cursor(http, svc, admin_headers, put, get):
    loc = unique("LOC")
    first = await http.put(f"{svc.url}/v1/locations/{loc}", json={"name": "Lisbon DC", "country": "PT"},
                           headers=admin_headers)
    assert first.status_code == 201 and first.json()["country"] == "PT"
    again = await http.put(f"{svc.url}/v1/locations/{loc}", json={"name": "Lisboa DC", "country": "PT"},
                           headers=admin_headers)
    assert again.status_code == 200 and again.json()["name"] == "Lisboa DC"
    for i in range(3):
        await put(f"/v1/locations/{loc}-{i}", {"name": f"Extra {i}", "country": "ES"})
    seen, cursor = [], None
    while True:
        page = await get("/v1/locations", limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 2
        seen += [item["location_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert {loc, f"{loc}-0", f"{loc}-1", f"{loc}-2"} <= set(seen)


@pytest.mark.parametrize(("path", "body", "field", "rule"), [
    ("/v1/locations/L1", {"name": "X", "country": "XX"}, "country", "iso_3166_alpha2"),
    ("/v1/locations/L1", {"name": "X", "country": "pt"}, "country", "iso_3166_alpha2"),
    ("/v1/locations/L1", {"name": "  ", "country": "PT"}, "name", "string_too_short"),
    ("/v1/locations/L1", {"country": "PT"}, "name", "missing"),
    ("/v1/locations/L%201", {"name": "X", "country": "PT"}, "location_id", "string_pattern_mismatch"),
    ("/v1/locations/L1/stock/SKU-1", {"on_hand": -1}, "on_hand", "greater_than_equal"),
    ("/v1/locations/L1/stock/SKU-1", {"on_hand": 1.5}, "on_hand", "int_type"),
    ("/v1/locations/L1/stock/SKU-1", {"on_hand": "3"}, "on_hand", "int_type"),
    ("/v1/locations/L1/stock/SKU-1", {"on_hand": 10**12}, "on_hand", "less_than_equal"),
    ("/v1/locations/L1/stock/SKU-1", {"on_hand": 1, "extra": 1}, "extra", "extra_forbidden"),
    ("/v1/locations/L1/stock/-bad", {"on_hand": 1}, "sku", "string_pattern_mismatch"),
    ("/v1/skus/SKU-1", {"low_stock_threshold": -2}, "low_stock_threshold", "greater_than_equal"),
    ("/v1/skus/SKU-1", {"allow_backorder": "yes"}, "allow_backorder", "bool_type"),
])
async def test_bad_input_is_a_422_naming_field_and_rule(http, svc, admin_headers, path, body, field, rule):
    resp = await http.put(f"{svc.url}{path}", json=body, headers=admin_headers)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "validation_failed"
    assert {"field": field, "rule": rule} in [{"field": f["field"], "rule": f["rule"]} for f in error["fields"]]


async def test_bad_json_and_cursors_are_422_too(http, svc, admin_headers):
    resp = await http.put(f"{svc.url}/v1/locations/L1", content=b"{not json", headers={
        **admin_headers, "content-type": "application/json"})
    assert resp.status_code == 422
    resp = await http.get(f"{svc.url}/v1/locations", params={"cursor": "garbage!"}, headers=admin_headers)
    assert resp.status_code == 422 and resp.json()["error"]["fields"][0]["field"] == "cursor"
    resp = await http.get(f"{svc.url}/v1/reservations/not-a-uuid", headers=admin_headers)
    assert resp.status_code == 422 and resp.json()["error"]["fields"][0]["field"] == "order_id"


async def test_sku_settings_have_defaults_until_set(put, get):
    sku = unique("SET")
    assert await get(f"/v1/skus/{sku}") == {"sku": sku, "allow_backorder": False, "low_stock_threshold": 0,
                                            "returnable": True}
    body = {"allow_backorder": True, "low_stock_threshold": 4, "returnable": False}
    assert await put(f"/v1/skus/{sku}", body) == {"sku": sku, **body}
    assert await get(f"/v1/skus/{sku}") == {"sku": sku, **body}


async def test_stock_figures_per_location_and_totals(http, svc, admin_headers, put, get):
    sku, lis, mad = unique("TEE/RED"), unique("LIS"), unique("MAD")  # a SKU with "/" is addressable
    await put(f"/v1/locations/{lis}", {"name": "Lisbon", "country": "PT"})
    await put(f"/v1/locations/{mad}", {"name": "Madrid", "country": "ES"})
    missing = await http.get(f"{svc.url}/v1/stock/{sku}", headers=admin_headers)
    assert missing.status_code == 404
    created = await http.put(f"{svc.url}/v1/locations/{lis}/stock/{sku}", json={"on_hand": 7, "reason": "count"},
                             headers=admin_headers)
    assert created.status_code == 201
    assert created.json() == {"sku": sku, "location_id": lis, "on_hand": 7, "reserved": 0, "available": 7}
    await put(f"/v1/locations/{mad}/stock/{sku}", {"on_hand": 3, "reason": "delivery"})
    await put(f"/v1/locations/{lis}/stock/{sku}", {"on_hand": 5, "reason": "damaged"})
    assert await get(f"/v1/stock/{sku}") == {
        "sku": sku, "on_hand": 8, "reserved": 0, "available": 8,
        "locations": sorted([{"location_id": lis, "on_hand": 5, "reserved": 0, "available": 5},
                             {"location_id": mad, "on_hand": 3, "reserved": 0, "available": 3}],
                            key=lambda x: x["location_id"]),
    }
    unknown = await http.put(f"{svc.url}/v1/locations/{unique('NOWHERE')}/stock/{sku}", json={"on_hand": 1},
                             headers=admin_headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def test_every_stock_change_is_a_movement_newest_first_with_a_cursor(put, get):
    sku, loc = unique("MOV"), unique("LIS")
    await put(f"/v1/locations/{loc}", {"name": "Lisbon", "country": "PT"})
    for on_hand, reason in [(10, "delivery"), (10, "recount"), (7, "damaged"), (9, "found"), (0, "write-off")]:
        await put(f"/v1/locations/{loc}/stock/{sku}", {"on_hand": on_hand, "reason": reason})
    items, cursor = [], None
    while True:
        page = await get(f"/v1/stock/{sku}/movements", limit=2, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # The unchanged recount moved nothing, so it is not in the trail.
    assert [(m["delta"], m["reason"]) for m in items] == [(-9, "write-off"), (2, "found"), (-3, "damaged"),
                                                          (10, "delivery")]
    assert all(m["location_id"] == loc and m["order_id"] is None and m["at"] for m in items)
    assert (await get(f"/v1/stock/{sku}"))["on_hand"] == 0
