"""The one way lists are paged (CONTRACT.md: `{"items": [...], "next_cursor": "..." or null}`, taking
`limit` and `cursor`): keyset pagination with an opaque cursor that carries the last row's sort key.

A list declares its Keyset once (what of the last row goes into the cursor, how it is read back);
its handler reads the cursor, fetches `limit + 1` rows after it, and makes the page:

    ORDERS = Keyset(key=lambda r: {"c": r["created_at"].isoformat(), "i": str(r["order_id"])},
                    parse=lambda v: (datetime.fromisoformat(v["c"]), UUID(v["i"])))

    async def list_orders(pool, *, cursor: str | None, limit: int) -> Page:
        after = ORDERS.after(cursor)                 # None for the first page; RuleBroken if not ours
        async with pool.acquire() as conn:
            rows = await repo.list_orders(conn, after=after, limit=limit + 1)
        return ORDERS.page(rows, limit, order_view)

The repository's query orders by that key and keeps rows strictly after it. No HTTP here: a bad
cursor is a RuleBroken naming the `cursor` field (422 at the HTTP edge)."""

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from typing_extensions import TypedDict  # pydantic (FastAPI response models) needs this one before 3.12

from oms_platform.errors import RuleBroken, Violation

K = TypeVar("K")
R = TypeVar("R")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(TypedDict):
    items: list[Any]
    next_cursor: str | None


def single_page(items: Iterable[Any]) -> Page:
    """A list short enough never to need a second page (still in the contract's shape)."""
    return {"items": list(items), "next_cursor": None}


def invalid_cursor() -> RuleBroken:
    return RuleBroken("cursor is not one this API returned",
                      [Violation("cursor", "invalid_cursor", "cursor is not one this API returned")])


def encode_cursor(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The JSON object a cursor carries (None for no cursor: the first page)."""
    if not cursor:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(value, dict):
            raise ValueError
        return value
    except ValueError as exc:
        raise invalid_cursor() from exc


def of_type(value: Any, kind: type[K]) -> K:
    """`value` when it is a `kind` (for parse functions: a cursor value of another type is not ours)."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}")
    return value


@dataclass(frozen=True)
class Keyset(Generic[K]):
    """How one list is paged. `key` turns a row into the JSON values its cursor carries; `parse`
    reads them back into the repository's `after` key (raising KeyError, TypeError or ValueError for
    values it does not recognise)."""

    key: Callable[[Any], dict[str, Any]]
    parse: Callable[[dict[str, Any]], K]

    def after(self, cursor: str | None) -> K | None:
        values = decode_cursor(cursor)
        if values is None:
            return None
        try:
            return self.parse(values)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise invalid_cursor() from exc

    def page(self, rows: Sequence[R], limit: int, view: Callable[[R], Any]) -> Page:
        """The page of `rows` (fetched with `limit + 1`: one more tells whether a next page exists)."""
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": [view(r) for r in rows], "next_cursor": encode_cursor(self.key(rows[-1])) if more else None}
