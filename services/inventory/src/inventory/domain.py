"""Inventory rules, pure (no I/O): where a reservation is sourced from, whether an order is reserved,
backordered or refused, and how waiting backorders are served (oldest first, whole orders only)."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal
from uuid import UUID

IN_COUNTRY = "single_location_in_country"
SINGLE = "single_location"
SPLIT = "split_fewest_locations"
# Up to this many candidate locations the split is the proven minimum (every combination is tried);
# beyond it a greedy pass by coverage keeps the cost bounded.
EXACT_SPLIT_MAX_LOCATIONS = 12


@dataclass(frozen=True)
class Location:
    location_id: str
    country: str
    available: Mapping[str, int]  # sku -> units free to reserve (on_hand - reserved)


@dataclass(frozen=True, order=True)
class Allocation:
    location_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class Sourcing:
    allocations: tuple[Allocation, ...]
    strategy: str
    reason: str


@dataclass(frozen=True)
class Short:
    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class Decision:
    outcome: Literal["reserved", "backordered", "failed"]
    sourcing: Sourcing | None = None
    short: tuple[Short, ...] = ()


@dataclass(frozen=True)
class Waiting:
    """A backordered order in the queue (the caller passes them in arrival order)."""

    order_id: UUID
    lines: Mapping[str, int]
    country: str
    ref: object = field(default=None, compare=False)  # the caller's record, handed back when served


def merge_lines(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    """One quantity per SKU (repeated SKUs are added up), in first-seen order."""
    merged: dict[str, int] = {}
    for sku, quantity in lines:
        merged[sku] = merged.get(sku, 0) + quantity
    return merged


def _free(loc: Location, sku: str) -> int:
    return max(loc.available.get(sku, 0), 0)


def _holds_all(loc: Location, lines: Mapping[str, int]) -> bool:
    return all(_free(loc, sku) >= qty for sku, qty in lines.items())


def _cover_together(locs: Sequence[Location], lines: Mapping[str, int]) -> bool:
    return all(sum(_free(loc, sku) for loc in locs) >= qty for sku, qty in lines.items())


def source(lines: Mapping[str, int], country: str, locations: Sequence[Location]) -> Sourcing | None:
    """Chooses where to take every line from, or None when all locations together cannot cover it.

    One location holding the whole order, in the destination country first (ties: lowest location id);
    otherwise the fewest locations that cover it together (ties: more of them in the destination
    country, then the lowest location ids)."""
    locs = sorted(locations, key=lambda loc: loc.location_id)
    whole = [loc for loc in locs if _holds_all(loc, lines)]
    local = [loc for loc in whole if loc.country == country]
    if local:
        pick = local[0]
        return Sourcing(_take(lines, country, [pick]), IN_COUNTRY,
                        f"{pick.location_id} ({pick.country}) holds every line in the destination country")
    if whole:
        pick = whole[0]
        return Sourcing(_take(lines, country, [pick]), SINGLE,
                        f"no location in {country} holds every line; {pick.location_id} ({pick.country}) does")
    useful = [loc for loc in locs if any(_free(loc, sku) > 0 for sku in lines)]
    if not _cover_together(useful, lines):
        return None
    chosen = _fewest(lines, country, useful)
    allocations = _take(lines, country, chosen)
    used = sorted({a.location_id for a in allocations})
    return Sourcing(allocations, SPLIT,
                    f"no single location holds every line; split over {len(used)} locations "
                    f"({', '.join(used)}), the fewest that cover the order")


def _fewest(lines: Mapping[str, int], country: str, useful: list[Location]) -> list[Location]:
    if len(useful) <= EXACT_SPLIT_MAX_LOCATIONS:
        for size in range(2, len(useful) + 1):
            # combinations() yields in location id order, so the first best one is the tie-break winner.
            best: tuple[Location, ...] | None = None
            for combo in combinations(useful, size):
                if _cover_together(combo, lines) and (best is None or _in_country(combo, country) >
                                                      _in_country(best, country)):
                    best = combo
            if best is not None:
                return list(best)
    return _greedy(lines, country, useful)


def _in_country(locs: Sequence[Location], country: str) -> int:
    return sum(loc.country == country for loc in locs)


def _greedy(lines: Mapping[str, int], country: str, useful: list[Location]) -> list[Location]:
    """Repeatedly takes the location covering most of what is still missing."""
    remaining = dict(lines)
    chosen: list[Location] = []
    candidates = list(useful)
    while any(q > 0 for q in remaining.values()):
        def gain(loc: Location) -> int:
            return sum(min(_free(loc, sku), qty) for sku, qty in remaining.items())

        pick = min(candidates, key=lambda loc: (-gain(loc), loc.country != country, loc.location_id))
        candidates.remove(pick)
        chosen.append(pick)
        for sku in remaining:
            remaining[sku] -= min(_free(pick, sku), remaining[sku])
    return chosen


def _take(lines: Mapping[str, int], country: str, chosen: Sequence[Location]) -> tuple[Allocation, ...]:
    """Fills each line from the chosen locations: in the destination country first, then the one
    with most of that SKU, then the lowest id."""
    out: list[Allocation] = []
    for sku, qty in lines.items():
        order = sorted(chosen, key=lambda loc: (loc.country != country, -_free(loc, sku), loc.location_id))
        for loc in order:
            take = min(_free(loc, sku), qty)
            if take > 0:
                out.append(Allocation(loc.location_id, sku, take))
                qty -= take
    return tuple(sorted(out))


def decide(
    lines: Mapping[str, int],
    country: str,
    locations: Sequence[Location],
    *,
    backorderable: Iterable[str] = (),
    queued: Mapping[str, int] | None = None,
) -> Decision:
    """Reserved when every line is covered by units nobody in the backorder queue is waiting for
    (`queued`: units per SKU the queue needs); backordered when every short SKU allows backorders;
    otherwise failed. A SKU with no stock anywhere and no settings is short with 0 available."""
    queued = queued or {}
    allowed = set(backorderable)
    short: list[Short] = []
    for sku, qty in lines.items():
        free = sum(_free(loc, sku) for loc in locations) - queued.get(sku, 0)
        if qty > free:
            short.append(Short(sku, qty, max(free, 0)))
    if not short:
        sourcing = source(lines, country, locations)
        if sourcing is None:  # pragma: no cover - the totals above cover every line
            raise AssertionError("totals cover the order but sourcing found no way")
        return Decision("reserved", sourcing)
    if all(s.sku in allowed for s in short):
        return Decision("backordered", short=tuple(short))
    return Decision("failed", short=tuple(short))


def serve_queue(waiting: Sequence[Waiting], locations: Sequence[Location]) -> list[tuple[Waiting, Sourcing]]:
    """Serves waiting backorders in the order given (oldest first). An order is served only whole, and
    never from units an older, still waiting order needs: a newer order never jumps the queue."""
    free = {loc.location_id: dict(loc.available) for loc in locations}
    ahead: dict[str, int] = {}
    served: list[tuple[Waiting, Sourcing]] = []
    for order in waiting:
        current = [Location(loc.location_id, loc.country, free[loc.location_id]) for loc in locations]
        decision = decide(order.lines, order.country, current, queued=ahead)
        if decision.sourcing is not None:
            for a in decision.sourcing.allocations:
                free[a.location_id][a.sku] -= a.quantity
            served.append((order, decision.sourcing))
        else:
            for sku, qty in order.lines.items():
                ahead[sku] = ahead.get(sku, 0) + qty
    return served
