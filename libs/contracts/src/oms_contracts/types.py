"""Field types shared by the contracts: money is a decimal string, never a float."""

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

CENT = Decimal("0.01")
# A plain decimal string: digits, then optionally a point and one or two digits ("39.80", "40", "0.5"),
# with a minus for the rare negative amount (the HTTP APIs refuse those by their own rule). No exponent
# ("1e2"), no plus, no spaces, no thousands separators.
MONEY_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]{1,2})?")
MONEY_RULE = 'must be a plain decimal string with at most two decimals, such as "39.80"'


def is_money_text(value: str) -> bool:
    return MONEY_TEXT.fullmatch(value) is not None


def money_text(amount: Decimal) -> str:
    """How every amount leaves the system: exactly two decimals ("39.80", never "39.8" or "1E+2")."""
    return format(amount.quantize(CENT), "f")


def _money_in(value: Any) -> Any:
    # A JSON number with a fraction arrives as a float and may already be off by a rounding error.
    if isinstance(value, float | bool):
        raise ValueError("money must be a decimal string such as \"39.80\", not a float")
    if isinstance(value, str) and not is_money_text(value):
        raise ValueError(f"money {MONEY_RULE}")
    return value


# Serialised as a decimal string with two decimals ("39.80"); parsed from a plain decimal string (or
# an int or a Decimal in Python), never from a float.
Money = Annotated[
    Decimal,
    BeforeValidator(_money_in),
    PlainSerializer(money_text, return_type=str, when_used="always"),
]
