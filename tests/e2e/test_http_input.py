"""The input rules of every HTTP API (README, Input rules), checked against the real services: a NUL
byte anywhere, a body that is not UTF-8 or not JSON, a repeated query parameter, a time that is not
ISO 8601, unknown fields, a channel key on an operator endpoint, and the 405's Allow header. Each is
a 4xx in the contract's error shape naming the field and the rule, never a 500."""

from typing import Any

import httpx
import pytest

from tests.support.polling import eventually
from tests.support.system import ADMIN, System

pytestmark = pytest.mark.infra


def refused(resp: httpx.Response, status: int, field: str, rule: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert field in [f["field"] for f in error["fields"]], error
    if rule is not None:
        assert rule in [f["rule"] for f in error["fields"] if f["field"] == field], error
    return error


async def req(system: System, method: str, service: str, path: str, *, auth: str = "admin",
              **kwargs: Any) -> httpx.Response:
    """A request as the operator (auth="admin"), the channel "web" (auth="channel") or no one."""
    assert system.http is not None
    who = {"admin": ADMIN, "channel": system.channel}.get(auth, {})
    headers = {**who, **kwargs.pop("headers", {})}
    return await system.http.request(method, f"{system.url(service)}{path}", headers=headers, **kwargs)


NUL_QUERIES = [
    ("inventory", "/v1/stock/X/movements?location_id=%00", "location_id"),
    ("fulfilment", "/v1/shipments?location_id=%00", "location_id"),
    ("orchestrator", "/v1/sagas?saga_type=%00", "saga_type"),
    ("order-capture", "/v1/orders?customer_id=a%00b", "customer_id"),
]


@pytest.mark.parametrize(("service", "path", "field"), NUL_QUERIES)
async def test_a_nul_byte_in_a_query_parameter_is_a_422_naming_it(system: System, service: str, path: str,
                                                                  field: str):
    refused(await req(system, "GET", service, path), 422, field, "no_nul")


async def test_a_nul_byte_in_a_path_parameter_is_a_422(system: System):
    refused(await req(system, "GET", "inventory", "/v1/stock/A%00B"), 422, "path", "no_nul")
    refused(await req(system, "PUT", "inventory", "/v1/locations/x%00y", json={"name": "a", "country": "PT"}),
            422, "path", "no_nul")


async def test_a_nul_character_in_a_json_string_is_a_422_naming_the_field(system: System):
    resp = await req(system, "PUT", "inventory", "/v1/locations/nul-test", json={"name": "a\u0000b", "country": "PT"})
    refused(resp, 422, "name", "no_nul")
    resp = await req(system, "GET", "inventory", "/v1/locations/nul-test")
    assert resp.status_code in (404, 405)  # nothing stored (there is no GET of one location)
    page = (await req(system, "GET", "inventory", "/v1/locations", params={"limit": 200})).json()
    assert "nul-test" not in [loc["location_id"] for loc in page["items"]]


async def test_a_body_that_is_not_utf8_is_a_422_naming_the_body(system: System):
    for service, path in (("inventory", "/v1/locations/utf"), ("order-capture", "/v1/admin/api-keys")):
        method = "PUT" if service == "inventory" else "POST"
        resp = await req(system, method, service, path, content=b'{"name": "\xff\xfe", "country": "PT"}',
                         headers={"content-type": "application/json"})
        refused(resp, 422, "body", "utf8")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                          None])
async def test_a_body_that_is_not_json_is_a_415(system: System, content_type: str | None):
    headers = {"Idempotency-Key": "k-415", **({"content-type": content_type} if content_type else {})}
    resp = await req(system, "POST", "order-capture", "/v1/orders", auth="channel", content=b'{"channel": "web"}',
                     headers=headers)
    error = refused(resp, 415, "content-type", "application_json")
    assert error["code"] == "unsupported_media_type"
    resp = await req(system, "PUT", "inventory", "/v1/locations/form", content=b"name=a&country=PT",
                     headers={"content-type": content_type or ""})
    assert resp.status_code == 415, resp.text


async def test_json_with_a_charset_is_accepted(system: System):
    resp = await req(system, "PUT", "inventory", "/v1/locations/charset-ok",
                     content=b'{"name": "Charset", "country": "PT"}',
                     headers={"content-type": "application/json; charset=utf-8"})
    assert resp.status_code in (200, 201), resp.text


async def test_a_repeated_query_parameter_is_a_422(system: System):
    resp = await req(system, "GET", "order-capture", "/v1/orders?status=pending&status=confirmed")
    refused(resp, 422, "status", "not_repeated")
    refused(await req(system, "GET", "fulfilment", "/v1/shipments?limit=1&limit=2"), 422, "limit", "not_repeated")


@pytest.mark.parametrize("value", ["1.19e-07", "1700000000", "2026-12-01T10:00:00", "2026-12-01", "yesterday"])
async def test_times_are_iso_8601_with_a_timezone(system: System, value: str):
    resp = await req(system, "GET", "order-capture", "/v1/orders", params={"created_to": value})
    refused(resp, 422, "created_to")


async def test_an_iso_time_with_a_timezone_is_accepted(system: System):
    for value in ("2026-12-01T10:00:00Z", "2026-12-01T10:00:00+01:00", "2026-12-01T10:00:00.123456+00:00"):
        resp = await req(system, "GET", "order-capture", "/v1/orders", params={"created_to": value})
        assert resp.status_code == 200, resp.text


async def test_unknown_fields_are_refused(system: System):
    resp = await req(system, "POST", "order-capture", "/v1/admin/api-keys", json={"channel": "web", "scope": "all"})
    refused(resp, 422, "scope", "extra_forbidden")


@pytest.mark.parametrize(("service", "method", "path"), [
    ("inventory", "GET", "/v1/locations"),
    ("fulfilment", "GET", "/v1/shipments"),
    ("orchestrator", "GET", "/v1/sagas"),
    ("order-capture", "GET", "/v1/admin/api-keys"),
])
async def test_a_channel_key_on_an_operator_endpoint_is_a_403(system: System, service: str, method: str, path: str):
    # The key reaches the other services' own copies one Kafka hop after it was issued.
    async def check() -> httpx.Response | None:
        resp = await req(system, method, service, path, auth="channel")
        return resp if resp.status_code == 403 else None

    resp = await eventually(check, timeout=30, what=f"{service} to answer 403 to a channel key")
    assert resp.json()["error"]["code"] == "forbidden"
    unknown = await req(system, method, service, path, auth="none", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401


async def test_405_lists_every_method_of_the_path(system: System):
    resp = await req(system, "OPTIONS", "order-capture", "/v1/orders", auth="channel")
    assert resp.status_code == 405
    assert set(resp.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert resp.json()["error"]["code"] == "method_not_allowed"
    resp = await req(system, "DELETE", "inventory", "/v1/skus/ABC")
    assert resp.status_code == 405
    assert set(resp.headers["allow"].replace(" ", "").split(",")) >= {"GET", "PUT"}
