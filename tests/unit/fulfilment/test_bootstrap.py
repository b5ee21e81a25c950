"""The service's defaults and its refusal to start with rules it cannot honour."""

import orjson
import pytest

from fulfilment.bootstrap import build_app
from fulfilment.settings import Settings


def test_defaults_match_the_contract() -> None:
    s = Settings(_env_file=None)
    assert (s.service_name, s.http_port) == ("fulfilment", 8003)
    assert s.database_url == "postgresql://fulfilment@127.0.0.1:55432/fulfilment"
    assert s.carrier_rules_file is None


def test_the_app_builds_with_default_rules() -> None:
    app = build_app(Settings(_env_file=None))
    paths = set(app.openapi()["paths"])
    assert {"/v1/shipments", "/v1/shipments/{shipment_id}/label", "/v1/shipments/{shipment_id}/dispatch"} <= paths


def test_a_rule_naming_a_carrier_without_an_adapter_stops_the_start(tmp_path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_bytes(orjson.dumps([{"shipping_method": "*", "country": "*", "carrier": "acme", "service": "x"}]))
    with pytest.raises(SystemExit, match="acme"):
        build_app(Settings(_env_file=None, carrier_rules_file=rules))
