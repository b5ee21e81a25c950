"""Request types every service's API uses (README, Input rules). No HTTP here, so use-case modules
(domain.py, schemas.py) may build their request models on them.

    class LocationIn(RequestModel): ...                  # unknown fields refused
    created_from: Timestamp | None = None                # ISO 8601 with a timezone, never an epoch
"""

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from oms_platform.errors import RuleError


class RequestModel(BaseModel):
    """The base of every request body: a field the API does not know is refused (422 naming it, rule
    extra_forbidden), never silently dropped: a client's typo must not pass for a default. Its OpenAPI
    schema says so (additionalProperties: false)."""

    model_config = ConfigDict(extra="forbid")


# 2026-12-01T10:00:00Z, 2026-12-01T10:00:00.123+01:00 (seconds and fraction optional, "T" or a space).
_ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|z|[+-]\d{2}:?\d{2})")


def _iso_8601(value: Any) -> Any:
    # pydantic alone would read "1.19e-07" or "1700000000" as seconds since 1970, and a time without
    # a timezone as whatever the server's is: a client means neither.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_8601.fullmatch(value):
        raise RuleError("iso_8601", "must be an ISO 8601 time with a timezone, such as 2026-12-01T10:00:00Z")
    return value


# What the OpenAPI says of the fields whose rules are checked in code (the rule itself is the validator's).
MONEY_SCHEMA = WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d{1,2})?$", "examples": ["39.80"],
                               "description": "a plain decimal string with at most two decimals (never a number)"})
CURRENCY_SCHEMA = {"pattern": "^[A-Z]{3}$", "description": "an ISO 4217 currency code", "examples": ["EUR"]}
COUNTRY_SCHEMA = {"pattern": "^[A-Z]{2}$", "description": "an ISO 3166-1 alpha-2 country code", "examples": ["PT"]}

# A time given by a client: ISO 8601 with a timezone (Z or an offset); compared as UTC.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]
