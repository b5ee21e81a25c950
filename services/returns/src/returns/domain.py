"""Return rules: the request bodies with their validation, eligibility, refund amounts and the order's
status because of its returns. Pure: no I/O (the caller reads the copies and passes them in)."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oms_platform.errors import Violation

CENT = Decimal("0.01")
MAX_LINES = 500
MAX_QUANTITY = 10_000
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ReturnLineIn(_Strict):
    sku: Sku
    quantity: Quantity
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


class ReturnIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"order_id": "01a241e9-9014-7305-89f2-b04eb9bad689", "resolution": "refund",
         "lines": [{"sku": "TSHIRT-RED-M", "quantity": 1, "reason": "too_small"}]},
    ]})

    order_id: Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{32,36}$")]
    resolution: Literal["refund", "exchange"]
    lines: Annotated[list[ReturnLineIn], Field(min_length=1, max_length=MAX_LINES)]


class ReceivedLineIn(_Strict):
    sku: Sku
    quantity: Annotated[int, Field(strict=True, ge=0, le=MAX_QUANTITY)]
    condition: Literal["resellable", "damaged"]


class ReceiveIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"lines": [{"sku": "TSHIRT-RED-M", "quantity": 1, "condition": "resellable"}]},
    ]})

    lines: Annotated[list[ReceivedLineIn], Field(min_length=1, max_length=2 * MAX_LINES)]
    # Where the parcel was received (the resellable units go back into stock there); by default the
    # location that shipped the first returned SKU.
    location_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] | None = None


class CancelIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "customer kept the item"}]})

    reason: Annotated[str, Field(min_length=1, max_length=500)] = "cancelled"


@dataclass(frozen=True)
class Delivered:
    """What reached the customer, per SKU: units and when (the latest delivery that carried them)."""

    quantity: dict[str, int]
    at: dict[str, datetime]

    @property
    def units(self) -> int:
        return sum(self.quantity.values())


def delivered(order_lines: list[dict[str, Any]], shipments: list[dict[str, Any]],
              deliveries: dict[str | None, datetime]) -> Delivered:
    """`deliveries`: delivered_at by shipment id (str), and under None when the whole order was
    reported delivered (then every unit of the order counts as delivered)."""
    qty: dict[str, int] = defaultdict(int)
    at: dict[str, datetime] = {}
    for s in shipments:
        when = deliveries.get(str(s["shipment_id"]))
        if when is None:
            continue
        for li in s["lines"]:
            qty[li["sku"]] += li["quantity"]
            at[li["sku"]] = max(at.get(li["sku"], when), when)
    whole = deliveries.get(None)
    if whole is not None:
        for li in order_lines:
            qty[li["sku"]] = max(qty[li["sku"]], li["quantity"])
            at.setdefault(li["sku"], whole)
    return Delivered(dict(qty), at)


def _refusal(i: int, rule: str, message: str, field: str = "") -> Violation:
    return Violation(f"lines[{i}]{field}", rule, message)


def eligibility_errors(lines: list[ReturnLineIn], order_lines: list[dict[str, Any]], got: Delivered,
                       requested: dict[str, int], returnable: dict[str, bool], now: datetime,
                       window_days: float) -> list[Violation]:
    """Every line that may not come back, naming its rule. `requested`: units per SKU already in the
    order's other returns (open or completed; cancelled ones give theirs back)."""
    ordered = {li["sku"] for li in order_lines}
    errors: list[Violation] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        sku = line.sku
        if sku in seen:
            errors.append(_refusal(i, "unique_sku", f"SKU {sku} already appears in lines[{seen[sku]}]", ".sku"))
            continue
        seen[sku] = i
        if sku not in ordered:
            errors.append(_refusal(i, "in_order", f"SKU {sku} is not in the order", ".sku"))
        elif not returnable.get(sku, True):
            errors.append(_refusal(i, "returnable", f"SKU {sku} is marked non-returnable", ".sku"))
        elif got.quantity.get(sku, 0) == 0:
            errors.append(_refusal(i, "delivered", f"no unit of {sku} has been delivered yet", ".sku"))
        elif now > got.at[sku] + timedelta(days=window_days):
            errors.append(_refusal(i, "return_window", f"{sku} was delivered on {got.at[sku]:%Y-%m-%d}; returns "
                                   f"are accepted for {window_days:g} days after delivery", ".sku"))
        else:
            left = got.quantity[sku] - requested.get(sku, 0)
            if line.quantity > left:
                errors.append(_refusal(
                    i, "returnable_quantity", f"at most {max(left, 0)} unit(s) of {sku} can be returned "
                    f"({got.quantity[sku]} delivered, {requested.get(sku, 0)} already in returns)", ".quantity"))
    return errors


def receipt_errors(body: ReceiveIn, return_lines: list[dict[str, Any]]) -> list[Violation]:
    """Received units must be of the return's SKUs, no more than it names per SKU."""
    expected = {li["sku"]: li["quantity"] for li in return_lines}
    got: dict[str, int] = defaultdict(int)
    errors: list[Violation] = []
    for i, line in enumerate(body.lines):
        if line.sku not in expected:
            errors.append(_refusal(i, "in_return", f"SKU {line.sku} is not in this return", ".sku"))
            continue
        got[line.sku] += line.quantity
        if got[line.sku] > expected[line.sku]:
            errors.append(_refusal(i, "returned_quantity",
                                   f"the return names {expected[line.sku]} unit(s) of {line.sku}", ".quantity"))
    if not errors and sum(got.values()) == 0:
        errors.append(Violation("lines", "some_units", "no unit was received"))
    return errors


def refund_amount(received: list[dict[str, Any]], prices: dict[str, Decimal]) -> Decimal:
    """Every received unit (resellable or damaged) at the order's own unit price."""
    total = sum((prices[li["sku"]] * li["quantity"] for li in received), Decimal(0))
    return total.quantize(CENT)


def order_status_after(delivered_units: int, received_units: int, open_returns: int) -> str:
    """The order's status because of its returns: all delivered units back -> returned; some ->
    partially_returned; none back yet but a return open -> return_requested; else delivered."""
    if delivered_units and received_units >= delivered_units:
        return "returned"
    if received_units:
        return "partially_returned"
    return "return_requested" if open_returns else "delivered"
