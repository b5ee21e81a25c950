"""Request bodies of the operator API, with their validation (422 names the field and the rule)."""

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from inventory.countries import ISO_ALPHA2
from oms_platform.errors import RuleError
from oms_platform.fields import COUNTRY_SCHEMA, RequestModel

MAX_UNITS = 1_000_000_000  # stays inside PostgreSQL's integer
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"
LOCATION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _country(v: str) -> str:
    if v not in ISO_ALPHA2:
        raise RuleError("iso_3166_alpha2", "must be an ISO 3166-1 alpha-2 country code such as PT")
    return v


def _not_blank(v: str) -> str:
    if not v.strip():
        raise RuleError("not_blank", "must not be blank")
    return v


Units = Annotated[int, Field(strict=True, ge=0, le=MAX_UNITS)]
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]


class _Strict(RequestModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LocationIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "Lisbon DC", "country": "PT"},
    ]})

    name: Text
    country: Annotated[str, Field(min_length=2, max_length=2, json_schema_extra=COUNTRY_SCHEMA),
                       AfterValidator(_country)]


class SkuSettingsIn(_Strict):
    """PUT replaces the settings; an omitted field takes its default."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"allow_backorder": False, "low_stock_threshold": 5, "returnable": True},
    ]})

    allow_backorder: Annotated[bool, Field(strict=True)] = False
    low_stock_threshold: Units = 0
    returnable: Annotated[bool, Field(strict=True)] = True


class StockIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"on_hand": 10, "reason": "cycle count"}]})

    on_hand: Units
    reason: Text = "manual adjustment"
