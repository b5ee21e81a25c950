"""The platform's input rules (oms_platform.http_input) and rate limit buckets (oms_platform.ratelimit),
as pure functions; tests/e2e/test_http_input.py checks them on the real services."""

import logging

import httpx
import pytest
from fastapi import FastAPI

from oms_platform.http import PlatformMiddleware, install_error_handlers
from oms_platform.http_input import InputError, check_body, check_content_type, check_path, check_query
from oms_platform.ratelimit import TokenBuckets


def refusal(check, *args) -> InputError:
    with pytest.raises(InputError) as info:
        check(*args)
    return info.value


@pytest.mark.parametrize(("body", "field"), [
    (b'{"name": "a\\u0000b"}', "name"),
    (b'{"lines": [{"sku": "A"}, {"sku": "\\u0000"}]}', "lines[1].sku"),
    (b'{"a\\u0000": 1}', "a"),
    (b'["x", "\\u0000"]', "[1]"),
])
def test_a_nul_in_a_json_string_names_its_field(body: bytes, field: str) -> None:
    error = refusal(check_body, body)
    assert (error.status, error.field, error.rule) == (422, field, "no_nul")


def test_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    check_body(b'{"path": "C:\\\\u0000"}')  # the text \u0000, not a NUL


def test_a_body_that_is_not_utf8_names_the_body() -> None:
    error = refusal(check_body, b'{"name": "\xff"}')
    assert (error.status, error.field, error.rule) == (422, "body", "utf8")


def test_a_lone_surrogate_or_broken_json_with_escapes_names_the_body() -> None:
    for body in (b'{"name": "a\\ud800"}', b'{"name": \x00', b'{"name": "\\u00'):
        error = refusal(check_body, body)
        assert (error.status, error.field, error.rule) == (422, "body", "json_invalid")


def test_escapes_that_are_fine_pass() -> None:
    check_body(b'{"name": "Jo\\u00e3o \\ud83d\\ude00"}')  # an escaped letter and an escaped pair


@pytest.mark.parametrize("content_type", [b"application/json", b"application/json; charset=utf-8",
                                          b"Application/JSON;charset=\"UTF-8\"", b"application/merge-patch+json"])
def test_json_media_types_are_accepted(content_type: bytes) -> None:
    check_content_type(content_type)


@pytest.mark.parametrize("content_type", [None, b"", b"text/plain", b"application/x-www-form-urlencoded",
                                          b"multipart/form-data; boundary=x", b"application/json; charset=latin-1",
                                          b"application/jsonp", b"text/json"])
def test_anything_else_is_a_415(content_type: bytes | None) -> None:
    error = refusal(check_content_type, content_type)
    assert (error.status, error.code, error.field) == (415, "unsupported_media_type", "content-type")


@pytest.mark.parametrize(("query", "field", "rule"), [
    (b"status=a&status=b", "status", "not_repeated"),
    (b"location_id=%00", "location_id", "no_nul"),
    (b"a=1&b=x%00y", "b", "no_nul"),
    (b"name=%ff", "query", "utf8"),
])
def test_query_rules(query: bytes, field: str, rule: str) -> None:
    error = refusal(check_query, query)
    assert (error.status, error.field, error.rule) == (422, field, rule)


def test_a_plain_query_and_path_pass() -> None:
    check_query(b"status=pending&customer_id=c%C3%A9&limit=5")
    check_path("/v1/stock/A-1/movements")
    assert refusal(check_path, "/v1/stock/A\x00").field == "path"


def test_token_buckets_allow_the_burst_then_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(2, 3, clock=lambda: now[0])
    assert [buckets.take(b"k") for _ in range(3)] == [0, 0, 0]
    assert buckets.take(b"k") == pytest.approx(0.5)
    assert buckets.take(b"other") == 0  # each key its own bucket
    now[0] = 0.5
    assert buckets.take(b"k") == 0
    assert buckets.take(b"k") > 0


def test_token_buckets_forget_the_least_recent_keys() -> None:
    buckets = TokenBuckets(1, 1, max_keys=2, clock=lambda: 0.0)
    for key in (b"a", b"b", b"c"):
        buckets.take(key)
    assert buckets.take(b"a") == 0  # forgotten: a full bucket again
    assert buckets.take(b"c") > 0


async def test_an_unhandled_error_is_a_500_in_the_error_shape_logged_once(caplog) -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(PlatformMiddleware, max_body_bytes=1024)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    # raise_app_exceptions: an exception raised on to the server would fail the request here.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    with caplog.at_level(logging.ERROR):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            resp = await client.get("/boom")
    assert resp.status_code == 500
    assert resp.json() == {"error": {"code": "internal", "message": "internal error", "fields": []}}
    assert len([r for r in caplog.records if r.exc_info]) == 1
