"""Field types shared by the contracts: money is a decimal string, never a float."""

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer


def _not_float(value: Any) -> Any:
    # A JSON number with a fraction arrives as a float and may already be off by a rounding error.
    if isinstance(value, float | bool):
        raise ValueError("money must be a decimal string such as \"39.80\", not a float")
    return value


# Serialised as a decimal string ("39.80"); parsed from a string or an int, never from a float.
Money = Annotated[
    Decimal,
    BeforeValidator(_not_float),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="always"),
]
