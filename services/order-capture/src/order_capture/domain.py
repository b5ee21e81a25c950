"""Order intake rules: the request models with their validation, and the total. Pure, no I/O."""

import re
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal

import pycountry
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from oms_contracts.types import CENT, MONEY_RULE, is_money_text
from oms_platform.errors import RuleError, Violation
from oms_platform.fields import COUNTRY_SCHEMA, CURRENCY_SCHEMA, MONEY_SCHEMA, RequestModel

MAX_LINES = 500
MAX_QUANTITY = 10_000
# The largest amount the orders table holds (numeric(14,2)); any larger total could not be stored.
MAX_AMOUNT = Decimal("999999999999.99")
# PostgreSQL text and jsonb cannot hold NUL, and no field of an order has a use for control characters.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


def _currency(v: str) -> str:
    if v not in _currencies():
        raise RuleError("iso_4217", "must be an ISO 4217 currency code such as EUR")
    return v


def _country(v: str) -> str:
    if v not in _countries():
        raise RuleError("iso_3166_alpha2", "must be an ISO 3166-1 alpha-2 country code such as PT")
    return v


_MORE_DECIMALS = re.compile(r"-?[0-9]+\.[0-9]{3,}")
_NOT_FINITE = frozenset({"nan", "snan", "inf", "infinity"})


def _decimal_string(v: Any) -> Any:
    # Only the plain form: a JSON number (a float may already be off by a rounding error), "1e2",
    # " 19.90 " or "19.999" would each be read as something the channel may not have meant.
    if isinstance(v, str) and is_money_text(v):
        return v
    if isinstance(v, str) and _MORE_DECIMALS.fullmatch(v):
        raise RuleError("max_two_decimals", "must have at most two decimal places")
    if isinstance(v, str) and v.lower().lstrip("+-") in _NOT_FINITE:
        raise RuleError("finite_number", "must be a finite amount")
    raise RuleError("decimal_string", MONEY_RULE)


def _money(v: Decimal) -> Decimal:
    if v < 0:
        raise RuleError("non_negative", "must be 0 or more")
    if v > MAX_AMOUNT:
        raise RuleError("max_amount", f"must be at most {MAX_AMOUNT}")
    return v.quantize(CENT)  # stored, echoed and published with exactly two decimals


# The HTML standard's "valid email address" (what browsers accept in <input type=email>), plus a dot
# in the domain. Checked in C by the regex engine; only addresses it refuses that hold non-ASCII
# characters go on to the full (internationalised, much slower) email_validator check.
_EMAIL = re.compile(
    r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
)


def _email(v: str) -> str:
    if len(v) <= 254 and _EMAIL.fullmatch(v) and ".." not in v and not v.startswith(".") and ".@" not in v:
        return v
    if v.isascii():
        raise RuleError("email", "must be a valid email address such as ana@example.com")
    try:
        return validate_email(v)[1]
    except PydanticCustomError as exc:
        reason = (exc.context or {}).get("reason", "not an email address")
        raise RuleError("email", f"must be a valid email address: {reason}") from exc


def _printable(v: str) -> str:
    if not v.strip():
        raise RuleError("not_blank", "must not be blank")
    return v


Money = Annotated[Decimal, BeforeValidator(_decimal_string), AfterValidator(_money), MONEY_SCHEMA]
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]


class _Strict(RequestModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_control_characters(cls, v: Any) -> Any:
        if isinstance(v, str) and _CONTROL_CHARACTERS.search(v):
            raise RuleError("no_control_characters", "must not contain control characters")
        return v


class CustomerIn(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    email: Annotated[str, AfterValidator(_email)]
    name: Text
    phone: Annotated[str, Field(pattern=r"^\+?[0-9 ()-]{5,32}$")] | None = None


class AddressIn(_Strict):
    name: Text
    line1: Text
    line2: Annotated[str, Field(max_length=200)] | None = None
    city: Text
    postal_code: Annotated[str, Field(min_length=1, max_length=20), AfterValidator(_printable)]
    country: Annotated[str, Field(min_length=2, max_length=2, json_schema_extra=COUNTRY_SCHEMA),
                       AfterValidator(_country)]


class LineIn(_Strict):
    sku: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
    quantity: Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
    unit_price: Money


class PaymentIn(_Strict):
    method: Annotated[str, Field(min_length=1, max_length=32)]
    status: Literal["authorized", "pending"]
    reference: Annotated[str, Field(max_length=128)] | None = None
    amount: Money


class OrderIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"channel": "web", "external_id": "WEB-1001", "currency": "EUR",
         "customer": {"id": "c-42", "email": "ana@example.com", "name": "Ana Lima", "phone": "+351912345678"},
         "shipping_address": {"name": "Ana Lima", "line1": "Rua Augusta 1", "line2": None, "city": "Lisboa",
                              "postal_code": "1100-048", "country": "PT"},
         "shipping_method": "standard",
         "lines": [{"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": "19.90"}],
         "payment": {"method": "card", "status": "authorized", "reference": "pay_123", "amount": "39.80"}},
    ]})

    channel: Annotated[str, Field(min_length=1, max_length=32)]
    external_id: Annotated[str, Field(min_length=1, max_length=128)]
    currency: Annotated[str, Field(min_length=3, max_length=3, json_schema_extra=CURRENCY_SCHEMA),
                        AfterValidator(_currency)]
    customer: CustomerIn
    shipping_address: AddressIn
    shipping_method: Literal["standard", "express"]
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=MAX_LINES)]
    payment: PaymentIn


class CancelIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "customer changed their mind"}]})

    reason: Annotated[str, Field(min_length=1, max_length=500)]


def order_total(lines: list[LineIn]) -> Decimal:
    return sum((line.unit_price * line.quantity for line in lines), Decimal("0")).quantize(CENT)


def business_rule_errors(order: OrderIn) -> list[Violation]:
    """Rules across fields; each names the field it is about."""
    errors: list[Violation] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(order.lines):
        if line.sku in seen:
            errors.append(Violation(f"lines[{i}].sku", "unique_sku",
                                    f"SKU {line.sku} already appears in lines[{seen[line.sku]}]"))
        seen.setdefault(line.sku, i)
    total = order_total(order.lines)
    if order.payment.amount != total:
        errors.append(Violation("payment.amount", "equals_total",
                                f"must equal the order total {total} (sum of quantity x unit_price)"))
    return errors


def line_view(line: LineIn) -> dict[str, Any]:
    return {"sku": line.sku, "quantity": line.quantity, "unit_price": str(line.unit_price),
            "line_total": str((line.unit_price * line.quantity).quantize(CENT))}


TERMINAL_FOR_CANCEL = frozenset({"cancelled", "rejected"})

