"""Fulfilment rules: carrier choice, shipment planning, the status machine and tracking numbers.
Pure, no I/O (reading the rules file is bootstrap's job)."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from oms_contracts.fulfilment import ShipmentRequest
from oms_contracts.inventory import StockLine

WILDCARD = "*"
EU_COUNTRIES = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)

# --- carrier rules --------------------------------------------------------------------------------


class CarrierRule(BaseModel):
    """One line of the rule list: `country` is a code, a list of codes, or "*" (any country);
    `shipping_method` is "standard", "express" or "*"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shipping_method: Literal["standard", "express", "*"]
    country: Annotated[frozenset[str], Field(min_length=1)]
    carrier: Annotated[str, Field(min_length=1, max_length=64)]
    service: Annotated[str, Field(min_length=1, max_length=64)]

    @field_validator("country", mode="before")
    @classmethod
    def _countries(cls, v: Any) -> Any:
        codes = [v] if isinstance(v, str) else v
        if not isinstance(codes, list | tuple | set | frozenset):
            raise ValueError('country must be a code, a list of codes, or "*"')
        out = set()
        for code in codes:
            if not isinstance(code, str) or not (code == WILDCARD or (len(code) == 2 and code.isalpha())):
                raise ValueError(f'country {code!r} is neither an ISO 3166-1 alpha-2 code nor "*"')
            out.add(code.upper())
        return frozenset(out)

    def matches(self, shipping_method: str, country: str) -> bool:
        return (self.shipping_method in (WILDCARD, shipping_method)) and (
            WILDCARD in self.country or country.upper() in self.country
        )


_RULE_LIST = TypeAdapter(list[CarrierRule])

DEFAULT_RULES: tuple[CarrierRule, ...] = tuple(
    _RULE_LIST.validate_python([
        {"shipping_method": "express", "country": "*", "carrier": "oms-express", "service": "next_day"},
        {"shipping_method": "standard", "country": ["PT", "ES"], "carrier": "oms-post", "service": "standard"},
        {"shipping_method": "standard", "country": sorted(EU_COUNTRIES), "carrier": "oms-post",
         "service": "international"},
    ])
)


def parse_rules(data: Any) -> tuple[CarrierRule, ...]:
    """Rules from parsed JSON: a list of rule objects, or {"rules": [...]}. Raises ValueError."""
    if isinstance(data, dict) and set(data) == {"rules"}:
        data = data["rules"]
    rules = tuple(_RULE_LIST.validate_python(data))
    if not rules:
        raise ValueError("the carrier rule list is empty")
    return rules


def choose_carrier(rules: Iterable[CarrierRule], shipping_method: str, country: str) -> CarrierRule | None:
    """The first rule matching the method and destination country wins; None when none does."""
    return next((r for r in rules if r.matches(shipping_method, country)), None)


# --- shipment planning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedShipment:
    location_id: str
    lines: tuple[StockLine, ...]


def plan_shipments(requests: Sequence[ShipmentRequest]) -> list[PlannedShipment] | str:
    """One shipment per location (a location named twice gets one shipment with the lines merged,
    in first-seen order). Returns a failure reason instead when the request cannot be shipped."""
    if not requests:
        return "no_shipments"
    by_location: dict[str, dict[str, int]] = {}
    for req in requests:
        if not req.location_id.strip() or not req.lines:
            return "invalid_request"
        lines = by_location.setdefault(req.location_id, {})
        for line in req.lines:
            if line.quantity <= 0 or not line.sku:
                return "invalid_request"
            lines[line.sku] = lines.get(line.sku, 0) + line.quantity
    return [
        PlannedShipment(loc, tuple(StockLine(sku=s, quantity=q) for s, q in lines.items()))
        for loc, lines in by_location.items()
    ]


# --- status machine -------------------------------------------------------------------------------

# Operator action -> (the status it needs, the status it leaves). Anything else is refused.
TRANSITIONS: dict[str, tuple[str, str]] = {
    "pick": ("created", "picked"),
    "pack": ("picked", "packed"),
    "dispatch": ("packed", "dispatched"),
}
# Once a shipment has left the building it can no longer be cancelled.
LEFT_BUILDING = frozenset({"dispatched", "delivered"})
CANCELLABLE = frozenset({"created", "picked", "packed"})


class TransitionRefused(Exception):
    def __init__(self, action: str, current: str, needed: str):
        super().__init__(f"cannot {action} a shipment that is {current}; {action} needs status {needed}")
        self.action, self.current, self.needed = action, current, needed


def next_status(action: str, current: str) -> str:
    """The status after `action`, or TransitionRefused naming the current status."""
    needed, after = TRANSITIONS[action]
    if current != needed:
        raise TransitionRefused(action, current, needed)
    return after
