"""Pagination cursors: what encode_cursor makes, decode_cursor reads back; anything else is a RuleBroken
naming the `cursor` field (the 422 of CONTRACT.md at the HTTP edge). Keyset pages rows with them."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms_platform.errors import RuleBroken
from oms_platform.pagination import Keyset, decode_cursor, encode_cursor, of_type

_json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text() | st.floats(
    allow_nan=False, allow_infinity=False)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


def test_round_trip_of_a_typical_cursor() -> None:
    values = {"created_at": "2026-01-02T03:04:05.123456+00:00", "id": "0190a6f1-7d1c-7b3e-9a55-1c2d3e4f5a6b"}
    cursor = encode_cursor(values)
    assert decode_cursor(cursor) == values
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor  # safe in a query string


@given(st.dictionaries(st.text(), _json, max_size=6))
def test_round_trip_of_any_json_object(values: dict) -> None:
    assert decode_cursor(encode_cursor(values)) == values


def test_no_cursor_means_the_first_page() -> None:
    assert decode_cursor(None) is None
    assert decode_cursor("") is None


def _assert_cursor_error(exc: RuleBroken) -> None:
    assert exc.code == "validation_failed"
    assert exc.fields and exc.fields[0].field == "cursor"
    assert exc.fields[0].rule == "invalid_cursor"


@pytest.mark.parametrize("bad", [
    "not a cursor!",
    "%%%",
    "é",
    "AAAA",  # base64 of three zero bytes: not JSON
    base64.urlsafe_b64encode(b"[1, 2]").decode(),  # JSON, but not an object
    base64.urlsafe_b64encode(b"null").decode(),
    base64.urlsafe_b64encode(b'{"id": ').decode(),  # truncated
    encode_cursor({"id": 1})[:-3],
])
def test_a_bad_cursor_is_a_422_naming_cursor(bad: str) -> None:
    with pytest.raises(RuleBroken) as info:
        decode_cursor(bad)
    _assert_cursor_error(info.value)


@given(st.text())
def test_any_text_either_decodes_to_an_object_or_is_the_cursor_error(text: str) -> None:
    try:
        value = decode_cursor(text)
    except RuleBroken as exc:
        _assert_cursor_error(exc)
    else:
        assert isinstance(value, dict) or (value is None and text == "")


IDS = Keyset(key=lambda r: {"i": r["id"]}, parse=lambda v: of_type(v["i"], int))


def test_a_keyset_pages_rows_fetched_with_one_more_than_the_limit() -> None:
    rows = [{"id": n} for n in range(1, 5)]  # limit 3, fetched 4: there is a next page
    page = IDS.page(rows, 3, lambda r: r["id"] * 10)
    assert page["items"] == [10, 20, 30]
    assert IDS.after(page["next_cursor"]) == 3  # the cursor carries the last row shown
    last = IDS.page(rows[:2], 3, lambda r: r["id"])
    assert last == {"items": [1, 2], "next_cursor": None}
    assert IDS.page([], 3, lambda r: r) == {"items": [], "next_cursor": None}
    assert IDS.after(None) is None and IDS.after("") is None


@pytest.mark.parametrize("values", [{}, {"j": 1}, {"i": "1"}, {"i": True}, {"i": None}])
def test_a_cursor_of_another_list_or_shape_is_the_cursor_error(values: dict) -> None:
    with pytest.raises(RuleBroken) as info:
        IDS.after(encode_cursor(values))
    _assert_cursor_error(info.value)
