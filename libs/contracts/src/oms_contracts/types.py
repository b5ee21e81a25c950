"""Field types shared by the contracts: money is a decimal string, never a float."""

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer

# Serialised as a decimal string ("39.80"); parsed from a string or an int, never from a float.
Money = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="always")]
