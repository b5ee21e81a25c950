"""GET /v1/orders: filters, cursor pagination over every page, and bad query parameters."""

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from tests.support.capture import ADMIN, Capture, ChannelKey, error_fields, running_capture
from tests.support.orders import new_order

N = 13
CONFIRMED = (1, 4, 7)
CANCELLED = (2,)


@pytest.fixture(scope="module")
async def cap(infra, log_dir) -> AsyncIterator[Capture]:
    # The orders of this module are never announced: no saga of a concurrent run on the same Kafka
    # picks them up and changes their statuses under the filters being tested.
    async with running_capture(infra, log_dir, "listing", OUTBOX_RELAY_ENABLED="false") as c:
        yield c


def customer_of(i: int) -> str:
    return "cust-a" if i % 3 == 0 else "cust-b"


@pytest.fixture(scope="module")
async def placed(cap: Capture, web: ChannelKey) -> list[dict[str, Any]]:
    """N web orders in creation order (with two statuses set as the status consumer would), plus
    pos orders of the same customer that a web key must never see."""
    orders = []
    for i in range(N):
        body = new_order()
        body["customer"]["id"] = customer_of(i)
        orders.append(await cap.place_ok(web, body))
    pos = await cap.new_key("pos")
    for _ in range(2):
        body = new_order(channel="pos")
        body["customer"]["id"] = "cust-a"
        await cap.place_ok(pos, body)
    for i, status in [*((i, "confirmed") for i in CONFIRMED), *((i, "cancelled") for i in CANCELLED)]:
        await cap.db.execute("UPDATE orders SET status = $2 WHERE order_id = $1",
                             uuid.UUID(orders[i]["order_id"]), status)
        orders[i]["status"] = status
    return orders


def ids(orders: list[dict[str, Any]]) -> list[str]:
    return [o["order_id"] for o in orders]


def newest_first(orders: list[dict[str, Any]]) -> list[str]:
    return ids(orders)[::-1]


async def list_orders(cap: Capture, key: ChannelKey, **params: Any) -> dict[str, Any]:
    resp = await cap.http.get(f"{cap.url}/v1/orders", params=params, headers=key.auth)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"items", "next_cursor"}
    return body


async def walk(cap: Capture, key: ChannelKey, limit: int, **params: Any) -> list[list[str]]:
    """Every page of a listing, following next_cursor to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        body = await list_orders(cap, key, **query)
        pages.append(ids(body["items"]))
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) <= N + 1, "pagination does not end"


def midpoint(a: dict[str, Any], b: dict[str, Any], tz: timezone = UTC) -> str:
    ta, tb = datetime.fromisoformat(a["created_at"]), datetime.fromisoformat(b["created_at"])
    assert ta < tb
    return (ta + (tb - ta) / 2).astimezone(tz).isoformat()


async def test_lists_own_orders_newest_first(cap, web, placed):
    body = await list_orders(cap, web, limit=200)

    assert ids(body["items"]) == newest_first(placed)
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert first == {**placed[-1], "updated_at": first["updated_at"]}


@pytest.mark.parametrize("limit", [1, 4, 5, 12, 13, 200])
async def test_pages_cover_every_order_exactly_once(cap, web, placed, limit):
    pages = await walk(cap, web, limit)

    assert [o for page in pages for o in page] == newest_first(placed)
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit
    assert len(pages) == -(-N // limit)


async def test_default_limit_is_applied(cap, web, placed):
    body = await list_orders(cap, web)

    assert ids(body["items"]) == newest_first(placed)  # fewer than the default of 50


async def test_orders_placed_while_paging_neither_repeat_nor_shift_later_pages(cap):
    shop = await cap.new_key("shop")
    first_batch = [await cap.place_ok(shop) for _ in range(6)]
    page1 = await list_orders(cap, shop, limit=3)
    assert ids(page1["items"]) == newest_first(first_batch)[:3]

    late = [await cap.place_ok(shop) for _ in range(2)]
    rest = await walk_from(cap, shop, page1["next_cursor"], limit=3)

    assert rest == newest_first(first_batch)[3:]
    assert not set(rest) & set(ids(late))


async def walk_from(cap: Capture, key: ChannelKey, cursor: str, *, limit: int) -> list[str]:
    out: list[str] = []
    while cursor:
        body = await list_orders(cap, key, limit=limit, cursor=cursor)
        out += ids(body["items"])
        cursor = body["next_cursor"]
    return out


@pytest.mark.parametrize("status", ["confirmed", "cancelled", "pending", "shipped"])
async def test_filter_by_status(cap, web, placed, status):
    expected = [o for o in placed if o["status"] == status]

    body = await list_orders(cap, web, status=status, limit=200)

    assert ids(body["items"]) == newest_first(expected)
    assert all(o["status"] == status for o in body["items"])


@pytest.mark.parametrize("customer", ["cust-a", "cust-b", "nobody"])
async def test_filter_by_customer(cap, web, placed, customer):
    expected = [o for i, o in enumerate(placed) if customer_of(i) == customer]

    body = await list_orders(cap, web, customer_id=customer, limit=200)

    assert ids(body["items"]) == newest_first(expected)
    assert all(o["customer"]["id"] == customer and o["channel"] == "web" for o in body["items"])


async def test_filter_by_creation_window(cap, web, placed):
    start, end = midpoint(placed[3], placed[4]), midpoint(placed[8], placed[9])

    window = await list_orders(cap, web, created_from=start, created_to=end, limit=200)
    since = await list_orders(cap, web, created_from=start, limit=200)
    until = await list_orders(cap, web, created_to=end, limit=200)

    assert ids(window["items"]) == newest_first(placed[4:9])
    assert ids(since["items"]) == newest_first(placed[4:])
    assert ids(until["items"]) == newest_first(placed[:9])


async def test_creation_window_honours_utc_offsets(cap, web, placed):
    plus_two = timezone(timedelta(hours=2))
    start, end = midpoint(placed[5], placed[6], plus_two), midpoint(placed[9], placed[10], plus_two)
    assert start.endswith("+02:00")

    body = await list_orders(cap, web, created_from=start, created_to=end, limit=200)

    assert ids(body["items"]) == newest_first(placed[6:10])


async def test_filters_combine_and_paginate(cap, web, placed):
    start = midpoint(placed[0], placed[1])
    expected = [o for i, o in enumerate(placed)
                if i >= 1 and o["status"] == "pending" and customer_of(i) == "cust-b"]
    assert len(expected) > 2

    pages = await walk(cap, web, 2, status="pending", customer_id="cust-b", created_from=start)

    assert [o for page in pages for o in page] == newest_first(expected)


async def test_operator_pages_across_channels(cap, placed):
    admin = ChannelKey("", "", ADMIN["Authorization"].split()[1])

    pages = await walk(cap, admin, 4, customer_id="cust-a")

    listed = [o for page in pages for o in page]
    assert len(listed) == len(set(listed)) == 5 + 2  # the web orders of cust-a and the two pos orders
    assert set(newest_first([o for i, o in enumerate(placed) if customer_of(i) == "cust-a"])) <= set(listed)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("!!!", id="not-base64"),
        pytest.param(b64(b"not json"), id="not-json"),
        pytest.param(b64(b"[1, 2]"), id="json-array"),
        pytest.param(b64(b'{"x": 1}'), id="wrong-keys"),
        pytest.param(b64(orjson.dumps({"c": "yesterday", "i": str(uuid.uuid4())})), id="bad-time"),
        pytest.param(b64(orjson.dumps({"c": "2030-01-01T00:00:00+00:00", "i": "nope"})), id="bad-id"),
        pytest.param(b64(orjson.dumps({"c": 5, "i": 6})), id="wrong-types"),
        pytest.param("caf\u00e9", id="non-ascii"),
    ],
)
async def test_bad_cursor_is_422_naming_cursor(cap, web, placed, cursor):
    resp = await cap.http.get(f"{cap.url}/v1/orders", params={"cursor": cursor}, headers=web.auth)

    assert resp.status_code == 422, resp.text
    assert ("cursor", "invalid_cursor") in error_fields(resp)


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten", "1.5"])
async def test_bad_limit_is_422_naming_limit(cap, web, limit):
    resp = await cap.http.get(f"{cap.url}/v1/orders", params={"limit": limit}, headers=web.auth)

    assert resp.status_code == 422, resp.text
    assert [f for f, _ in error_fields(resp)] == ["limit"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"status": "lost"}, "status", id="unknown-status"),
        pytest.param({"created_from": "yesterday"}, "created_from", id="bad-created-from"),
        pytest.param({"created_to": "2030-13-01"}, "created_to", id="bad-created-to"),
        pytest.param({"customer_id": "a\u0000b"}, "customer_id", id="nul-customer"),
        pytest.param({"customer_id": "c" * 129}, "customer_id", id="long-customer"),
    ],
)
async def test_bad_filter_is_422_naming_it(cap, web, params, field):
    resp = await cap.http.get(f"{cap.url}/v1/orders", params=params, headers=web.auth)

    assert resp.status_code == 422, resp.text
    assert [f for f, _ in error_fields(resp)] == [field]
